"""Agents, one module per algorithm; importing this package registers them all."""

from recip_tourney.agents import (  # noqa: F401
    coins_learners,
    coins_mfos,
    coins_scripted,
    fixed,
    lola,
    mfos,
    mmaml,
    naive,
    reciprocator,
    reciprocator_rollout,
)
