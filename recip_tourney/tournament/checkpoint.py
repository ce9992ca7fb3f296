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

A checkpoint does not depend on the device it was written on: it is read onto the CPU, and
:func:`relocate` moves the restored state to the run's device (tensors, optimiser state and
every ``torch.device`` the objects hold), so a match checkpointed on a GPU resumes on the
CPU and the other way round.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

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


# -- moving a restored state to another device --------------------------------------------


def relocate(state: Any, device: torch.device | str) -> Any:
    """``state`` with every tensor on ``device`` and every ``torch.device`` it holds replaced
    by ``device``: what a checkpoint read onto the CPU needs to resume on the run's device.

    Walks dicts, lists, tuples (named ones too), deques, ``torch.optim`` optimisers and the
    attributes of the package's own objects; leaves everything else (random generators,
    which stay on the CPU, settings, plain values) as it is. Tensors that share a storage
    (views of one flat parameter tensor) still share one after the move; a tensor already
    on ``device`` is kept as it is (so on the same device nothing is copied). Containers
    are rebuilt (shared ones stay shared); the package's objects are updated in place. An
    optimiser's state follows its parameters as ``Optimizer.load_state_dict`` moves it
    (Adam keeps its step counters on the CPU).
    """
    return _Relocation(torch.device(device)).visit(state)


class _Relocation:
    """One :func:`relocate` walk: what was moved, by object and by storage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.memo: dict[int, Any] = {}
        self.storages: dict[tuple[str, int, int], torch.UntypedStorage] = {}

    def visit(self, obj: Any) -> Any:
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        if isinstance(obj, torch.Tensor):
            out = self.memo[key] = self.tensor(obj)
        elif isinstance(obj, torch.device):
            out = self.device
        elif isinstance(obj, torch.optim.Optimizer):
            out = self.optimizer(obj)
        elif isinstance(obj, dict | list | deque):
            out = self.memo[key] = copy.copy(obj)  # before the items: cycles end here
            items = obj.items() if isinstance(obj, dict) else enumerate(obj)
            for k, value in list(items):
                out[k] = self.visit(value)
        elif isinstance(obj, tuple):
            items = [self.visit(value) for value in obj]
            out = type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
            self.memo[key] = out
        elif self.owned(obj):
            out = self.memo[key] = obj
            for name, value in list(vars(obj).items()):
                moved = self.visit(value)
                if moved is not value:
                    object.__setattr__(obj, name, moved)  # frozen dataclasses too
        else:
            out = obj
        return out

    @staticmethod
    def owned(obj: Any) -> bool:
        """Whether ``obj`` is one of the package's objects with attributes to walk."""
        return (type(obj).__module__.startswith("recip_tourney.") and hasattr(obj, "__dict__")
                and not isinstance(obj, type | BaseModel))

    def tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the target device, on the moved copy of its storage."""
        if tensor.device == self.device:
            return tensor
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr(), storage.nbytes())
        moved = self.storages.get(key)
        if moved is None:
            raw = torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(storage)
            moved = self.storages[key] = raw.to(self.device).untyped_storage()
        out = torch.empty(0, dtype=tensor.dtype, device=self.device).set_(
            moved, tensor.storage_offset(), tensor.size(), tensor.stride())
        if isinstance(tensor, torch.nn.Parameter):
            out = torch.nn.Parameter(out, requires_grad=tensor.requires_grad)
        elif tensor.requires_grad and tensor.is_leaf:
            out.requires_grad_(True)
        if tensor.grad is not None:
            out.grad = self.tensor(tensor.grad)
        return out

    def optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """``optimizer`` on the moved parameters, its state moved as it loads it."""
        self.memo[id(optimizer)] = optimizer
        saved = optimizer.state_dict()
        for group in optimizer.param_groups:
            group["params"] = [self.visit(p) for p in group["params"]]
        optimizer.state = defaultdict(dict)
        optimizer.load_state_dict(saved)
        return optimizer
