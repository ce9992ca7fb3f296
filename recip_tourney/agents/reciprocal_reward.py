"""The Coins Reciprocator's influence balance and reciprocal reward (rollout spec 5.4).

For a Reciprocator i and another player j, per game and step, with value influences

* ``X_t`` = VI of i on j ("what I did to them"),
* ``Y_t`` = VI of j on i ("what they did to me"),
* ``Z_t`` = VI of j on j (used only by the debit variants),

a ledger starts at zero at every episode and decays with the agent's discount. The reward at
step t uses the ledger *before* step t (built from steps 0..t-1). With the default
``petty_payoff`` the ledger is received minus returned influence,
``B_{t+1} = gamma B_t + Y_t - X_t``, and the reward ``B_t X_t`` pays the Reciprocator for
returning a positive balance with help and a negative one with harm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

RewardType = Literal[
    "petty",
    "signed_grudge",
    "petty_payoff",
    "signed_petty_payoff",
    "signed_grudge_petty_payoff",
    "grudge_minus_debit",
    "signed_grudge_minus_debit",
]


def ledger(increments: torch.Tensor, gamma: float) -> torch.Tensor:
    """The running discounted sum before each step: ``L_0 = 0``, ``L_{t+1} = gamma L_t + d_t``.

    Parameters
    ----------
    increments : Tensor, (T, ...)
        ``d_t`` per step.
    gamma : float
        Decay per step.

    Returns
    -------
    Tensor, (T + 1, ...)
        ``L_0 .. L_T``; ``L_t`` is the ledger the reward at step t sees, ``L_T`` the one
        after the episode.
    """
    out = torch.zeros((increments.shape[0] + 1, *increments.shape[1:]),
                      dtype=increments.dtype, device=increments.device)
    for t in range(increments.shape[0]):
        torch.add(increments[t], out[t], alpha=gamma, out=out[t + 1])
    return out


def _grudge(x, y, z, gamma):
    return ledger(y, gamma)


def _payoff(x, y, z, gamma):
    return ledger(y - x, gamma)


def _grudge_minus_debit(x, y, z, gamma):
    return ledger(y, gamma) - ledger(x + z, gamma)


#: type -> (how the balance is built, how the reward reads the balance and X)
_TYPES: dict[str, tuple[Callable, Callable]] = {
    "petty": (_grudge, lambda b, x: b * x),
    "signed_grudge": (_grudge, lambda b, x: b.sign() * x),
    "petty_payoff": (_payoff, lambda b, x: b * x),
    "signed_petty_payoff": (_payoff, lambda b, x: b.sign() * x),
    "signed_grudge_petty_payoff": (_payoff, lambda b, x: b * x.sign()),
    "grudge_minus_debit": (_grudge_minus_debit, lambda b, x: b * x),
    "signed_grudge_minus_debit": (_grudge_minus_debit, lambda b, x: b.sign() * x),
}


def reciprocal_reward(
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor | None,
    gamma: float,
    kind: RewardType = "petty_payoff",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reciprocal reward of one Reciprocator against one other player, per step.

    Parameters
    ----------
    x, y : Tensor, (T, ...)
        VI of the Reciprocator on the other player, and of the other on the Reciprocator.
    z : Tensor or None, (T, ...)
        VI of the other player on itself; needed by the ``*_minus_debit`` types only.
    gamma : float
        The agent's discount (the ledger decays with it).
    kind : str
        One of :data:`RewardType` (spec 5.4's table).

    Returns
    -------
    reward : Tensor, (T, ...)
        ``rr_t`` (unweighted).
    balance : Tensor, (T, ...)
        The balance each step's reward used (``B_0 .. B_{T-1}``; the reference logs
        ``B_{T-1}`` as the "end grudge").
    """
    if kind not in _TYPES:
        raise ValueError(f"unknown reciprocal reward type {kind!r}; valid: {', '.join(_TYPES)}")
    build, pay = _TYPES[kind]
    if z is None:
        z = torch.zeros_like(x)
    balance = build(x, y, z, gamma)[:-1]
    return pay(balance, x), balance
