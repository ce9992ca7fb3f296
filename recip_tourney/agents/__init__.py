"""Agents, one module per algorithm; importing this package registers them all."""

from recip_tourney.agents import fixed, lola, mfos, mmaml, naive, reciprocator  # noqa: F401
