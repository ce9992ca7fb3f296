"""Fixed memory-one strategies: they never learn.

Deterministic strategies use saturated logits (+-20), so their values match the textbook
closed forms to about 1e-8.
"""

from __future__ import annotations

import torch
from pydantic import Field

from recip_tourney.agents.base import AnalyticAgent, NoParams, Params
from recip_tourney.envs.ipd import STATES, memory_one_logits
from recip_tourney.envs.ipd_analytic import View
from recip_tourney.registry import register_agent

ANALYTIC = ("ipd-analytic",)
AXELROD = "Axelrod, The Evolution of Cooperation (1984)"


class FixedStrategy(AnalyticAgent):
    """A memory-one strategy given by its P(cooperate) in each state; it never changes."""

    #: P(cooperate) in start, CC, CD, DC, DD (own action first).
    p_cooperate: dict[str, float] = {}

    def probabilities(self) -> dict[str, float]:
        """P(cooperate) per state (subclasses with parameters override this)."""
        return self.p_cooperate

    def initial_logits(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """The strategy's logits, the same in every game of the batch."""
        logits = memory_one_logits(self.probabilities()).to(self.game.dtype)
        return logits.unsqueeze(-1).expand(len(STATES), batch).contiguous()

    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """Fixed strategies keep their policy."""
        return view.own


@register_agent("allc", games=ANALYTIC, params=NoParams, learns=False, reference=AXELROD)
class AlwaysCooperate(FixedStrategy):
    """ALLC: cooperates in every state."""

    p_cooperate = dict.fromkeys(STATES, 1.0)


@register_agent("alld", games=ANALYTIC, params=NoParams, learns=False, reference=AXELROD)
class AlwaysDefect(FixedStrategy):
    """ALLD: defects in every state."""

    p_cooperate = dict.fromkeys(STATES, 0.0)


@register_agent("tft", games=ANALYTIC, params=NoParams, learns=False, reference=AXELROD)
class TitForTat(FixedStrategy):
    """TFT: cooperates first, then repeats the opponent's previous action."""

    p_cooperate = {"start": 1.0, "CC": 1.0, "CD": 0.0, "DC": 1.0, "DD": 0.0}


class RandomParams(Params):
    """Parameters of :class:`RandomStrategy`."""

    p_cooperate: float = Field(0.5, ge=0.0, le=1.0, description="P(cooperate) in every state")


@register_agent("random", games=ANALYTIC, params=RandomParams, learns=False, reference=AXELROD)
class RandomStrategy(FixedStrategy):
    """Random: cooperates with probability ``p_cooperate`` (default 0.5) in every state."""

    def probabilities(self) -> dict[str, float]:
        """The same P(cooperate) in every state."""
        return dict.fromkeys(STATES, self.params.p_cooperate)
