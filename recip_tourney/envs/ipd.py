"""Iterated prisoner's dilemma: the one convention used across the whole project.

* Action 0 = cooperate (C), 1 = defect (D).
* Rewards are negative (years in prison): CC (-1, -1), CD (-3, 0), DC (0, -3), DD (-2, -2).
* A player always sees the game from its own side: in an outcome name the player's own
  action comes first, so ``CD`` means "I cooperated, the other defected".
* A memory-one policy is 5 logits, ``sigmoid(logit) = P(cooperate)``, in the order of
  :data:`STATES`: the start state, then the previous outcome CC, CD, DC, DD (egocentric).
"""

from __future__ import annotations

import functools

import torch

COOPERATE, DEFECT = 0, 1
OUTCOMES: tuple[str, ...] = ("CC", "CD", "DC", "DD")
STATES: tuple[str, ...] = ("start", *OUTCOMES)

#: ``PAYOFF[own, other]``: the reward of a player who played ``own`` against ``other``.
PAYOFF: tuple[tuple[float, float], tuple[float, float]] = ((-1.0, -3.0), (0.0, -2.0))

#: Outcome index ``2 * own + other`` seen from the other side (CD <-> DC).
SWAP_OUTCOME: tuple[int, ...] = (0, 2, 1, 3)

#: Memory-one logits re-ordered into the other player's point of view.
SWAP_STATE: tuple[int, ...] = (0, 1, 3, 2, 4)

#: The same two permutations as index tensors on the CPU (``index_select`` is much faster than
#: indexing with a Python list on the hot path); :func:`swap_outcome_index` and
#: :func:`swap_state_index` give them on any device.
SWAP_OUTCOME_INDEX = torch.tensor(SWAP_OUTCOME, device="cpu")
SWAP_STATE_INDEX = torch.tensor(SWAP_STATE, device="cpu")

#: Logit magnitude that makes a deterministic strategy: sigmoid(20) = 1 - 2e-9.
SATURATED = 20.0


@functools.cache
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def constant(
    values: tuple, dtype: torch.dtype = torch.long, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A small constant table (nested tuples of numbers) as a tensor on ``device``.

    Made once per (values, dtype, device) and shared: the hot paths index and multiply
    with it many times per update, and a fresh copy to a GPU each time would wait for the
    queued work. Callers must not modify it in place.
    """
    return _constant(values, dtype, torch.device(device))


def swap_outcome_index(device: torch.device | str) -> torch.Tensor:
    """:data:`SWAP_OUTCOME` as an index tensor on ``device``."""
    return constant(SWAP_OUTCOME, torch.long, device)


def swap_state_index(device: torch.device | str) -> torch.Tensor:
    """:data:`SWAP_STATE` as an index tensor on ``device``."""
    return constant(SWAP_STATE, torch.long, device)




def outcome_rewards(
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-outcome rewards of both players, outcomes indexed from player 0's side.

    Returns
    -------
    (r0, r1) : tuple of Tensor, shape (4,)
        ``r0 = (-1, -3, 0, -2)`` and ``r1 = (-1, 0, -3, -2)`` for outcomes CC, CD, DC, DD.
    """
    r0 = torch.tensor([PAYOFF[a][b] for a in (0, 1) for b in (0, 1)], dtype=dtype, device=device)
    r1 = torch.tensor([PAYOFF[b][a] for a in (0, 1) for b in (0, 1)], dtype=dtype, device=device)
    return r0, r1


def memory_one_logits(p_cooperate: dict[str, float]) -> torch.Tensor:
    """Logits of a memory-one policy given P(C) per state (0 and 1 saturate to +-20).

    Parameters
    ----------
    p_cooperate : dict
        Probability of cooperating for every name in :data:`STATES`.

    Returns
    -------
    Tensor, shape (5,), float64, on the CPU (callers move it where their game is).
    """
    probs = torch.tensor([p_cooperate[s] for s in STATES], dtype=torch.float64, device="cpu")
    logits = torch.logit(probs.clamp(1e-12, 1 - 1e-12))
    return logits.clamp(-SATURATED, SATURATED)
