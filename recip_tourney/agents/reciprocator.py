"""The analytic Reciprocator (Zhou, Hong & Kao, NeurIPS 2024)."""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch
from pydantic import Field

from recip_tourney.agents.base import AnalyticAgent, Params
from recip_tourney.agents.influence import BaselineIndex, influence_terms, shaped_value
from recip_tourney.envs.ipd import swap_state_index
from recip_tourney.envs.ipd_analytic import AnalyticIPD, View
from recip_tourney.registry import register_agent


class ReciprocatorParams(Params):
    """Parameters of :class:`Reciprocator` (defaults: the paper's IPD-Analytic values)."""

    lr: float = Field(1.0, gt=0.0, description="step size on the unnormalised shaped return")
    rr_weight: float = Field(5.0, ge=0.0, description="weight of the reciprocal reward")
    buffer_size: int = Field(5, gt=0, description="recent policies averaged into baselines")
    target_period: int = Field(10, gt=0, description="updates between baseline refreshes")
    tau: float = Field(1.0, gt=0.0, le=1.0, description="soft-update rate (1 = hard copy)")
    baseline_index: BaselineIndex = Field(
        "as_implemented",
        description="as_implemented: the reference code's off-by-one baseline lookup "
        "(reproduces the published numbers); corrected: the intended state",
    )
    opponent_view: Literal["as_implemented", "pre_update"] = Field(
        "as_implemented",
        description="as_implemented: when moving second, learn against the opponent's "
        "already-updated policy, as the reference code does; pre_update: always the "
        "policy just played",
    )


@register_agent(
    "reciprocator",
    games=("ipd-analytic",),
    params=ReciprocatorParams,
    learns=True,
    reference="Zhou, Hong & Kao, Reciprocal Reward Influence Encourages Cooperation From "
    "Self-Interested Agents (NeurIPS 2024)",
)
class Reciprocator(AnalyticAgent):
    """Reciprocator: exact gradient ascent on extrinsic plus reciprocal reward.

    The reciprocal reward multiplies the opponent's one-step influence on the Reciprocator's
    payoff (the grudge) by the Reciprocator's one-step influence on the opponent's payoff,
    both measured against baselines, the average of the last ``buffer_size`` policies of each
    player, refreshed every ``target_period`` updates. So it pays to reward an opponent who
    helped and to punish one who hurt. It does not differentiate through the opponent's
    learning. The value uses the exact discounted visitation of outcome triples; rewards of
    the first two outcomes are not counted, as in the reference code.
    """

    def __init__(
        self, params: ReciprocatorParams, game: AnalyticIPD, init_std: float = 1.0
    ) -> None:
        super().__init__(params, game, init_std)
        self._terms: tuple[torch.Tensor, torch.Tensor] | None = None
        self._own_buffer: deque[torch.Tensor] = deque(maxlen=params.buffer_size)
        self._opp_buffer: deque[torch.Tensor] = deque(maxlen=params.buffer_size)
        self._counter = 1
        self._last_rr: torch.Tensor | None = None

    def _start(self, batch: int) -> None:
        half = torch.full((5, batch), 0.5, dtype=self.game.dtype, device=self.device)
        self._own_baseline, self._opp_baseline = half, half
        self._own_buffer.append(half)
        self._opp_buffer.append(half)
        self._refresh_terms()

    def _refresh_terms(self) -> None:
        self._terms = influence_terms(
            self._own_baseline.T, self._opp_baseline.T, self.params.baseline_index
        )

    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """One gradient step on the shaped return; then the baseline bookkeeping."""
        p = self.params
        if self._terms is None:
            self._start(view.own.shape[1])
        use_next = other_next is not None and p.opponent_view == "as_implemented"
        opponent = (other_next if use_next else view.other).detach()
        self._counter += 1
        own = view.own.detach().requires_grad_(True)
        with torch.enable_grad():
            # the chain from the opponent's side, as the shaped rewards are written
            seen = self.game.evaluate(opponent, own)
            value, reciprocal = shaped_value(
                seen.visitation.T, seen.transition(), *self._terms, p.rr_weight
            )
            (grad,) = torch.autograd.grad(value.sum(), own)
            self._last_rr = reciprocal.detach()
        new = view.own + p.lr * grad
        self._own_buffer.append(torch.sigmoid(new))
        swap = swap_state_index(opponent.device)
        self._opp_buffer.append(torch.sigmoid(opponent.index_select(0, swap)))
        if self._counter % p.target_period == 0:
            own_mean = torch.stack(tuple(self._own_buffer)).mean(0)
            opp_mean = torch.stack(tuple(self._opp_buffer)).mean(0)
            self._own_baseline = p.tau * own_mean + (1 - p.tau) * self._own_baseline
            self._opp_baseline = p.tau * opp_mean + (1 - p.tau) * self._opp_baseline
            self._refresh_terms()
        return new

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """``reciprocal_reward``: the per-step average of the reciprocal part of the value."""
        if self._last_rr is None:
            return {}
        return {"reciprocal_reward": (1 - self.game.gamma) * self._last_rr}
