"""Mid-match checkpoints: a long match interrupted by a kill, a lost worker or a pre-empted
job resumes from its last checkpoint instead of from episode 1, with the same numbers.

A checkpoint is the whole state of a work unit between two episodes (networks, optimiser
moments, the influence estimator and its buffer, every generator's state, the curves so
far), pickled with :func:`torch.save`. It is a cache, not a result: it is written
atomically next to the results (``DIR/checkpoints/UNIT.pt``), read only by the same unit
under the same code (the package's sources and the torch version), deleted once the
unit's records are stored, and ignored (with the match replayed from its start) whenever it
cannot be used. Restoring it continues the exact computation: the resumed match's records
are bit-identical to an uninterrupted one's (``tests/test_checkpoints.py``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recip_tourney import __version__
from recip_tourney.tournament.schedule import MatchSpec, stable_hash

#: Sub-folder of a results directory that holds the checkpoints of unfinished units.
FOLDER = "checkpoints"


def unit_key(match_ids: list[str] | tuple[str, ...]) -> str:
    """The file-name-safe key of the unit that plays exactly these matches."""
    return stable_hash(sorted(match_ids), 20)


def checkpoint_path(directory: str | Path, match_ids: list[str] | tuple[str, ...]) -> Path:
    """Where the unit playing ``match_ids`` keeps its checkpoint."""
    return Path(directory) / f"{unit_key(match_ids)}.pt"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the package's Python sources: a checkpoint pickles the package's objects,
    so only the very code that wrote it may read it (a version number is not enough between
    releases)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _stamp(spec: MatchSpec) -> dict[str, Any]:
    """What a checkpoint must match to be restored: the unit and the code that computes it."""
    return {
        "matches": sorted(slot.match_id for slot in spec.seeds),
        "settings_hash": spec.settings_hash,
        "version": __version__,
        "code": code_digest(),
        "torch": torch.__version__,
    }


@dataclass
class MatchCheckpoint:
    """Save and restore one unit's state every ``every_s`` seconds of play.

    Parameters
    ----------
    spec : MatchSpec
        The unit; its ``checkpoints`` folder and ``checkpoint_every_s`` say where and how often.
    """

    spec: MatchSpec
    _last: float = field(default_factory=time.monotonic)

    @classmethod
    def for_spec(cls, spec: MatchSpec) -> MatchCheckpoint | None:
        """The unit's checkpoint, or None when the run keeps none."""
        return cls(spec) if spec.checkpoints else None

    @property
    def path(self) -> Path:
        """The checkpoint file."""
        return checkpoint_path(self.spec.checkpoints, [s.match_id for s in self.spec.seeds])

    def _read(self) -> dict[str, Any] | None:
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - unreadable (truncated, other format): start over
            return None
        if not isinstance(saved, dict) or saved.get("stamp") != _stamp(self.spec):
            return None
        return saved

    def load(self) -> Any | None:
        """The saved state, or None when there is none or it is not this unit's under this
        code (a checkpoint that cannot be read is treated as absent: the unit starts over)."""
        saved = self._read()
        self._last = time.monotonic()
        return None if saved is None else saved["state"]

    def episodes_done(self) -> int | None:
        """How many episodes the usable checkpoint holds; None when there is none."""
        saved = self._read()
        return None if saved is None else int(saved["episodes"])

    def due(self) -> bool:
        """Whether ``checkpoint_every_s`` seconds have passed since the last save or load."""
        return time.monotonic() - self._last >= self.spec.checkpoint_every_s

    def save(self, state: Any, episodes: int) -> None:
        """Write ``state``, the unit after ``episodes`` episodes, atomically (a temporary
        file, then a rename).

        A write that fails (a full disk, a read-only folder) is skipped: the checkpoint is
        only a shortcut, and the match goes on; the results directory reports write errors
        where it matters, when the records are stored.
        """
        path = self.path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"stamp": _stamp(self.spec), "episodes": episodes, "state": state}, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError):  # torch's writer reports a full disk as RuntimeError
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self._last = time.monotonic()


def discard(directory: str | Path, match_ids: list[str] | tuple[str, ...]) -> None:
    """Delete the checkpoint of the unit that played ``match_ids`` (its records are stored)."""
    checkpoint_path(directory, match_ids).unlink(missing_ok=True)
