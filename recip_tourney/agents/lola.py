"""LOLA with exact gradients, as in the M-FOS and Reciprocator reference code."""

from __future__ import annotations

import torch
from pydantic import Field

from recip_tourney.agents.base import AnalyticAgent, Params
from recip_tourney.envs.ipd_analytic import View
from recip_tourney.registry import register_agent


class LolaParams(Params):
    """Parameters of :class:`Lola`."""

    lr: float = Field(1.0, gt=0.0, description="own step size")
    lookahead: float = Field(1.0, gt=0.0, description="assumed naive step of the opponent")


@register_agent(
    "lola",
    games=("ipd-analytic",),
    params=LolaParams,
    learns=True,
    reference="Foerster et al., LOLA (AAMAS 2018); exact variant of Letcher et al. (ICLR 2019)",
)
class Lola(AnalyticAgent):
    """LOLA: a gradient step on its return after the opponent's anticipated naive step.

    ``theta1 <- theta1 + lr [grad1 V1 + lookahead * grad1 (grad2 V1 . grad2 V2)]``, the gradient
    of the first-order Taylor surrogate ``V1 + lookahead * grad2 V1 . grad2 V2``. Both
    second-order terms of the product rule are kept, as in the reference code (the LOLA paper
    keeps only the shaping term).
    """

    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """Exact LOLA step: closed-form first-order terms, autograd for the second order."""
        own = view.own.detach().requires_grad_(True)
        with torch.enable_grad():
            seen_by_other = self.game.evaluate(own, view.other.detach()).flip()
            grad_other_of_own = seen_by_other.gradient(seen_by_other.u_other)
            grad_other_of_other = seen_by_other.gradient()
            coupling = (grad_other_of_own * grad_other_of_other).sum()
            (shaping,) = torch.autograd.grad(coupling, own)
        step = view.gradient() + self.params.lookahead * shaping
        return view.own + self.params.lr * step
