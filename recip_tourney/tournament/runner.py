"""Run a tournament: schedule, skip what is finished, play the rest in parallel, store as it comes.

Workers receive :class:`MatchSpec` data and build the agents themselves; each finished unit
is written atomically the moment it arrives, so an interruption loses at most the units in
flight, and re-running with the same output directory resumes.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed
from rich.console import Console

from recip_tourney import __version__
from recip_tourney.agents.base import PairingContext, agent_class
from recip_tourney.config import Config
from recip_tourney.pretrain.artifacts import ArtifactSpec, ensure
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.progress import progress_bar
from recip_tourney.tournament.match import play_match, usable_cores
from recip_tourney.tournament.schedule import MatchSpec, round_robin
from recip_tourney.tournament.store import RUN_SCHEMA, ResultsDir


@dataclass
class RunReport:
    """What a call to :func:`run_tournament` did."""

    out: Path
    total: int
    skipped: int
    played: int = 0
    notices: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


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
    payloads = ensure(wanted, cache, train=train, console=console, progress=progress)
    return [
        replace(
            spec,
            artifacts={role: [payloads[a.digest] for a in arts] for role, arts in need.items()},
        )
        for spec, need in zip(specs, needs, strict=True)
    ]


def manifest_for(config: Config, specs: list[MatchSpec], jobs: int) -> dict[str, Any]:
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
        "runs": [{"started": now, "argv": sys.argv[1:], "jobs": jobs}],
    }


def run_tournament(
    config: Config,
    out: Path,
    *,
    jobs: int = 1,
    force: bool = False,
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
        joblib workers (loky processes); 1 plays in this process.
    force : bool
        Move an incompatible existing directory aside instead of refusing.
    console : rich.console.Console, optional
        Where progress and notices go (stderr by default).
    progress : bool
        Show the progress bar.
    cache : ArtifactCache, optional
        Pretrained artifacts (default: the user's cache plus those shipped in the package).
    pretrain : bool
        Train missing artifacts (with a notice and a progress bar); False makes a missing
        artifact an error.
    """
    console = console or Console(stderr=True)
    start = time.perf_counter()
    specs = schedule(config)
    store = ResultsDir(out)
    moved = store.prepare(manifest_for(config, specs, jobs), force=force)
    done, corrupt = store.finished(config.settings_hash)
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

    with progress_bar(console, show=progress, unit="matches") as bar:
        task = bar.add_task(config.game, total=total, completed=report.skipped)
        if pending:
            workers = min(jobs, len(pending))
            threads = max(1, usable_cores() // workers)
            pending = [replace(unit, threads=threads) for unit in pending]
            parallel = Parallel(n_jobs=workers, return_as="generator_unordered")
            for records in parallel(delayed(play_match)(unit) for unit in pending):
                for record in records:
                    store.write_match(record)
                report.played += len(records)
                bar.advance(task, len(records))
    report.elapsed_s = time.perf_counter() - start
    return report
