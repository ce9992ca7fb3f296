"""One-step reciprocal reward of the analytic Reciprocator (IPD-Analytic spec, 7.2-7.4).

Everything here is written on the chain *from the opponent's side* (as the reference code
does): outcome ``k`` has opponent action ``k // 2`` and Reciprocator action ``k % 2``. The
baselines are the Reciprocator's and the opponent's average recent policies, as P(cooperate)
vectors of shape (B, 5) in the Reciprocator's own state order.

* Grudge ``G(k_prev, k)``: how much better the Reciprocator's payoff in ``k`` would have been
  had the opponent acted like its baseline in ``k_prev``, i.e. baseline minus actual.
* Influence on the other ``U(k, k_next)``: how much better the opponent's payoff in
  ``k_next`` would have been had the Reciprocator acted like its baseline in ``k``.
* Shaped reward of a triple: ``w G(k_prev, k) U(k, k_next) + R(rc', o')``.
"""

from __future__ import annotations

from typing import Literal

import torch

from recip_tourney.envs.ipd import PAYOFF

BaselineIndex = Literal["as_implemented", "corrected"]

_K = range(4)
#: Rc-egocentric state of opponent-side outcome k: start=0, then (rc action, opp action).
_CORRECTED = [1 + 2 * (k % 2) + k // 2 for k in _K]
#: The reference code reads the 5-vector at the raw outcome index (start, CC, CD, DC): quirk 1.
_AS_IMPLEMENTED = list(_K)


def baseline_index(mode: BaselineIndex) -> list[int]:
    """Which entry of a 5-state baseline vector each outcome ``k`` reads."""
    return _CORRECTED if mode == "corrected" else _AS_IMPLEMENTED


def _table(fn: object, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([fn(k) for k in _K], dtype=dtype)  # type: ignore[operator]


def shaped_rewards(
    own_baseline: torch.Tensor,
    opponent_baseline: torch.Tensor,
    weight: float,
    mode: BaselineIndex,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shaped reward and reciprocal part for every outcome triple, each (B, 4, 4, 4).

    Parameters
    ----------
    own_baseline, opponent_baseline : Tensor, shape (B, 5)
        Baseline P(cooperate) of the Reciprocator and of its opponent, Rc's state order.
    weight : float
        Weight ``w`` of the reciprocal reward.
    mode : {"as_implemented", "corrected"}
        Baseline lookup (spec 7.5, quirk 1).
    """
    dtype = own_baseline.dtype
    idx = baseline_index(mode)
    p = opponent_baseline[:, idx].unsqueeze(-1)  # (B, k_prev, 1)
    q = own_baseline[:, idx].unsqueeze(-1)  # (B, k, 1)
    rc_vs_c = _table(lambda k: PAYOFF[k % 2][0], dtype)  # Rc's payoff in k had o cooperated
    rc_vs_d = _table(lambda k: PAYOFF[k % 2][1], dtype)
    rc_actual = _table(lambda k: PAYOFF[k % 2][k // 2], dtype)
    o_vs_c = _table(lambda k: PAYOFF[k // 2][0], dtype)  # o's payoff in k had Rc cooperated
    o_vs_d = _table(lambda k: PAYOFF[k // 2][1], dtype)
    o_actual = _table(lambda k: PAYOFF[k // 2][k % 2], dtype)
    grudge = p * rc_vs_c + (1 - p) * rc_vs_d - rc_actual  # (B, k_prev, k)
    influence = q * o_vs_c + (1 - q) * o_vs_d - o_actual  # (B, k, k_next)
    reciprocal = weight * grudge.unsqueeze(-1) * influence.unsqueeze(1)
    return reciprocal + rc_actual, reciprocal


def triple_value(
    visitation: torch.Tensor, transition: torch.Tensor, reward: torch.Tensor
) -> torch.Tensor:
    """Discounted value of a reward on outcome triples, shape (B,).

    ``sum_t gamma^t E[r(k_t, k_t+1, k_t+2)]`` equals ``sum_abc M(a) P(a,b) P(b,c) r(a,b,c)``
    with ``M`` the ordinary 4-state visitation: the 64-state second-order chain of the
    reference code, without building it.

    Parameters
    ----------
    visitation : Tensor, shape (B, 4)
    transition : Tensor, shape (B, 4, 4)
    reward : Tensor, shape (B, 4, 4, 4)
    """
    return torch.einsum("na,nab,nbc,nabc->n", visitation, transition, transition, reward)
