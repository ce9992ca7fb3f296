"""The pretraining cache: trained artifacts on disk, keyed by everything that made them.

Layout (one folder per artifact, named by its key digest)::

    ROOT/<kind>/<digest>/artifact.pt      tensors only: loaded with weights_only=True
    ROOT/<kind>/<digest>/meta.json        key, digest, sha256 of artifact.pt, command, versions
    ROOT/<kind>/<digest>/log.jsonl        one line per meta-episode / outer iteration
    ROOT/<kind>/<digest>/checkpoint.pt    while training: resumes an interrupted training
    ROOT/corrupt/<kind>-<digest>-<time>/  artifacts that failed verification, moved aside

``ROOT`` is ``$RECIP_TOURNEY_CACHE``, else ``$XDG_CACHE_HOME/recip-tourney``, else
``~/.cache/recip-tourney``; ``--cache-dir`` overrides all of them. Artifacts shipped with the
package (``recip_tourney/data/pretrained``) have the same layout and are read when the user
cache has no artifact of that digest. An artifact is used only when its ``meta.json`` names
the requested digest and the file's sha256 matches; anything else is reported and retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from recip_tourney.errors import UserError
from recip_tourney.tournament.store import atomic_write_json, atomic_write_text, unused_path

ARTIFACT = "artifact.pt"
META = "meta.json"
LOG = "log.jsonl"
CHECKPOINT = "checkpoint.pt"


def default_root() -> Path:
    """The user's cache folder for recip-tourney (see module docstring)."""
    if os.environ.get("RECIP_TOURNEY_CACHE"):
        return Path(os.environ["RECIP_TOURNEY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recip-tourney"


def packaged_root() -> Path:
    """Artifacts shipped inside the package."""
    return Path(str(resources.files("recip_tourney") / "data" / "pretrained"))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ArtifactCache:
    """Read and write trained artifacts.

    Parameters
    ----------
    root : Path, optional
        The writable cache folder (default :func:`default_root`).
    packaged : bool
        Also look in the artifacts shipped with the package.
    """

    def __init__(self, root: Path | None = None, packaged: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.search = [self.root] + ([packaged_root()] if packaged else [])
        self.notices: list[str] = []

    def folder(self, kind: str, digest: str) -> Path:
        """Where this cache writes the artifact ``digest``."""
        return self.root / kind / digest

    def _candidates(self, kind: str, digest: str) -> Iterator[Path]:
        for base in self.search:
            folder = base / kind / digest
            # a folder with neither file holds only a training in progress (its checkpoint)
            if (folder / META).exists() or (folder / ARTIFACT).exists():
                yield folder

    def load(self, kind: str, digest: str) -> dict[str, Any] | None:
        """The verified artifact ``digest``, or None when there is none (or none usable).

        A folder whose files fail verification is moved to ``ROOT/corrupt`` when it is in
        the writable cache (a notice says so) and skipped; nothing unverified is returned.
        """
        for folder in self._candidates(kind, digest):
            problem = self._verify(folder, digest)
            if problem is None:
                try:
                    return torch.load(folder / ARTIFACT, weights_only=True, map_location="cpu")
                except Exception as exc:  # noqa: BLE001 - any unreadable file is corrupt
                    problem = f"cannot be loaded ({type(exc).__name__})"
            self._discard(folder, kind, digest, problem)
        return None

    def _verify(self, folder: Path, digest: str) -> str | None:
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"has no readable {META} ({exc})"
        if not isinstance(meta, dict) or meta.get("digest") != digest:
            return f"{META} names another key"
        if not (folder / ARTIFACT).is_file():
            return f"has no {ARTIFACT}"
        if sha256_of(folder / ARTIFACT) != meta.get("sha256"):
            return f"{ARTIFACT} does not match its recorded checksum"
        return None

    def _discard(self, folder: Path, kind: str, digest: str, problem: str) -> None:
        if folder.is_relative_to(self.root) and folder.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target = unused_path(self.root / "corrupt" / f"{kind}-{digest}-{stamp}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), str(target))
            self.notices.append(
                f"pretrained {kind} artifact {digest} {problem}: moved to {target}; retraining"
            )
        else:
            self.notices.append(f"pretrained {kind} artifact {digest} in {folder} {problem}; "
                                "ignored")

    def save(
        self,
        kind: str,
        digest: str,
        payload: dict[str, Any],
        meta: dict[str, Any],
        log: list[dict[str, Any]],
    ) -> Path:
        """Write an artifact atomically (artifact, then log, then meta.json last)."""
        folder = self.folder(kind, digest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(payload, folder / ARTIFACT)
            header = json.dumps({"meta": {"title": meta.get("label", kind), "digest": digest}})
            lines = [header] + [json.dumps(row, sort_keys=True) for row in log]
            atomic_write_text(folder / LOG, "\n".join(lines) + "\n")
            atomic_write_json(
                folder / META, {**meta, "digest": digest, "sha256": sha256_of(folder / ARTIFACT)}
            )
            (folder / CHECKPOINT).unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot write to the pretraining cache {self.root}: {exc.strerror or exc} "
                "(choose another with --cache-dir or RECIP_TOURNEY_CACHE)"
            ) from None
        return folder

    def ensure_writable(self, kind: str, digest: str) -> None:
        """Fail now, not after hours of training, when the artifact's folder can't be made."""
        folder = self.folder(kind, digest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"cannot write to the pretraining cache {self.root}: {exc.strerror or exc} "
                "(choose another with --cache-dir or RECIP_TOURNEY_CACHE)"
            ) from None

    # --- checkpoints of trainings in progress ------------------------------------------
    def load_checkpoint(self, kind: str, digest: str) -> dict[str, Any] | None:
        """The checkpoint of an interrupted training, or None (an unreadable one is dropped)."""
        path = self.folder(kind, digest) / CHECKPOINT
        if not path.is_file():
            return None
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception:  # noqa: BLE001 - a checkpoint cut short is simply not used
            self.notices.append(f"unreadable training checkpoint {path} ignored")
            return None
        return state if isinstance(state, dict) and state.get("digest") == digest else None

    def save_checkpoint(self, kind: str, digest: str, state: dict[str, Any]) -> None:
        """Atomically save a training checkpoint (``state`` must hold ``digest``)."""
        folder = self.folder(kind, digest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(state, folder / CHECKPOINT)
        except OSError as exc:
            raise UserError(
                f"cannot write to the pretraining cache {self.root}: {exc.strerror or exc}"
            ) from None
