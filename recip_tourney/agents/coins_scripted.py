"""Scripted Coins players: sanity opponents that do not learn.

The IPD's fixed strategies (always cooperate, tit for tat) have no meaning on a grid; these
two give a learner something known to play against: a uniformly random walker, and a greedy
collector that takes whichever coin is nearest, its own or not (so it defects whenever the
other's coin is closer).
"""

from __future__ import annotations

import torch

from recip_tourney.agents.base import NoParams
from recip_tourney.agents.coins_agent import CoinsAgent, CoinsSetup, CoinsStep
from recip_tourney.envs import coins as env
from recip_tourney.registry import register_agent

ACTIONS = 5


@register_agent("random", games=("coins",), params=NoParams, learns=False,
                reference="a sanity baseline")
class CoinsRandom(CoinsAgent):
    """Random: each step one of the five actions, uniformly."""

    def act(self, step: CoinsStep) -> torch.Tensor:
        """``floor(5 u)`` for the step's uniform draw ``u``."""
        return (step.noise * ACTIONS).long().clamp_(max=ACTIONS - 1)


@register_agent("greedy", games=("coins",), params=NoParams, learns=False,
                reference="a sanity baseline")
class CoinsGreedy(CoinsAgent):
    """Greedy: one step along a shortest torus path to the nearest coin, whoever owns it.

    Between coins at the same distance it prefers its own (then the lower index); between
    equally good moves, the first in the order right, left, down, up; on a coin it stays.
    """

    def __init__(self, params: NoParams, setup: CoinsSetup):
        super().__init__(params, setup)
        me = setup.me
        order = [me, *(c for c in range(setup.players) if c != me)]
        self.targets = torch.tensor(order, dtype=torch.long, device=setup.device)

    def act(self, step: CoinsStep) -> torch.Tensor:
        """The greedy move of this agent's slot, from the game state."""
        return env.greedy_action(step.state, self.setup.me, self.setup.grid, self.targets)
