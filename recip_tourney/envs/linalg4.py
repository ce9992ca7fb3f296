"""Batched solves of small strictly diagonally dominant systems, fast on the CPU.

``torch.linalg.solve`` on a batch of thousands of 4x4 matrices spends its time in
per-matrix LAPACK calls (about 1 ms for 8192 of them). The matrices of the IPD chains,
``I - gamma P`` with ``P`` row-stochastic and ``gamma < 1``, are strictly diagonally dominant,
so Gaussian elimination without pivoting is stable; done entry by entry over batch vectors it
is a few dozen vector operations, differentiable by autograd like any torch expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    """Factorise a batch ``a`` of shape (B, n, n) (no pivoting: diagonal dominance required)."""
    n = a.shape[-1]
    return lu_factor_entries([[a[:, i, j].contiguous() for j in range(n)] for i in range(n)])


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
                m[i][j] = m[i][j] - f * m[k][j]
    return LU(m, lower, inv_diag)


def lu_solve(lu: LU, b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Solve ``A x = b`` for a right-hand side given as n tensors of shape (B,)."""
    n = lu.n
    y = list(b)
    for i in range(n):
        for k in range(i):
            y[i] = y[i] - lu.lower[i][k] * y[k]
    x: list[torch.Tensor] = [y[0]] * n
    for i in reversed(range(n)):
        s = y[i]
        for j in range(i + 1, n):
            s = s - lu.upper[i][j] * x[j]
        x[i] = s * lu.inv_diag[i]
    return x


def lu_solve_transposed(lu: LU, b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Solve ``A^T x = b`` with the factorisation of ``A`` (``A^T = U^T L^T``)."""
    n = lu.n
    z: list[torch.Tensor] = [b[0]] * n
    for i in range(n):
        s = b[i]
        for k in range(i):
            s = s - lu.upper[k][i] * z[k]
        z[i] = s * lu.inv_diag[i]
    x: list[torch.Tensor] = [z[0]] * n
    for i in reversed(range(n)):
        s = z[i]
        for j in range(i + 1, n):
            s = s - lu.lower[j][i] * x[j]
        x[i] = s
    return x
