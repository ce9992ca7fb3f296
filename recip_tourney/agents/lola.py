"""LOLA with exact gradients, as in the M-FOS and Reciprocator reference code."""

from __future__ import annotations

import torch
from pydantic import Field

from recip_tourney.agents.base import AnalyticAgent, Params
from recip_tourney.envs.ipd import swap_outcome_index, swap_state_index
from recip_tourney.envs.ipd_analytic import View
from recip_tourney.envs.linalg4 import lu_factor, lu_solve, lu_solve_transposed
from recip_tourney.registry import register_agent


class LolaParams(Params):
    """Parameters of :class:`Lola`."""

    lr: float = Field(1.0, gt=0.0, description="own step size")
    lookahead: float = Field(1.0, gt=0.0, description="assumed naive step of the opponent")


def _differences(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u_CC - u_DC, u_CD - u_DD)``: value of cooperating instead of defecting, (B,) each."""
    cc, cd, dc, dd = u.unbind(0)
    return cc - dc, cd - dd


def shaping_gradient(view: View) -> torch.Tensor:
    """``grad_own (grad_other V_own . grad_other V_other)``, exact, shape (5, B).

    The derivative of the coupling term of LOLA's first-order surrogate, written as one
    reverse pass by hand instead of autograd through the evaluation (several times
    faster). With ``S = p(1 - p) w`` the opponent's sigmoid slope times the weights
    ``w = (1, gamma M)``, and ``G_k = (1 - y) d_k + y c_k`` for the two rewards (``y`` is our
    P(C) in the opponent's states, ``c_k, d_k`` value differences), the coupling is
    ``sum S^2 G_own G_other``. Its cotangents reach the state values ``u`` and the
    visitation ``M``, go through the linear system by two adjoint solves, and reach our
    logits through the transition matrix, the first-outcome distribution and ``y``.
    Checked against nested autograd in the tests.
    """
    seen = view.flip()  # the opponent's frame: the coupling is written there
    gamma = view.gamma
    c_own, d_own = _differences(seen.u_other)  # our reward's values, opponent's order
    c_oth, d_oth = _differences(seen.u_own)  # the opponent's reward's values
    y = seen.p_other  # our P(C) in each of the opponent's states, (5, B)
    weight = torch.cat((torch.ones_like(c_own).unsqueeze(0), gamma * seen.visitation))
    slope = seen.p_own * (1 - seen.p_own) * weight  # S, (5, B)
    g_own = torch.lerp(d_own, c_own, y)  # (1 - y) d + y c
    g_oth = torch.lerp(d_oth, c_oth, y)
    s2 = slope * slope
    bar_g_own, bar_g_oth = s2 * g_oth, s2 * g_own
    # cotangents in the opponent's frame
    bar_y = bar_g_own * (c_own - d_own) + bar_g_oth * (c_oth - d_oth)  # (5, B)
    bar_visits = 2 * gamma * (slope * g_own * g_oth * seen.p_own * (1 - seen.p_own))[1:]
    bar_u = []
    for bar_g in (bar_g_own, bar_g_oth):
        bar_c, bar_d = (bar_g * y).sum(0), (bar_g * (1 - y)).sum(0)
        bar_u.append(torch.stack((bar_c, bar_d, -bar_c, -bar_d)))  # d/du of (c, d)
    # back to our frame (the swaps are involutions)
    outcomes = swap_outcome_index(view.own.device)
    bar_u_own = bar_u[0].index_select(0, outcomes)
    bar_u_oth = bar_u[1].index_select(0, outcomes)
    bar_visits = bar_visits.index_select(0, outcomes)
    bar_p_own = bar_y.index_select(0, swap_state_index(view.own.device))
    # adjoint of u = A^-1 R and A^T M = q (A = P - I / gamma, q = -p0 / gamma)
    lu = lu_factor(view.matrix())
    lam = torch.stack(lu_solve_transposed(lu, list(torch.stack((bar_u_own, bar_u_oth), 1))))
    mu = torch.stack(lu_solve(lu, list(bar_visits)))
    bar_a = -(view.visitation.unsqueeze(1) * mu.unsqueeze(0))
    for lam_k, u_k in zip(lam.unbind(1), view.u.unbind(1), strict=True):
        bar_a = torch.addcmul(bar_a, lam_k.unsqueeze(1), u_k.unsqueeze(0), value=-1)
    bar_p0 = mu * (-1.0 / gamma)
    # P[j] = joint(x_j, y_j), p0 = joint(x_0, y_0): d/dx = y (CC - DC) + (1 - y) (CD - DD)
    other = view.p_other  # the opponent's P(C) in our states, (5, B)
    rows = torch.cat((bar_p0.unsqueeze(0), bar_a)).transpose(0, 1)  # (4 k, 5 states, B)
    bar_x = torch.lerp(rows[1] - rows[3], rows[0] - rows[2], other)
    return (bar_p_own + bar_x) * view.p_own * (1 - view.p_own)


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
        """Exact LOLA step from the shared evaluation (closed-form gradients throughout)."""
        step = torch.add(view.gradient(), shaping_gradient(view), alpha=self.params.lookahead)
        return torch.add(view.own, step, alpha=self.params.lr)
