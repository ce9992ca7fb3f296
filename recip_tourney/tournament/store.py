"""The results directory: a manifest plus one JSON file per finished match.

Layout::

    DIR/run.json                 manifest: game, settings hash, resolved config, versions, schedule
    DIR/matches/<match_id>.json  one record per finished match (schema ``MATCH_SCHEMA``)
    DIR/corrupt/                 unreadable match files, moved aside (never deleted) and recomputed
    DIR/.lock                    held (``flock``) by the one run writing here

Every file is written atomically (temporary file in the same folder, fsync, rename), so a
killed run leaves either a whole record or none. A record is only trusted after it parses,
carries the expected schema and keys, and its ``match_id`` matches its file name. A match
that failed (an error, or a reward that is not finite) is stored too, with ``status:
"failed"`` and the error instead of results, so that a resumed run does not replay it
unless asked to.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from recip_tourney.errors import UserError

RUN_SCHEMA = "recip-tourney/run/1"
MATCH_SCHEMA = "recip-tourney/match/1"
MANIFEST = "run.json"
MATCHES = "matches"
CORRUPT = "corrupt"
LOCK = ".lock"
LOCK_OWNER = ".lock.owner"
#: What every record holds: which match it is.
IDENTITY_KEYS = frozenset(
    {
        "schema",
        "match_id",
        "game",
        "settings_hash",
        "agent",
        "opponent",
        "agent_params",
        "opponent_params",
        "seed_index",
        "seed",
    }
)
#: A finished match's results (records without ``status`` are finished: the first format).
MATCH_KEYS = IDENTITY_KEYS | {"summary", "cooperation", "curves"}
#: A failed match: its error and where it was raised, instead of results.
FAILED_KEYS = IDENTITY_KEYS | {"status", "error", "traceback"}
FAILED = "failed"
PERMISSION_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS)


def unused_path(path: Path) -> Path:
    """``path`` if nothing is there yet, else the first free ``path-1``, ``path-2``, ...

    Used for the timestamped names of things moved aside, so that two moves within the same
    second neither overwrite a file nor move a directory into the earlier one.
    """
    candidate, n = path, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of written files: what ``open`` would give (mkstemp's own are 0600).
FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def is_failed(record: dict[str, Any]) -> bool:
    """Whether ``record`` is a failed match (an error instead of results)."""
    return record.get("status") == FAILED


def validate_match(record: Any, expected_id: str | None = None) -> str | None:
    """Return why ``record`` is not a valid match record, or None when it is."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("schema") != MATCH_SCHEMA:
        return f"schema is {record.get('schema')!r}, expected {MATCH_SCHEMA!r}"
    missing = (FAILED_KEYS if is_failed(record) else MATCH_KEYS) - record.keys()
    if missing:
        return f"missing keys {sorted(missing)}"
    if expected_id is not None and record["match_id"] != expected_id:
        return f"match_id {record['match_id']!r} does not match the file name"
    if is_failed(record):
        return None if isinstance(record["error"], str) else "error is not text"
    summary = record["summary"]
    if not isinstance(summary, dict) or not all(
        isinstance(summary.get(k), int | float) for k in ("reward", "opponent_reward")
    ):
        return "summary rewards missing or not numbers"
    return None


@dataclass
class Stored:
    """What a results directory holds for one settings hash."""

    done: set[str] = field(default_factory=set)  # ids of valid records, finished or failed
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # failed records by id
    problems: list[tuple[Path, str]] = field(default_factory=list)  # unusable files, why


class ResultsDir:
    """A tournament's results directory.

    Parameters
    ----------
    path : Path
        The directory; created on :meth:`prepare`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.matches = self.path / MATCHES

    # ----------------------------------------------------------------- manifest
    def manifest(self) -> dict[str, Any] | None:
        """The stored manifest, None when there is none; UserError when it is unreadable."""
        file = self.path / MANIFEST
        if not file.exists():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"corrupt results manifest {file}: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != RUN_SCHEMA:
            raise UserError(f"corrupt results manifest {file}: not a recip-tourney run manifest")
        return data

    def prepare(self, manifest: dict[str, Any], *, force: bool = False) -> Path | None:
        """Check that ``manifest`` may write here, merge it with the stored one, store it.

        Refuses (UserError) a directory holding results of another game, of different
        settings, of an agent with different parameters, or an unreadable manifest, unless
        ``force``; with ``force`` the old directory is moved aside to a timestamped sibling,
        never deleted. Agents and scheduled matches of earlier runs are kept in the manifest.
        Temporary files of a killed run's unfinished writes are removed (call it holding
        :meth:`lock`). Returns the path the old directory was moved to, if any.
        """
        self._check_writable()
        try:
            old = self.manifest()
        except UserError:
            if not force:
                raise
            old = {}  # unreadable: with force, moved aside like any other incompatible run
        moved = None
        if old is not None and force:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            moved = unused_path(self.path.with_name(f"{self.path.name}.old-{stamp}"))
            try:
                shutil.move(str(self.path), moved)
            except OSError as exc:
                raise UserError(f"cannot move {self.path} aside to {moved}: "
                                f"{exc.strerror or exc}; nothing was changed") from None
            self._check_writable()
        elif old is not None:
            self._check_compatible(old, manifest)
            manifest = {
                **manifest,
                "created": old.get("created", manifest.get("created")),
                "agents": {**old.get("agents", {}), **manifest.get("agents", {})},
                "schedule": _union(old.get("schedule", []), manifest.get("schedule", [])),
                "runs": old.get("runs", []) + manifest.get("runs", []),
            }
        try:
            atomic_write_json(self.path / MANIFEST, manifest)
        except OSError as exc:
            raise UserError(self._cannot_write(self.path / MANIFEST, exc)) from None
        # a run killed mid-write leaves its temporary file; the lock says none is in use
        for stale in self.matches.glob(".*.tmp") if self.matches.is_dir() else ():
            stale.unlink(missing_ok=True)
        return moved

    def _check_compatible(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        hint = "choose another --out, or pass --force to move the old results aside"
        if old.get("game") != new["game"]:
            raise UserError(
                f"{self.path} holds results of game {old.get('game')!r}, not "
                f"{new['game']!r}; {hint}"
            )
        if old.get("settings_hash") != new["settings_hash"]:
            raise UserError(
                f"{self.path} holds results made with different settings (hash "
                f"{old.get('settings_hash')} != {new['settings_hash']}); refusing to mix "
                f"them: {hint}"
            )
        old_agents = old.get("agents", {})
        for name, params in new.get("agents", {}).items():
            if name in old_agents and old_agents[name] != params:
                raise UserError(
                    f"{self.path} holds results of agent {name!r} with parameters "
                    f"{old_agents[name]}, not {params}; refusing to mix them: {hint}"
                )

    def _check_writable(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".probe"):
                pass
        except OSError as exc:
            raise UserError(f"cannot write results to {self.path}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------------ matches
    def match_files(self) -> list[Path]:
        """All match files, sorted by name."""
        if not self.matches.is_dir():
            return []
        return sorted(self.matches.glob("*.json"))

    def _read(self, file: Path) -> tuple[dict[str, Any] | None, str | None]:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"unreadable JSON ({exc})"
        problem = validate_match(record, expected_id=file.stem)
        return (None, problem) if problem else (record, None)

    def stored(self, settings_hash: str) -> Stored:
        """One read of every match file: what is stored for ``settings_hash``; reads only."""
        stored = Stored()
        for file in self.match_files():
            record, problem = self._read(file)
            if record is not None and record["settings_hash"] != settings_hash:
                problem = "made with different settings"
            if problem is not None:
                stored.problems.append((file, problem))
                continue
            stored.done.add(file.stem)
            if is_failed(record):
                stored.failed[file.stem] = record
        return stored

    def finished(self, settings_hash: str) -> tuple[Stored, list[str]]:
        """What is stored (:meth:`stored`), and a line per corrupt file moved aside.

        Corrupt files (and records of other settings) are moved to ``corrupt/`` so that
        they are recomputed and still available for inspection.
        """
        stored = self.stored(settings_hash)
        reports = []
        for file, problem in stored.problems:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target = unused_path(self.path / CORRUPT / f"{file.name}.{stamp}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(file), target)
            except OSError as exc:
                raise UserError(self._cannot_write(target, exc)) from None
            reports.append(f"{file}: {problem}; moved to {target} and recomputing")
        return stored, reports

    def check(self, manifest: dict[str, Any]) -> None:
        """Refuse (UserError) what :meth:`prepare` would refuse without ``force``; writes
        nothing."""
        old = self.manifest()
        if old is not None:
            self._check_compatible(old, manifest)

    def write_match(self, record: dict[str, Any]) -> Path:
        """Atomically store one finished (or failed) match.

        A full disk or a permission error is a UserError that says what is kept: every match
        written before stays whole (writes are atomic), and a rerun resumes from them.
        """
        problem = validate_match(record)
        if problem:
            raise ValueError(f"refusing to store an invalid match record: {problem}")
        file = self.matches / f"{record['match_id']}.json"
        try:
            atomic_write_json(file, record)
        except OSError as exc:
            raise UserError(self._cannot_write(file, exc)) from None
        return file

    def _cannot_write(self, file: Path, exc: OSError) -> str:
        kept = len(self.match_files())
        cause = exc.strerror or str(exc)
        remedy = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                  else "fix the permissions" if exc.errno in PERMISSION_ERRORS
                  else "fix the cause")
        return (f"cannot write {file}: {cause}; the {kept} match results already in "
                f"{self.path} are kept: {remedy} and run the same command again to resume")

    # --------------------------------------------------------------------- lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory's lock while a run writes here; refuse if another run holds it.

        An OS file lock (``flock`` on ``DIR/.lock``): the kernel releases it when the holder
        exits, however it exits (SIGKILL included), so a killed run leaves no stale lock and
        is resumed by simply running again. :meth:`sign_lock` says who holds it.
        """
        self._check_writable()
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(
                f"another recip-tourney run{self._owner()} is writing to {self.path}; wait for "
                "it to finish (or stop it), or choose another --out"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def sign_lock(self) -> None:
        """Say who holds the lock (``DIR/.lock.owner``), for the message of a refused run.

        Called once the directory is prepared, so that a directory moved aside by
        ``--force`` keeps the files it had.
        """
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:]}
        try:
            atomic_write_json(self.path / LOCK_OWNER, owner)
        except OSError as exc:
            raise UserError(self._cannot_write(self.path / LOCK_OWNER, exc)) from None

    def _owner(self) -> str:
        try:
            owner = json.loads((self.path / LOCK_OWNER).read_text(encoding="utf-8"))
            return f" (pid {owner['pid']} on {owner['host']}, since {owner['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def records(self) -> list[dict[str, Any]]:
        """All match records for analysis; UserError on the first corrupt file.

        Analysis never guesses: a corrupt file stops it with a line naming the file, and
        ``recip-tourney run`` with the same ``--out`` recomputes it.
        """
        if not self.path.is_dir():
            raise UserError(f"no results directory at {self.path}")
        if self.manifest() is None:
            raise UserError(f"{self.path} is not a recip-tourney results directory (no {MANIFEST})")
        out = []
        for file in self.match_files():
            record, problem = self._read(file)
            if record is None:
                raise UserError(
                    f"corrupt results file {file}: {problem}; re-run `recip-tourney run` with "
                    "the same --out to recompute it"
                )
            out.append(record)
        return out


def _union(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Schedule entries of both lists, each match id once (new entries win)."""
    by_id = {entry["match_id"]: entry for entry in old}
    by_id.update({entry["match_id"]: entry for entry in new})
    return sorted(by_id.values(), key=lambda e: (e["agent"], e["opponent"], e["seed_index"]))
