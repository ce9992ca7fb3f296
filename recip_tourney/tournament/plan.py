"""A dry run: what a tournament would play and roughly what it would cost, without running it.

The schedule is resolved exactly as :func:`~recip_tourney.tournament.runner.run_tournament`
resolves it, matches already in the results directory are left out (read only: nothing is
written, locked or moved), and each pairing still to play is timed by a short calibration:
one seed of the real match, with the config's sizes and agents, for a few episodes, on one
thread (as one worker plays it). Its seconds per episode times the configured episodes is
the estimate per match. Mirrored pairings (a vs b, b vs a) cost the same and are timed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from joblib import Parallel, delayed
from rich.table import Table
from rich.text import Text

from recip_tourney import registry
from recip_tourney.config import Config
from recip_tourney.errors import UserError
from recip_tourney.pretrain.artifacts import ensure
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.tournament.checkpoint import FOLDER, MatchCheckpoint
from recip_tourney.tournament.match import play_match
from recip_tourney.tournament.runner import manifest_for, pairing_artifacts, schedule
from recip_tourney.tournament.schedule import MatchSpec, stable_hash
from recip_tourney.tournament.store import ResultsDir, is_failed


@dataclass
class PairingCost:
    """The estimate of one ordered pairing still to play."""

    agent: str
    opponent: str
    seeds: int  # matches (seeds) still to play
    episodes: int  # the game's learning length per match
    seconds_per_episode: float | None = None  # from the calibration; None: not timed
    note: str = ""
    resumes_after: int = 0  # episodes already played, kept in a mid-match checkpoint

    @property
    def episodes_left(self) -> int:
        """Episodes each of its matches still has to play."""
        return self.episodes - self.resumes_after

    @property
    def per_match_s(self) -> float | None:
        """Estimated seconds of one match (one seed) on one core."""
        if self.seconds_per_episode is None:
            return None
        return self.seconds_per_episode * self.episodes_left

    @property
    def total_s(self) -> float | None:
        """Estimated seconds of all its matches on one core."""
        per_match = self.per_match_s
        return None if per_match is None else per_match * self.seeds


@dataclass
class Plan:
    """What :func:`plan_tournament` found."""

    game: str
    scheduled: int
    done: int
    failed: int
    calibration_episodes: int
    pairings: list[PairingCost] = field(default_factory=list)

    @property
    def to_play(self) -> int:
        """Matches the run would play."""
        return sum(p.seeds for p in self.pairings)

    @property
    def total_s(self) -> float:
        """Estimated core-seconds of the timed pairings."""
        return sum(p.total_s or 0.0 for p in self.pairings)

    def wall_s(self, workers: int) -> float:
        """Estimated wall time on ``workers`` single-core workers: the work spread evenly,
        but never less than the longest single match."""
        longest = max((p.per_match_s or 0.0 for p in self.pairings), default=0.0)
        return max(self.total_s / max(1, workers), longest)


def _timed(unit: MatchSpec) -> tuple[float | None, str]:
    start = time.perf_counter()
    records = play_match(unit)
    elapsed = time.perf_counter() - start
    failed = [r for r in records if is_failed(r)]
    return (None, f"calibration failed: {failed[0]['error']}") if failed else (elapsed, "")


def _calibration_unit(config: Config, unit: MatchSpec, episodes: int) -> MatchSpec:
    """One seed of ``unit``, ``episodes`` long."""
    length = registry.game(config.game).length
    settings = {**unit.settings, length: min(episodes, unit.settings[length])}
    return replace(unit, settings=settings, seeds=unit.seeds[:1], threads=1)


def plan_tournament(
    config: Config,
    out: Path,
    *,
    cache: ArtifactCache | None = None,
    calibration_episodes: int = 3,
    jobs: int = 1,
) -> Plan:
    """The schedule of ``config`` against ``out``, with a calibrated cost per pairing.

    Parameters
    ----------
    config : Config
    out : Path
        The results directory a run would write (read only; it need not exist).
    cache : ArtifactCache, optional
        Where pretrained artifacts are looked up; a pairing whose artifacts are missing is
        not timed (it needs ``recip-tourney pretrain`` first, which is never started here).
    calibration_episodes : int
        Episodes of the timing run of each pairing (0: no calibration).
    jobs : int
        Timing runs played side by side (each on one thread).

    Raises
    ------
    UserError
        ``out`` holds results a run would refuse to mix with these.
    """
    specs = schedule(config)
    store = ResultsDir(out)
    if store.path.exists():
        store.check(manifest_for(config, specs, jobs))
    stored = store.stored(config.settings_hash)
    done, failed = stored.done, stored.failed
    length = registry.game(config.game).length
    plan = Plan(config.game, sum(len(s.seeds) for s in specs), len(done), len(failed),
                calibration_episodes)
    to_time: dict[frozenset[str], MatchSpec] = {}
    timed_by: dict[int, frozenset[str]] = {}
    for spec in specs:
        unit = spec.without(done)
        if unit is None:
            continue
        cost = PairingCost(unit.agent.name, unit.opponent.name, len(unit.seeds),
                           int(unit.settings[length]))
        plan.pairings.append(cost)
        saved = MatchCheckpoint(replace(unit, checkpoints=str(store.path / FOLDER)))
        if (episodes := saved.episodes_done()) is not None:
            cost.resumes_after = episodes
            cost.note = f"resumes from its checkpoint after episode {episodes}"
        if calibration_episodes < 1:
            continue
        try:
            needs = pairing_artifacts(config, unit)
            wanted = [a for role in needs.values() for a in role]
            payloads = ensure(wanted, cache or ArtifactCache(), train=False, progress=False)
        except UserError:
            cost.note = "not timed: not pretrained yet (`recip-tourney pretrain`)"
            continue
        unit = replace(unit, artifacts={role: [payloads[a.digest] for a in arts]
                                        for role, arts in needs.items()})
        key = frozenset((stable_hash(unit.agent.key()), stable_hash(unit.opponent.key())))
        to_time.setdefault(key, _calibration_unit(config, unit, calibration_episodes))
        timed_by[len(plan.pairings) - 1] = key
    keys = list(to_time)
    results = Parallel(n_jobs=min(jobs, max(1, len(keys))))(
        delayed(_timed)(to_time[k]) for k in keys)
    timings = dict(zip(keys, results, strict=True))
    for i, key in timed_by.items():
        elapsed, note = timings[key]
        cost = plan.pairings[i]
        cost.note = "; ".join(n for n in (cost.note, note) if n)
        if elapsed is not None:
            cost.seconds_per_episode = elapsed / min(calibration_episodes, cost.episodes)
    return plan


def duration(seconds: float | None) -> str:
    """``seconds`` in the unit a person reads best (s, min, h, days); "-" for None."""
    if seconds is None:
        return "-"
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def plan_table(plan: Plan) -> Table:
    """The plan's pairings as a terminal table."""
    table = Table(title=f"{plan.game}: matches still to play, estimated on one core",
                  title_justify="left")
    for column in ("agent", "opponent", "seeds", "episodes left", "s / episode", "per match",
                   "all seeds"):
        table.add_column(column, justify="left" if column in ("agent", "opponent") else "right")
    table.add_column("note")
    for p in plan.pairings:
        per_episode = "-" if p.seconds_per_episode is None else f"{p.seconds_per_episode:.3g}"
        table.add_row(Text(p.agent), Text(p.opponent), str(p.seeds), str(p.episodes_left),
                      per_episode, duration(p.per_match_s), duration(p.total_s), Text(p.note))
    return table


def plan_summary(plan: Plan, workers: int, where: str) -> list[str]:
    """The plan's totals as lines: what is done, what is left, and the estimated cost."""
    lines = [f"{plan.scheduled} matches scheduled: {plan.done} already stored "
             f"({plan.failed} of them failed), {plan.to_play} to play."]
    if not plan.pairings:
        return lines
    if plan.calibration_episodes < 1:
        return [*lines, "No estimate (--calibrate 0)."]
    untimed = sum(p.seeds for p in plan.pairings if p.total_s is None)
    lines.append(
        f"Estimated cost: {duration(plan.total_s)} of one core (from {plan.calibration_episodes}"
        " calibration episodes of one seed per pairing, timed side by side as the run's "
        "workers play; seeds batched in one match may cost less); wall time on "
        f"{where}: about {duration(plan.wall_s(workers))}."
    )
    if untimed:
        lines.append(f"{untimed} matches are not in the estimate (see their notes).")
    return lines
