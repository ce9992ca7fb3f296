"""Monte-Carlo returns shared by the PPO learners (M-FOS's meta-level and the rollout IPD's)."""

from __future__ import annotations

import torch


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go ``G_t = r_t + gamma G_{t+1}`` of time-major rewards (T, ...).

    A backward recursion, elementwise: every game's returns round the same way whatever else
    is in the batch (a matrix product over all games need not).
    """
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = torch.add(rewards[t], running, alpha=gamma)
        out[t] = running
    return out
