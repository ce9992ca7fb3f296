"""Iterated prisoner's dilemma: the one convention used across the whole project.

* Action 0 = cooperate (C), 1 = defect (D).
* Rewards are negative (years in prison): CC (-1, -1), CD (-3, 0), DC (0, -3), DD (-2, -2).
* A player always sees the game from its own side: in an outcome name the player's own
  action comes first, so ``CD`` means "I cooperated, the other defected".
* A memory-one policy is 5 logits, ``sigmoid(logit) = P(cooperate)``, in the order of
  :data:`STATES`: the start state, then the previous outcome CC, CD, DC, DD (egocentric).
"""

from __future__ import annotations

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

#: The same two permutations as index tensors (``index_select`` is much faster than indexing
#: with a Python list on the hot path).
SWAP_OUTCOME_INDEX = torch.tensor(SWAP_OUTCOME)
SWAP_STATE_INDEX = torch.tensor(SWAP_STATE)

#: Logit magnitude that makes a deterministic strategy: sigmoid(20) = 1 - 2e-9.
SATURATED = 20.0


def outcome_rewards(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-outcome rewards of both players, outcomes indexed from player 0's side.

    Returns
    -------
    (r0, r1) : tuple of Tensor, shape (4,)
        ``r0 = (-1, -3, 0, -2)`` and ``r1 = (-1, 0, -3, -2)`` for outcomes CC, CD, DC, DD.
    """
    r0 = torch.tensor([PAYOFF[a][b] for a in (0, 1) for b in (0, 1)], dtype=dtype)
    r1 = torch.tensor([PAYOFF[b][a] for a in (0, 1) for b in (0, 1)], dtype=dtype)
    return r0, r1


def memory_one_logits(p_cooperate: dict[str, float]) -> torch.Tensor:
    """Logits of a memory-one policy given P(C) per state (0 and 1 saturate to +-20).

    Parameters
    ----------
    p_cooperate : dict
        Probability of cooperating for every name in :data:`STATES`.
    """
    probs = torch.tensor([p_cooperate[s] for s in STATES], dtype=torch.float64)
    logits = torch.logit(probs.clamp(1e-12, 1 - 1e-12))
    return logits.clamp(-SATURATED, SATURATED)
