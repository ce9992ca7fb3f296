"""Run a tournament: schedule, skip what is finished, play the rest in parallel, store as it comes.

Workers receive :class:`MatchSpec` data and build the agents themselves; each finished unit
comes back to this process and is written atomically the moment it arrives, so an
interruption loses at most the units in flight, and re-running with the same output
directory resumes. One run at a time may write a results directory (its lock). Units run on
loky processes or a dask cluster (:mod:`recip_tourney.tournament.backends`). On dask, a
game whose seeds are independent of their batch (``split_seeds`` in its registration)
plays every seed as its own unit, so a cluster's workers share a pairing's seeds; other
games keep loky's units. Either way the numbers are loky's, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from recip_tourney import __version__, registry
from recip_tourney.agents.base import PairingContext, agent_class
from recip_tourney.config import Config
from recip_tourney.device import describe
from recip_tourney.pretrain.artifacts import ArtifactSpec, ensure
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.progress import progress_bar
from recip_tourney.tournament import checkpoint
from recip_tourney.tournament.backends import execution
from recip_tourney.tournament.match import play_match, usable_cores
from recip_tourney.tournament.schedule import MatchSpec, round_robin
from recip_tourney.tournament.store import RUN_SCHEMA, ResultsDir, is_failed


@dataclass
class RunReport:
    """What a call to :func:`run_tournament` did."""

    out: Path
    total: int
    skipped: int
    played: int = 0
    notices: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: One line per failed match of the schedule (this run's and earlier ones').
    failed: list[str] = field(default_factory=list)


def versions() -> dict[str, str]:
    """Versions that can change numbers, recorded next to every result."""
    return {
        "recip_tourney": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def schedule(config: Config) -> list[MatchSpec]:
    """The tournament's work units, one per ordered pairing (or per listed pairing)."""
    specs = round_robin(
        config.game,
        config.settings.model_dump(),
        config.settings_hash,
        config.seed,
        list(config.roster),
        config.seeds,
    )
    if config.pairings is None:
        return specs
    return [s for s in specs if (s.agent.name, s.opponent.name) in config.pairings]


def pairing_artifacts(config: Config, spec: MatchSpec) -> dict[str, list[ArtifactSpec]]:
    """The pretrained artifacts each player of ``spec`` needs, by role."""
    settings = config.settings.model_dump()
    pairing = PairingContext(spec.agent, spec.opponent, settings, config.agent_params)
    needs = {
        "agent": agent_class(config.game, spec.agent.name).artifacts(pairing),
        "opponent": agent_class(config.game, spec.opponent.name).artifacts(pairing.swap()),
    }
    return {role: specs for role, specs in needs.items() if specs}


def attach_artifacts(
    config: Config,
    specs: list[MatchSpec],
    cache: ArtifactCache,
    *,
    train: bool,
    console: Console,
    progress: bool,
) -> list[MatchSpec]:
    """Load (training where missing) every artifact the units need and attach them."""
    needs = [pairing_artifacts(config, spec) for spec in specs]
    wanted = [a for need in needs for role in need.values() for a in role]
    if not wanted:
        return specs
    payloads = ensure(wanted, cache, train=train, console=console, progress=progress,
                      device=config.device)
    return [
        replace(
            spec,
            artifacts={role: [payloads[a.digest] for a in arts] for role, arts in need.items()},
        )
        for spec, need in zip(specs, needs, strict=True)
    ]


def manifest_for(config: Config, specs: list[MatchSpec], jobs: int, backend: str = "loky"
                 ) -> dict[str, Any]:
    """The results-directory manifest of a run of ``config``."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        "schema": RUN_SCHEMA,
        "game": config.game,
        "settings_hash": config.settings_hash,
        "config": config.to_dict(),
        "agents": {p.name: p.params for p in config.roster},
        "versions": versions(),
        "created": now,
        "schedule": [
            {
                "match_id": s.match_id,
                "agent": spec.agent.name,
                "opponent": spec.opponent.name,
                "seed_index": s.index,
                "seed": s.seed,
            }
            for spec in specs
            for s in spec.seeds
        ],
        "runs": [{"started": now, "argv": sys.argv[1:], "jobs": jobs, "backend": backend,
                  **describe(config.device)}],
    }


def run_tournament(
    config: Config,
    out: Path,
    *,
    jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    force: bool = False,
    retry_failed: bool = False,
    checkpoint_minutes: float = 10.0,
    console: Console | None = None,
    progress: bool = True,
    cache: ArtifactCache | None = None,
    pretrain: bool = True,
) -> RunReport:
    """Play every match of ``config`` that ``out`` does not hold yet.

    Parameters
    ----------
    config : Config
        The resolved tournament config.
    out : Path
        Results directory (created; resumed when it holds a run of the same settings).
    jobs : int
        loky: worker processes (1 plays in this process); dask without ``scheduler``: the
        local cluster's worker processes.
    backend : {"loky", "dask"}
        Where units run (:func:`~recip_tourney.tournament.backends.execution`).
    scheduler : str, optional
        dask: address of a running scheduler; without it a local cluster is started.
    force : bool
        Move an incompatible existing directory aside instead of refusing.
    retry_failed : bool
        Play the stored failed matches again (they are kept, not replayed, by default).
    checkpoint_minutes : float
        Minutes of play between mid-match checkpoints in ``out/checkpoints`` for games that
        keep them (Coins); 0 writes none. A rerun after an interruption resumes an unfinished
        match from its checkpoint, with the same numbers (whatever this interval).
    console : rich.console.Console, optional
        Where progress and notices go (stderr by default).
    progress : bool
        Show the progress bar.
    cache : ArtifactCache, optional
        Pretrained artifacts (default: the user's cache plus those shipped in the package).
    pretrain : bool
        Train missing artifacts (with a notice and a progress bar); False makes a missing
        artifact an error.

    Raises
    ------
    UserError
        Another run writes to ``out``; ``out`` holds incompatible results; a results file
        cannot be written (what was written before is kept); a bad backend or scheduler.
    """
    console = console or Console(stderr=True)
    start = time.perf_counter()
    specs = schedule(config)
    store = ResultsDir(out)
    manifest = manifest_for(config, specs, jobs, backend)
    if not force:
        store.check(manifest)  # refuse before touching anything (checked again, locked)
    with contextlib.ExitStack() as held:
        held.enter_context(store.lock())
        moved = store.prepare(manifest, force=force)
        if moved is not None:  # the lock moved with the old directory: lock the new one
            held.enter_context(store.lock())
        store.sign_lock()
        # a run killed while writing a checkpoint leaves its temporary file; the lock says
        # that no other run writes here, so it is stale
        folder = store.path / checkpoint.FOLDER
        for stale in folder.glob(".*.tmp") if folder.is_dir() else ():
            stale.unlink(missing_ok=True)
        stored, corrupt = store.finished(config.settings_hash)
        done, failed = stored.done, stored.failed
        if retry_failed:
            done, failed = done - failed.keys(), {}
        pending = [unit for spec in specs if (unit := spec.without(done)) is not None]
        pending = attach_artifacts(
            config, pending, cache or ArtifactCache(), train=pretrain, console=console,
            progress=progress,
        )  # fmt: skip
        total = sum(len(spec.seeds) for spec in specs)
        left = sum(len(unit.seeds) for unit in pending)
        report = RunReport(out, total, total - left, notices=list(corrupt))
        if moved is not None:
            report.notices.append(f"moved the previous results in {out} to {moved}")
        if report.skipped:
            report.notices.append(
                f"resuming: {report.skipped} of {total} matches already in {out}, skipped"
            )
        for line in report.notices:
            # soft_wrap: a notice names files; never break a path across lines.
            console.print(f"[yellow]{line}[/yellow]", highlight=False, soft_wrap=True)
        if pending:
            every = 60.0 * checkpoint_minutes if checkpoint_minutes > 0 else math.inf
            pending = [replace(unit, checkpoints=str(folder), checkpoint_every_s=every)
                       for unit in pending]
            resumable = sum(  # a unit's checkpoint, or (dask) those of its seeds played apart
                any(checkpoint.checkpoint_path(folder, ids).exists()
                    for ids in [[s.match_id for s in unit.seeds]]
                    + [[s.match_id] for s in unit.seeds])
                for unit in pending
            )
            if resumable:
                console.print(f"[yellow]{resumable} unfinished match unit(s) have checkpoints "
                              f"in {folder}; those this code wrote resume from them[/yellow]",
                              highlight=False, soft_wrap=True)
            failed |= _play(pending, store, report, config.game, backend, jobs, scheduler,
                            console, progress)
        report.failed = _failures(failed, specs)
    report.elapsed_s = time.perf_counter() - start
    return report


def _play(pending: list[MatchSpec], store: ResultsDir, report: RunReport, game: str,
          backend: str, jobs: int, scheduler: str | None, console: Console, progress: bool
          ) -> dict[str, dict[str, Any]]:
    """Hand the units to the backend; store each one's records as they come back.

    Returns the records of the matches that failed, by id.
    """
    failed = {}
    with execution(backend, min(jobs, len(pending)), scheduler) as runs, \
            progress_bar(console, show=progress, unit="matches") as bar, \
            warnings.catch_warnings():
        # stopped early (a write failed, Ctrl-C), joblib warns that it cancelled the rest
        warnings.filterwarnings("ignore", message=".*tasks which were still being processed")
        task = bar.add_task(game, total=report.total, completed=report.skipped)
        if runs.backend == "dask":
            console.print(f"playing on {runs.where} ({runs.workers} worker threads)",
                          highlight=False, soft_wrap=True)
            # a cluster has more workers than pairings: play seeds apart where that changes
            # no number, else the same units as loky (identical results either way)
            split = registry.game(game).split_seeds
            units = [replace(unit, seeds=seeds, threads=1) for unit in pending
                     for seeds in ([(s,) for s in unit.seeds] if split else [unit.seeds])]
        else:
            threads = max(1, usable_cores() // runs.workers)
            units = [replace(unit, threads=threads) for unit in pending]
        folder = units[0].checkpoints
        for records in runs.map(play_match, units):
            for record in records:
                store.write_match(record)
                if is_failed(record):
                    failed[record["match_id"]] = record
            if folder:  # stored: the unit's checkpoint has served
                checkpoint.discard(folder, [record["match_id"] for record in records])
            report.played += len(records)
            bar.advance(task, len(records))
    return failed


def _failures(failed: dict[str, dict[str, Any]], specs: list[MatchSpec]) -> list[str]:
    """A line per failed match of the schedule, sorted."""
    scheduled = {slot.match_id for spec in specs for slot in spec.seeds}
    return sorted(
        f"{r['agent']} vs {r['opponent']}, seed {r['seed_index']}: {r['error']}"
        for match_id, r in failed.items() if match_id in scheduled
    )
