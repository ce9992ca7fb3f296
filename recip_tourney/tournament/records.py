"""Building match records, the one format every game's protocol returns."""

from __future__ import annotations

from typing import Any

from recip_tourney.tournament.schedule import MatchSpec, SeedSlot
from recip_tourney.tournament.store import MATCH_SCHEMA


def match_record(
    spec: MatchSpec,
    slot: SeedSlot,
    *,
    summary: dict[str, float],
    cooperation: dict[str, dict[str, float]],
    curves: dict[str, list[float]],
) -> dict[str, Any]:
    """The stored record of one seed of one match (schema ``recip-tourney/match/1``).

    Parameters
    ----------
    summary : dict
        ``reward`` and ``opponent_reward``: average reward per step, as the tables show it.
    cooperation : dict
        ``{"agent": {state: P(C)}, "opponent": {...}}`` for the final policies.
    curves : dict
        Per recorded update: rewards, P(C) and agent diagnostics (``agent.<name>``).
    """
    return {
        "schema": MATCH_SCHEMA,
        "match_id": slot.match_id,
        "game": spec.game,
        "settings_hash": spec.settings_hash,
        "agent": spec.agent.name,
        "opponent": spec.opponent.name,
        "agent_params": spec.agent.params,
        "opponent_params": spec.opponent.params,
        "seed_index": slot.index,
        "seed": slot.seed,
        "summary": summary,
        "cooperation": cooperation,
        "curves": curves,
    }
