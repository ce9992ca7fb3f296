"""The result set: tidy pandas frames built from the stored match records of one tournament.

A :class:`ResultSet` is loaded once (from a results directory or from records in memory) and
then answers the payoff and cooperation questions as tidy frames: one row per ordered pairing
(and state), with mean, SEM, standard deviation and a Student-t 95% interval over seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recip_tourney.errors import UserError
from recip_tourney.tournament.store import ResultsDir, is_failed

PAIR = ["agent", "opponent"]
PER_SEED_COLUMNS = ["agent", "opponent", "seed_index", "seed", "reward", "opponent_reward"]
FAILURE_COLUMNS = ["agent", "opponent", "seed_index", "seed", "error"]
STAT_SUFFIXES = ("mean", "sem", "std", "ci95_low", "ci95_high")


def agent_order(manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Display order of agents: the roster first, then other names found in records, sorted.

    Parameters
    ----------
    manifest : Mapping
        The run manifest; ``manifest["config"]["roster"]`` is used when present.
    records : iterable of Mapping
        Match records; their ``agent`` and ``opponent`` names are collected.

    Returns
    -------
    list of str
    """
    config = manifest.get("config") or {}
    roster = [str(name) for name in config.get("roster") or []]
    roster = list(dict.fromkeys(roster))
    seen = {str(r[key]) for r in records for key in PAIR}
    return roster + sorted(seen - set(roster))


def sort_rows(
    frame: pd.DataFrame, orders: Mapping[str, Sequence[str]], then: Sequence[str] = ()
) -> pd.DataFrame:
    """Sort ``frame`` by columns each in the order of its list of values, then by ``then``.

    Values absent from their list sort last; ``then`` columns sort naturally. Returns a copy
    with a fresh 0..n-1 index.
    """
    ranks = {col: {value: i for i, value in enumerate(order)} for col, order in orders.items()}

    def key(column: pd.Series) -> pd.Series:
        rank = ranks.get(column.name)
        if rank is None:
            return column
        return column.map(lambda value: rank.get(value, len(rank)))

    by = [*orders, *then]
    return frame.sort_values(by, key=key, kind="stable").reset_index(drop=True)


def aggregate(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Mean, SEM, std and 95% interval of each value column over the rows of each group.

    This is the one place where spreads over seeds are computed; the payoff and cooperation
    frames both use it.

    Parameters
    ----------
    frame : DataFrame
        One row per seed (per match), with the ``keys`` and ``values`` columns.
    keys : sequence of str
        Grouping columns; groups keep their order of first appearance.
    values : sequence of str
        Numeric columns to summarise.

    Returns
    -------
    DataFrame
        ``keys``, then for each value ``V``: ``V_mean, V_sem, V_std, V_ci95_low, V_ci95_high``,
        then ``n_seeds`` (rows in the group). ``std`` uses ``ddof=1`` and
        ``sem = std / sqrt(n)``; the interval is ``mean ± t(0.975, n-1) * sem``. With a
        single seed the spreads are NaN, not 0: one seed says nothing about the spread.
    """
    grouped = frame.groupby(list(keys), sort=False)
    mean = grouped[list(values)].mean()
    std = grouped[list(values)].std(ddof=1)
    n = grouped[list(values)].count()
    sem = std / np.sqrt(n)
    # t.ppf is NaN for df <= 0, so one-seed groups get NaN intervals without a special case.
    from scipy import stats  # here: it takes a second to import, and only tables need it

    half = sem * stats.t.ppf(0.975, n - 1)
    parts = {}
    for value in values:
        parts |= {
            f"{value}_mean": mean[value],
            f"{value}_sem": sem[value],
            f"{value}_std": std[value],
            f"{value}_ci95_low": mean[value] - half[value],
            f"{value}_ci95_high": mean[value] + half[value],
        }
    out = pd.DataFrame(parts)
    out["n_seeds"] = grouped.size()
    return out.reset_index()


@dataclass
class ResultSet:
    """The finished matches of one tournament, as tidy frames.

    Attributes
    ----------
    game : str
        Game name from the manifest.
    settings_hash : str
        Settings hash from the manifest; every record carries the same one.
    agents : list of str
        Agent names in display order (roster order, then other names, sorted).
    per_seed : DataFrame
        One row per finished match: ``agent, opponent, seed_index, seed, reward,
        opponent_reward``, sorted by agent, opponent (display order) and seed index.
    records : list of dict
        The finished matches' records, in ``per_seed`` order (for curves and other details).
    manifest : dict
        The run manifest.
    failures : DataFrame
        One row per failed match (``agent, opponent, seed_index, seed, error``), in the same
        order; failed matches are in no mean, spread or curve.
    """

    game: str
    settings_hash: str
    agents: list[str]
    per_seed: pd.DataFrame
    records: list[dict[str, Any]] = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)
    failures: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS), repr=False)

    @classmethod
    def from_dir(cls, path: Path | str) -> ResultSet:
        """Load the results directory ``path``; UserError when it is missing, empty or corrupt."""
        store = ResultsDir(path)
        records = store.records()
        manifest = store.manifest()
        assert manifest is not None  # records() already refused a directory without one
        return cls.from_records(records, manifest, source=str(path))

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        manifest: Mapping[str, Any],
        *,
        source: str = "the given records",
    ) -> ResultSet:
        """Build a result set from match records and their run manifest.

        Parameters
        ----------
        records : sequence of Mapping
            Match records (schema ``recip-tourney/match/1``).
        manifest : Mapping
            Run manifest with ``game``, ``settings_hash`` and ``config``.
        source : str
            Where the records came from, for error messages.

        Raises
        ------
        UserError
            No records; a record of another game or settings than the manifest; two records
            of the same pairing and seed index.
        """
        if not records:
            raise UserError(
                f"no finished matches in {source}; run `recip-tourney run` first "
                "(or wait for it to finish some matches)"
            )
        game, settings_hash = manifest.get("game"), manifest.get("settings_hash")
        for record in records:
            if record["game"] != game or record["settings_hash"] != settings_hash:
                raise UserError(
                    f"match {record['match_id']} in {source} was made with game "
                    f"{record['game']!r} / settings {record['settings_hash']}, but the manifest "
                    f"says {game!r} / {settings_hash}; refusing to mix results"
                )
        agents = agent_order(manifest, records)
        failures = pd.DataFrame(
            [tuple(r[k] for k in FAILURE_COLUMNS) for r in records if is_failed(r)],
            columns=FAILURE_COLUMNS,
        )
        failures = sort_rows(failures.astype({"agent": str, "opponent": str}),
                             {"agent": agents, "opponent": agents}, ["seed_index"])
        records = [r for r in records if not is_failed(r)]
        per_seed = pd.DataFrame(
            [
                (
                    r["agent"],
                    r["opponent"],
                    r["seed_index"],
                    r["seed"],
                    float(r["summary"]["reward"]),
                    float(r["summary"]["opponent_reward"]),
                    i,
                )
                for i, r in enumerate(records)
            ],
            columns=[*PER_SEED_COLUMNS, "_i"],
        )
        per_seed[PAIR] = per_seed[PAIR].astype(str)
        per_seed = sort_rows(per_seed, {"agent": agents, "opponent": agents}, ["seed_index"])
        both = pd.concat([per_seed[["agent", "opponent", "seed_index"]],
                          failures[["agent", "opponent", "seed_index"]]])
        dupes = both.duplicated(["agent", "opponent", "seed_index"])
        if dupes.any():
            row = both[dupes].iloc[0]
            raise UserError(
                f"{source} holds two matches of {row.agent} vs {row.opponent} with seed index "
                f"{row.seed_index}; refusing to count a seed twice"
            )
        ordered = [dict(records[i]) for i in per_seed.pop("_i")]
        return cls(
            game=str(game),
            settings_hash=str(settings_hash),
            agents=agents,
            per_seed=per_seed,
            records=ordered,
            manifest=dict(manifest),
            failures=failures,
        )

    def payoff(self) -> pd.DataFrame:
        """Average reward per step, one row per ordered pairing (see :func:`aggregate`).

        Columns: ``agent, opponent``, ``reward_*`` and ``opponent_reward_*`` statistics
        (``mean, sem, std, ci95_low, ci95_high``) and ``n_seeds`` (finished seeds); rows in
        display order. When matches failed, also ``n_failed``: a pairing whose every seed
        failed has a row of NaN statistics and ``n_seeds`` 0.
        """
        frame = aggregate(self.per_seed, PAIR, ["reward", "opponent_reward"])
        if self.failures.empty:
            return frame
        failed = self.failures.groupby(PAIR, sort=False).size().rename("n_failed").reset_index()
        frame = frame.merge(failed, on=PAIR, how="outer")
        frame["n_seeds"] = frame["n_seeds"].fillna(0).astype(int)
        frame["n_failed"] = frame["n_failed"].fillna(0).astype(int)
        return sort_rows(frame, {"agent": self.agents, "opponent": self.agents})

    def cooperation(self) -> pd.DataFrame:
        """The game's cooperation statistics of both players, one row per pairing and
        statistic (the IPDs: P(cooperate) of the final policies per state; Coins: own-coin
        share and coins per episode).

        See :func:`recip_tourney.tables.cooperation.cooperation_frame`.
        """
        # Imported here because cooperation.py builds on this module's helpers.
        from recip_tourney.registry import describe_cooperation
        from recip_tourney.tables.cooperation import cooperation_frame

        states = describe_cooperation(self.game)[0]
        return cooperation_frame(self.records, self.agents, states)

    def curves(self, key: str = "reward") -> pd.DataFrame:
        """One learning curve per match in long form.

        Returns
        -------
        DataFrame
            ``agent, opponent, seed_index, update, value``; matches without ``key`` in their
            ``curves`` are left out. UserError when no match has it.
        """
        rows = [
            (r["agent"], r["opponent"], r["seed_index"], update, value)
            for r in self.records
            for update, value in enumerate(r["curves"].get(key) or [])
        ]
        if not rows:
            known = sorted({k for r in self.records for k in r["curves"]})
            raise UserError(f"no match has a {key!r} curve; curves recorded: {', '.join(known)}")
        return pd.DataFrame(rows, columns=["agent", "opponent", "seed_index", "update", "value"])
