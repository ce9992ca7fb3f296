"""IPD-Rollout: many iterated prisoner's dilemmas played by sampling, as pure batched functions.

A batch holds ``S x B`` games (S seeds of B games each). The state of every game is the
previous joint action, and each player observes it from its own side as one of the 5
memory-one states of :data:`~recip_tourney.envs.ipd.STATES`: ``start`` before the first
move, then CC, CD, DC, DD with its own action first. The functions below hold no state of
their own: the match loop threads the observations through them.

The reference code (Zhou et al. 2024, ``ipd.py``) gives both players the same,
non-egocentric vector; here each player's observation is egocentric (project convention),
which is the same information.
"""

from __future__ import annotations

import torch

from recip_tourney.envs.ipd import PAYOFF, swap_state_index

START = 0

#: The MLP input of each observation index: (own previous action, other's previous action),
#: with ``(-1, 0)`` marking the start as the reference code does.
OBSERVATION_FEATURES = ((-1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))


def initial_observation(
    shape: tuple[int, ...], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Observation index of every game before the first move: all :data:`START`."""
    return torch.zeros(shape, dtype=torch.long, device=device)


def observation(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Observation index after a joint action, from the side of the player who played ``own``.

    ``1 + 2 own + other``: CC -> 1, CD -> 2, DC -> 3, DD -> 4 (own action first).
    """
    return torch.add(other, own, alpha=2).add_(1)


def other_side(obs: torch.Tensor) -> torch.Tensor:
    """The same observations seen by the other player (CD <-> DC)."""
    return swap_state_index(obs.device)[obs]


def rewards(own: torch.Tensor, other: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Reward of the player who played ``own`` against ``other`` (actions 0 = C, 1 = D).

    The payoff matrix is additive: ``-1 + own - 2 other`` gives CC -1, CD -3, DC 0, DD -2.
    """
    return (own - 2 * other - 1).to(dtype)


def reward_table(
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``table[own, other]``: the payoff matrix of :data:`~recip_tourney.envs.ipd.PAYOFF`."""
    return torch.tensor(PAYOFF, dtype=dtype, device=device)


def step(
    actions: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Play one joint action in every game; the next state is that joint action.

    Parameters
    ----------
    actions : (Tensor, Tensor) of long
        Each player's action in every game, 0 = C, 1 = D.
    dtype : torch.dtype
        Floating type of the rewards.

    Returns
    -------
    next_obs : Tensor of long
        Player 0's next observation (player 1's is :func:`other_side` of it).
    rewards : (Tensor, Tensor)
        Each player's reward.
    """
    a0, a1 = actions
    return observation(a0, a1), (rewards(a0, a1, dtype), rewards(a1, a0, dtype))


def per_seed(x: torch.Tensor) -> list[torch.Tensor]:
    """Each seed's values of a time-major ``(T, S, B)`` tensor as its own contiguous vector.

    A seed's numbers must not depend on which seeds share its batch, and torch rounds a
    reduction over one axis of a matrix differently with the number of rows; reducing each
    seed's vector on its own rounds the same way whatever S is.
    """
    return list(x.transpose(0, 1).reshape(x.shape[1], -1).unbind(0))


def seed_means(x: torch.Tensor) -> torch.Tensor:
    """Mean of each seed's ``(T, B)`` values of a ``(T, S, B)`` tensor, in float64: (S,)."""
    return torch.stack([row.mean(dtype=torch.float64) for row in per_seed(x)])
