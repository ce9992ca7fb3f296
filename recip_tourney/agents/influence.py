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

from recip_tourney.envs.ipd import PAYOFF, constant

BaselineIndex = Literal["as_implemented", "corrected"]

_K = range(4)
#: Rc-egocentric state of opponent-side outcome k: start=0, then (rc action, opp action).
_CORRECTED = [1 + 2 * (k % 2) + k // 2 for k in _K]
#: The reference code reads the 5-vector at the raw outcome index (start, CC, CD, DC): quirk 1.
_AS_IMPLEMENTED = list(_K)

#: Per-outcome payoffs (opponent's side order, see the module docstring), as plain tuples;
#: :func:`_table` makes them tensors once per dtype and device.
_TABLES = {
    "rc_vs_c": tuple(PAYOFF[k % 2][0] for k in _K),  # Rc's payoff in k had o cooperated
    "rc_vs_d": tuple(PAYOFF[k % 2][1] for k in _K),
    "o_vs_c": tuple(PAYOFF[k // 2][0] for k in _K),  # o's payoff in k had Rc cooperated
    "o_vs_d": tuple(PAYOFF[k // 2][1] for k in _K),
    "o_actual": tuple(PAYOFF[k // 2][k % 2] for k in _K),
    "extrinsic": tuple(PAYOFF[k % 2][k // 2] for k in _K),
}


def baseline_index(mode: BaselineIndex) -> list[int]:
    """Which entry of a 5-state baseline vector each outcome ``k`` reads."""
    return _CORRECTED if mode == "corrected" else _AS_IMPLEMENTED


def _table(name: str, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """One of :data:`_TABLES` as a (4,) tensor on ``device`` (shared: never modify it)."""
    return constant(_TABLES[name], dtype, device)


def influence_terms(
    own_baseline: torch.Tensor, opponent_baseline: torch.Tensor, mode: BaselineIndex
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grudge ``G[k_prev, k]`` and influence on the other ``U[k, k_next]``, each (B, 4, 4).

    Parameters
    ----------
    own_baseline, opponent_baseline : Tensor, shape (B, 5)
        Baseline P(cooperate) of the Reciprocator and of its opponent, Rc's state order.
    mode : {"as_implemented", "corrected"}
        Baseline lookup (spec 7.5, quirk 1).
    """
    dtype, device = own_baseline.dtype, own_baseline.device
    idx = constant(tuple(baseline_index(mode)), torch.long, device)
    p = opponent_baseline.index_select(1, idx).unsqueeze(-1)  # (B, k_prev, 1)
    q = own_baseline.index_select(1, idx).unsqueeze(-1)  # (B, k, 1)
    rc_vs_c, rc_vs_d = _table("rc_vs_c", dtype, device), _table("rc_vs_d", dtype, device)
    o_vs_c, o_vs_d = _table("o_vs_c", dtype, device), _table("o_vs_d", dtype, device)
    grudge = p * rc_vs_c + (1 - p) * rc_vs_d - extrinsic(dtype, device)
    influence = q * o_vs_c + (1 - q) * o_vs_d - _table("o_actual", dtype, device)
    return grudge, influence


def extrinsic(dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """The Reciprocator's own payoff in each outcome ``k`` (opponent's side order), (4,).

    Shared between calls (made once per dtype and device): never modify it in place.
    """
    return _table("extrinsic", dtype, device)


def shaped_rewards(
    own_baseline: torch.Tensor,
    opponent_baseline: torch.Tensor,
    weight: float,
    mode: BaselineIndex,
) -> torch.Tensor:
    """The shaped reward of every outcome triple, (B, 4, 4, 4): the definition, spelled out.

    ``r(k_prev, k, k_next) = w G(k_prev, k) U(k, k_next) + R(rc', o')``. The learner never
    builds this tensor (:func:`shaped_value` uses its factorisation); tests and readers do.
    """
    grudge, influence = influence_terms(own_baseline, opponent_baseline, mode)
    reciprocal = weight * grudge.unsqueeze(-1) * influence.unsqueeze(1)
    return reciprocal + extrinsic(own_baseline.dtype, own_baseline.device)


def shaped_value(
    visitation: torch.Tensor,
    transition: torch.Tensor,
    grudge: torch.Tensor,
    influence: torch.Tensor,
    weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted shaped return and its reciprocal part, each (B,).

    ``sum_t gamma^t E[r(k_t, k_t+1, k_t+2)]`` equals ``sum_abc M(a) P(a,b) P(b,c) r(a,b,c)``
    with ``M`` the ordinary 4-state visitation: the reference code's 64-state second-order
    chain, without building it. With ``r = w G(a,b) U(b,c) + R(c)`` the sum over ``c``
    factorises, so the cost is that of 4 x 4 arrays per game.

    Parameters
    ----------
    visitation : Tensor, shape (B, 4)
    transition : Tensor, shape (B, 4, 4)
    grudge, influence : Tensor, shape (B, 4, 4)
        From :func:`influence_terms`.
    weight : float
        Weight ``w`` of the reciprocal reward.
    """
    expected_influence = (transition * influence).sum(-1)  # E[U(b, c) | b], (B, 4)
    payoff = extrinsic(transition.dtype, transition.device)
    expected_payoff = transition @ payoff  # E[R(c) | b], (B, 4)
    reach = visitation.unsqueeze(-1) * transition  # M(a) P(a, b), (B, 4, 4)
    reciprocal = weight * (reach * grudge * expected_influence.unsqueeze(1)).sum((1, 2))
    return reciprocal + (reach.sum(1) * expected_payoff).sum(-1), reciprocal
