"""Independent reference implementations the tests compare the project's code against.

They follow the papers' formulas directly, with dense LAPACK solves and plain autograd, and
take game-major (B, 5) logits as the papers write them.
"""

from __future__ import annotations

import torch

from recip_tourney.envs.ipd import outcome_rewards
from recip_tourney.envs.ipd_analytic import joint

GAMMA = 0.96


def values(own: torch.Tensor, other: torch.Tensor, gamma: float = GAMMA):
    """V = p0^T (I - gamma P)^-1 r for both players; logits (B, 5), differentiable twice."""
    pa, pb = torch.sigmoid(own), torch.sigmoid(other)
    p0 = joint(pa[:, 0], pb[:, 0])
    transition = joint(pa[:, 1:], pb[:, [1, 3, 2, 4]])
    eye = torch.eye(4, dtype=own.dtype)
    m = torch.linalg.solve((eye - gamma * transition).mT, p0.unsqueeze(-1)).squeeze(-1)
    r0, r1 = outcome_rewards(own.dtype)
    return m @ r0, m @ r1


def lola_step(own: torch.Tensor, other: torch.Tensor, lr: float = 1.0, eta: float = 1.0):
    """Exact LOLA of the reference code by nested autograd; state-major (5, B) in and out."""
    th1 = own.T.clone().requires_grad_(True)
    th2 = other.T.clone().requires_grad_(True)
    v1, v2 = values(th1, th2)
    loss1, loss2 = -v1.sum(), -v2.sum()
    g11 = torch.autograd.grad(loss1, th1, create_graph=True)[0]
    g21 = torch.autograd.grad(loss1, th2, create_graph=True)[0]
    g22 = torch.autograd.grad(loss2, th2, create_graph=True)[0]
    shaping = torch.autograd.grad((g21 * g22).sum(), th1)[0]
    return (th1 - lr * (g11 - eta * shaping)).T.detach()
