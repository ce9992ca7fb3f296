"""Exact discounted values of two memory-one policies in the IPD, batched and differentiable.

Every batch element is an independent game. From a player's own side (outcome index
``j = 2 * own_action + other_action``) the outcome chain has first-outcome distribution ``p0``
and transition matrix ``P``; the discounted visitation is ``M = p0^T (I - gamma P)^-1`` and
the exact discounted return ``V = M . r`` (first outcome at weight ``gamma^0``). Tables report
the average reward per step ``(1 - gamma) V``; learning rules use the unnormalised ``V`` as
the reference code does (IPD-Analytic spec, section 1).

Layout: memory-one logits are **state-major**, shape ``(5, B)``: row ``s`` holds state ``s``'s
logit for every game of the batch (states in :data:`recip_tourney.envs.ipd.STATES` order).
Thousands of tiny 4x4 systems are dominated by per-operation overhead, so every per-state
quantity is a contiguous batch vector; the system is solved by an unpivoted LU over those
vectors (:mod:`recip_tourney.envs.linalg4`), and the opponent's view is the same vectors
re-ordered, with no arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recip_tourney.envs.ipd import (
    PAYOFF,
    SWAP_OUTCOME,
    constant,
    swap_outcome_index,
    swap_state_index,
)
from recip_tourney.envs.linalg4 import solve_both

_OTHER_STATE = (0, *(1 + j for j in SWAP_OUTCOME))  # the other's state per mine
_REWARDS = tuple(  # (own, other) reward of each outcome, own action first
    (PAYOFF[j // 2][j % 2], PAYOFF[j % 2][j // 2]) for j in range(4)
)

#: Per-outcome weights of :meth:`View.summary`: own reward, other's reward, own C, other's C
#: (small integers: exact in any floating type, made on each device by :func:`constant`).
_SUMMARY_WEIGHTS = (
    tuple(float(r[0]) for r in _REWARDS),
    tuple(float(r[1]) for r in _REWARDS),
    (1.0, 1.0, 0.0, 0.0),
    (1.0, 0.0, 1.0, 0.0),
)


def _joint_row(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """P(CC), P(CD), P(DC), P(DD) from two tensors of P(cooperate), elementwise."""
    cc = x * y
    dc = y - cc
    return [cc, x - cc, dc, (1 - x) - dc]


def joint(p_own: torch.Tensor, p_other: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Joint outcome probabilities (CC, CD, DC, DD) of independent P(cooperate)s along ``dim``."""
    return torch.stack(_joint_row(p_own, p_other), dim=dim)


@dataclass(frozen=True)
class View:
    """One player's egocentric view of a batch of exactly evaluated games.

    Every tensor is state-major, in the player's own state/outcome order.

    Attributes
    ----------
    own, other : Tensor, shape (5, B)
        Egocentric memory-one logits of the player and of its opponent.
    p_own : Tensor, shape (5, B)
        The player's P(cooperate) in each of its states (start, CC, CD, DC, DD).
    p_other : Tensor, shape (5, B)
        The opponent's P(cooperate) in each of *the player's* states.
    p0 : Tensor, shape (4, B)
        Distribution of the first outcome (CC, CD, DC, DD).
    visitation : Tensor, shape (4, B)
        Discounted outcome visitation ``M``; sums to ``1 / (1 - gamma)``.
    u : Tensor, shape (4, 2, B)
        State values ``(I - gamma P)^-1 r`` of the player's reward (``u[:, 0]``) and of the
        opponent's (``u[:, 1]``).
    gamma : float
        The discount.
    system : Tensor, shape (4, 4, B)
        The solved matrix ``A = P - I / gamma`` (``A[j, k]``) in the outcome order of the
        player who evaluated; :meth:`matrix` gives it in this player's order.
    system_swapped : bool
        Whether ``system`` is in the opponent's order (views made by :meth:`flip`).
    """

    own: torch.Tensor
    other: torch.Tensor
    p_own: torch.Tensor
    p_other: torch.Tensor
    p0: torch.Tensor
    visitation: torch.Tensor
    u: torch.Tensor
    gamma: float
    system: torch.Tensor
    system_swapped: bool = False

    @property
    def u_own(self) -> torch.Tensor:
        """State values of the player's own reward, (4, B)."""
        return self.u.unbind(1)[0]

    @property
    def u_other(self) -> torch.Tensor:
        """State values of the opponent's reward, in the player's outcome order, (4, B)."""
        return self.u.unbind(1)[1]

    @property
    def value_own(self) -> torch.Tensor:
        """Unnormalised discounted return of the player, shape (B,)."""
        return (self.p0 * self.u_own).sum(0)

    @property
    def value_other(self) -> torch.Tensor:
        """Unnormalised discounted return of the opponent, shape (B,)."""
        return (self.p0 * self.u_other).sum(0)

    @property
    def reward_own(self) -> torch.Tensor:
        """Average reward per step ``(1 - gamma) V`` of the player, shape (B,)."""
        return (1 - self.gamma) * self.value_own

    @property
    def reward_other(self) -> torch.Tensor:
        """Average reward per step of the opponent, shape (B,)."""
        return (1 - self.gamma) * self.value_other

    @property
    def p_cooperate(self) -> torch.Tensor:
        """Discounted share of steps in which the player cooperates (outcomes CC, CD), (B,).

        Clamped to [0, 1]: float32 rounding can otherwise put a certain outcome at 1 + 1e-7.
        """
        cc, cd, _, _ = self.visitation.unbind(0)
        return ((1 - self.gamma) * (cc + cd)).clamp(0.0, 1.0)

    def summary(self) -> torch.Tensor:
        """Per-step averages in one product with the visitation, shape (4, B).

        Rows: the player's reward, the opponent's reward, the player's P(cooperate), the
        opponent's P(cooperate), all ``(1 - gamma) M . w`` for a fixed per-outcome ``w``.
        """
        visits = self.visitation
        weights = constant(_SUMMARY_WEIGHTS, visits.dtype, visits.device) * (1 - self.gamma)
        return weights @ visits

    def transition(self) -> torch.Tensor:
        """Transition matrix ``P[b, j, k]`` = P(outcome k | previous outcome j), (B, 4, 4)."""
        return joint(self.p_own[1:].T, self.p_other[1:].T)

    def flip(self) -> View:
        """The same games seen by the opponent."""
        states, outcomes = swap_state_index(self.own.device), swap_outcome_index(self.own.device)
        return View(
            self.other,
            self.own,
            self.p_other.index_select(0, states),
            self.p_own.index_select(0, states),
            self.p0.index_select(0, outcomes),
            self.visitation.index_select(0, outcomes),
            self.u.index_select(0, outcomes).flip(1),
            self.gamma,
            self.system,
            not self.system_swapped,
        )

    def matrix(self) -> torch.Tensor:
        """``A = P - I / gamma`` in this player's outcome order, (4, 4, B)."""
        if not self.system_swapped:
            return self.system
        outcomes = swap_outcome_index(self.system.device)
        return self.system.index_select(0, outcomes).index_select(1, outcomes)

    def gradient(self, u: torch.Tensor | None = None) -> torch.Tensor:
        """Exact gradient of ``p0 . u`` w.r.t. the player's own logits, shape (5, B).

        ``u`` (4, B) are the state values of some reward in the player's outcome order; by
        default the player's own, giving ``dV_own / d own``. Closed form: ``dV = dp0 . u +
        gamma M dP u``, and each own probability moves one entry pair of ``p0`` or of one
        row of ``P``. The opponent's gradient of any value is ``flip().gradient(...)``.
        """
        u_cc, u_cd, u_dc, u_dd = (self.u_own if u is None else u).unbind(0)
        gain_d = u_cd - u_dd  # value gained by cooperating instead, when the other defects
        extra_c = (u_cc - u_dc) - gain_d  # ... additionally, when the other cooperates
        gain = torch.addcmul(gain_d, self.p_other, extra_c)  # (5, B)
        weight = torch.cat((torch.ones_like(gain_d).unsqueeze(0), self.gamma * self.visitation))
        return gain * (self.p_own - self.p_own * self.p_own) * weight


class AnalyticIPD:
    """The IPD with exact discounted returns (Lu et al. 2022; Zhou et al. 2024).

    Parameters
    ----------
    gamma : float
        Discount of the inner game (0.96 in the papers).
    dtype : torch.dtype
        Floating type of every tensor the game makes.
    device : torch.device or str
        Where every tensor of the game lives (the logits it evaluates must be there too).
    """

    def __init__(
        self,
        gamma: float = 0.96,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.gamma = gamma
        self.dtype = dtype
        self.device = torch.device(device)
        rewards = torch.tensor(_REWARDS, dtype=dtype, device=self.device)
        self._rhs = (rewards * (-1.0 / gamma)).unsqueeze(-1)
        self._diagonal = (torch.eye(4, dtype=dtype, device=self.device) / gamma).unsqueeze(-1)

    def evaluate(self, own: torch.Tensor, other: torch.Tensor) -> View:
        """Exact evaluation of ``own`` against ``other`` ((5, B) logits each), seen by ``own``.

        Differentiable (once) when the logits require grad.
        """
        p_own = torch.sigmoid(own)
        p_other = torch.sigmoid(other).index_select(0, constant(_OTHER_STATE, device=own.device))
        # Solve with A = P - I / gamma = -(I - gamma P) / gamma: the entries are P's own,
        # and the sign and the 1 / gamma go into the right-hand sides.
        x, y = p_own[1:], p_other[1:]  # (4, B): P(C) after each own outcome
        system = torch.stack(_joint_row(x, y), dim=1) - self._diagonal  # [j, k, B]
        p0 = torch.stack(_joint_row(p_own[0], p_other[0]))
        u, visits = solve_both(system, self._rhs, p0 * (-1.0 / self.gamma))
        return View(own, other, p_own, p_other, p0, visits, u, self.gamma, system)

    def values(self, own: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised returns ``(V_own, V_other)``, each (B,), differentiable."""
        view = self.evaluate(own, other)
        return view.value_own, view.value_other
