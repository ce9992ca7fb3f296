"""Adam on one flat parameter tensor, as the hand-written learners keep their parameters."""

from __future__ import annotations

import math

import torch


def adam_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """``torch.optim.Adam``'s update (no weight decay, no amsgrad), in place.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : Tensor
        The flat parameters, their gradient and Adam's two moment buffers (same shape).
        Adam is elementwise, so stacked independent models (seeds, players) each get
        exactly their own Adam.
    step : int
        The 1-based number of this step (bias correction).
    lr, betas, eps : float, (float, float), float
        As ``torch.optim.Adam``.
    """
    beta1, beta2 = betas
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    correction1 = 1 - beta1**step
    correction2 = 1 - beta2**step
    denom = (exp_avg_sq.sqrt() / math.sqrt(correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / correction1)
