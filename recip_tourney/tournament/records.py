"""Building match records, the one format every game's protocol returns."""

from __future__ import annotations

import math
from typing import Any

from recip_tourney.tournament.schedule import MatchSpec, SeedSlot
from recip_tourney.tournament.store import FAILED, MATCH_SCHEMA


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
    return {**identity(spec, slot), "summary": summary, "cooperation": cooperation,
            "curves": curves}


def identity(spec: MatchSpec, slot: SeedSlot) -> dict[str, Any]:
    """What every record of one seed of ``spec`` starts with: which match it is."""
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
    }


#: The curves that must stay finite: a NaN or infinite reward means the match diverged.
CHECKED_CURVES = ("reward", "opponent_reward")


def failed_record(spec: MatchSpec, slot: SeedSlot, error: str, where: str = "") -> dict[str, Any]:
    """The stored record of a seed whose match failed: its error (one line) and traceback.

    Tables show it as failed and leave it out of every mean; a resumed run keeps it unless
    ``--retry-failed``.
    """
    return {**identity(spec, slot), "status": FAILED, "error": error, "traceback": where}


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def nonfinite_reward(record: dict[str, Any]) -> str | None:
    """Why ``record``'s rewards are not all finite (the first bad value), or None."""
    for key in CHECKED_CURVES:
        for episode, value in enumerate(record["curves"].get(key) or []):
            if value is None or not _finite(value):
                return (f"the {key.replace('_', ' ')} became {value} at update {episode} "
                        "(diverged: check the learning rates)")
    for key in ("reward", "opponent_reward"):
        value = record["summary"].get(key)
        if not _finite(value):
            return f"the {key.replace('_', ' ')} in the table is {value}"
    return None
