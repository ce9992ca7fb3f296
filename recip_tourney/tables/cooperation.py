"""The cooperation statistics frame: how often each player's final policy cooperates.

Every match record stores, for both players, P(cooperate) of the final policy overall (under
the discounted state visitation) and per state. States are seen from that player's own side:
``start`` is the first move, ``CD`` means "I cooperated, the other defected" last step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from recip_tourney.tables.results import PAIR, STAT_SUFFIXES, agent_order, aggregate, sort_rows

STATES = ("overall", "start", "CC", "CD", "DC", "DD")
VALUES = ("p_cooperate", "opponent_p_cooperate")
COOPERATION_COLUMNS = [
    *PAIR,
    "state",
    *(f"{value}_{suffix}" for value in VALUES for suffix in STAT_SUFFIXES),
    "n_seeds",
]


def _probability(side: Any, state: str) -> float:
    value = side.get(state) if isinstance(side, Mapping) else None
    return float(value) if isinstance(value, int | float) else float("nan")


def cooperation_long(
    records: Sequence[Mapping[str, Any]], states: Sequence[str] = STATES
) -> pd.DataFrame:
    """One row per match and state: ``agent, opponent, seed_index, state`` and both values.

    States are ``states`` (the game's statistics; the IPD's :data:`STATES` by default) plus
    any other one a record names; a state missing from a record gives NaN there.
    """
    extra: dict[str, None] = {}
    for record in records:
        for side in (record["cooperation"] or {}).values():
            extra |= dict.fromkeys(s for s in side if s not in states)
    rows = []
    for record in records:
        coop = record["cooperation"] or {}
        for state in (*states, *extra):
            rows.append(
                (
                    record["agent"],
                    record["opponent"],
                    record["seed_index"],
                    state,
                    _probability(coop.get("agent"), state),
                    _probability(coop.get("opponent"), state),
                )
            )
    return pd.DataFrame(rows, columns=[*PAIR, "seed_index", "state", *VALUES])


def cooperation_frame(
    records: Sequence[Mapping[str, Any]],
    agents: Sequence[str] | None = None,
    states: Sequence[str] = STATES,
) -> pd.DataFrame:
    """Cooperation statistics over seeds, one row per (agent, opponent, state).

    Parameters
    ----------
    records : sequence of Mapping
        Match records.
    agents : sequence of str, optional
        Display order of agent names; by default sorted names.

    Returns
    -------
    DataFrame
        Columns :data:`COOPERATION_COLUMNS`: ``agent, opponent, state``, then
        ``p_cooperate_*`` (the agent's) and ``opponent_p_cooperate_*`` statistics
        (``mean, sem, std, ci95_low, ci95_high``, see
        :func:`~recip_tourney.tables.results.aggregate`) and ``n_seeds``. Rows are sorted by
        agent and opponent in display order, then state in :data:`STATES` order.
    """
    if agents is None:
        agents = agent_order({}, records)
    long = cooperation_long(records, states)
    if long.empty:
        return pd.DataFrame(columns=COOPERATION_COLUMNS)
    frame = aggregate(long, [*PAIR, "state"], VALUES)
    states = list(dict.fromkeys(long["state"]))
    return sort_rows(frame, {"agent": agents, "opponent": agents, "state": states})
