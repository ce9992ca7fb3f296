"""Batched solves of small strictly diagonally dominant systems, fast on the CPU.

``torch.linalg.solve`` on a batch of thousands of 4x4 matrices spends its time in
per-matrix LAPACK calls (about 1 ms for 8192 of them). The matrices of the IPD chains,
``I - gamma P`` with ``P`` row-stochastic and ``gamma < 1``, are strictly diagonally dominant,
so Gaussian elimination without pivoting is stable. Done entry by entry over contiguous
batch vectors it is a few dozen fused vector operations, differentiable like any torch code.
(A block-vectorised elimination over ``(n, n, B)`` slices measured slower: strided slices.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable


@dataclass(frozen=True)
class LU:
    """An unpivoted LU factorisation ``A = L U`` of a batch of n x n matrices.

    ``upper[i][j]`` (j >= i) are the entries of ``U``; ``lower[i][k]`` (k < i) the
    multipliers of the unit lower factor; ``inv_diag[i] = 1 / U[i][i]``. Each entry is a
    tensor of shape (B,).
    """

    upper: list[list[torch.Tensor]]
    lower: list[list[torch.Tensor]]
    inv_diag: list[torch.Tensor]

    @property
    def n(self) -> int:
        """Size of the system."""
        return len(self.inv_diag)


def lu_factor(a: torch.Tensor) -> LU:
    """Factorise a batch-last matrix ``a`` of shape (n, n, B) (diagonal dominance required)."""
    return lu_factor_entries([list(row.unbind(0)) for row in a.unbind(0)])


def lu_factor_entries(entries: list[list[torch.Tensor]]) -> LU:
    """Factorise a matrix given entry by entry, ``entries[i][j]`` of shape (B,)."""
    n = len(entries)
    m = [list(row) for row in entries]
    lower: list[list[torch.Tensor]] = [[] for _ in range(n)]
    inv_diag = []
    for k in range(n):
        inv = 1.0 / m[k][k]
        inv_diag.append(inv)
        for i in range(k + 1, n):
            f = m[i][k] * inv
            lower[i].append(f)
            for j in range(k + 1, n):
                m[i][j] = torch.addcmul(m[i][j], f, m[k][j], value=-1.0)
    return LU(m, lower, inv_diag)


def lu_solve(lu: LU, b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Solve ``A x = b`` for a right-hand side given as n tensors broadcastable to (..., B)."""
    n = lu.n
    y = list(b)
    for i in range(n):
        for k in range(i):
            y[i] = torch.addcmul(y[i], lu.lower[i][k], y[k], value=-1.0)
    x: list[torch.Tensor] = [y[0]] * n
    for i in reversed(range(n)):
        acc = y[i]
        for j in range(i + 1, n):
            acc = torch.addcmul(acc, lu.upper[i][j], x[j], value=-1.0)
        x[i] = acc * lu.inv_diag[i]
    return x


def lu_solve_transposed(lu: LU, b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Solve ``A^T x = b`` with the factorisation of ``A`` (``A^T = U^T L^T``)."""
    n = lu.n
    z: list[torch.Tensor] = [b[0]] * n
    for i in range(n):
        acc = b[i]
        for k in range(i):
            acc = torch.addcmul(acc, lu.upper[k][i], z[k], value=-1.0)
        z[i] = acc * lu.inv_diag[i]
    x: list[torch.Tensor] = [z[0]] * n
    for i in reversed(range(n)):
        acc = z[i]
        for j in range(i + 1, n):
            acc = torch.addcmul(acc, lu.lower[j][i], x[j], value=-1.0)
        x[i] = acc
    return x


class _SolveBoth(torch.autograd.Function):
    """``x = A^-1 R`` (constant ``R``) and ``v = A^-T q`` with an adjoint backward.

    Autograd through the elimination would replay ~100 tiny operations; the adjoint needs
    two more solves with the saved factors: ``lam = A^-T x_bar``, ``mu = A^-1 v_bar``,
    ``A_bar = -lam x^T - v mu^T`` and ``q_bar = mu``.
    """

    @staticmethod
    def forward(ctx, a, rhs, q):  # type: ignore[override]
        lu = lu_factor(a)
        x = torch.stack(lu_solve(lu, list(rhs.unbind(0))))
        v = torch.stack(lu_solve_transposed(lu, list(q.unbind(0))))
        ctx.lu = lu
        ctx.save_for_backward(x, v)
        return x, v

    @staticmethod
    @once_differentiable
    def backward(ctx, x_bar, v_bar):  # type: ignore[override]
        x, v = ctx.saved_tensors
        lu: LU = ctx.lu
        lam = torch.stack(lu_solve_transposed(lu, list(x_bar.unbind(0))))  # (n, c, B)
        mu = torch.stack(lu_solve(lu, list(v_bar.unbind(0))))  # (n, B)
        # A_bar[i, j] = -sum_c lam[i, c] x[j, c] - v[i] mu[j], as three outer products
        a_bar = v.unsqueeze(1) * mu.unsqueeze(0)
        for lam_c, x_c in zip(lam.unbind(1), x.unbind(1), strict=True):
            a_bar = torch.addcmul(a_bar, lam_c.unsqueeze(1), x_c.unsqueeze(0))
        return -a_bar, None, mu


def solve_both(
    a: torch.Tensor, rhs: torch.Tensor, q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A^-1 rhs`` and ``A^-T q`` for a batch-last matrix ``a`` (n, n, B).

    Differentiable once (its backward is two more solves); a second derivative through it
    raises, so code that needs one must differentiate closed-form first derivatives, as
    LOLA does, never backward twice.

    Parameters
    ----------
    a : Tensor, shape (n, n, B)
        Strictly diagonally dominant matrices (differentiable).
    rhs : Tensor, shape (n, c, 1)
        Constant right-hand sides shared by the batch (not differentiated).
    q : Tensor, shape (n, B)
        Right-hand side of the transposed system (differentiable).

    Returns
    -------
    x : Tensor, shape (n, c, B)
    v : Tensor, shape (n, B)
    """
    return _SolveBoth.apply(a, rhs, q)
