"""Building blocks of the Coins M-FOS networks (:mod:`recip_tourney.agents.coins_mfos_nets`):
the batch of models' working matrices, the GRU step, and per-model rounding (:func:`each`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALIGN = 64
"""A contiguous elementwise op rounds an element alike wherever it lies when the tensor has
no scalar tail: blocks of a multiple of this many elements (AVX-512 doubles unrolled)."""


def each(fn, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """``fn`` on every model's block ``x[m]`` of a contiguous x, rounding every block as if
    it were alone: one call when the blocks are a multiple of :data:`ALIGN` elements (no
    vector tail anywhere), else block by block (see the docstring of
    :mod:`recip_tourney.agents.coins_mfos_nets`)."""
    x = x.contiguous()
    if x[0].numel() % ALIGN == 0:
        return fn(x)
    return torch.stack([fn(block) for block in x.unbind(0)])


def group_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (M, B, F), as a product with ones (rounds per model): (M, F)."""
    ones = x.new_ones(x.shape[0], 1, x.shape[1])
    return torch.bmm(ones, x).squeeze(1) / x.shape[1]


@dataclass
class Working:
    """The batch of ``3 S`` models' working matrices (model ``tower * S + seed``)."""

    d1: torch.Tensor  # (M, 7 g^2, n g^2)
    b1: torch.Tensor  # (M, 1, n g^2)
    d2: torch.Tensor  # (M, n g^2, n g^2)
    b2: torch.Tensor  # (M, 1, n g^2)
    wl: torch.Tensor  # (M, n g^2, n) or (M, n g^2, g^2 n) in table mode
    bl: torch.Tensor  # (M, 1, n) or (M, 1, g^2 n)
    wih: torch.Tensor  # (M, n, 3n): gates r, z, 2n (the n gate doubled)
    bih: torch.Tensor  # (M, 1, 3n): b_ir + b_hr, b_iz + b_hz, 2 b_in
    whr: torch.Tensor  # (M, n, n)
    whz: torch.Tensor  # (M, n, n)
    whn: torch.Tensor  # (M, n, n), doubled
    bhn: torch.Tensor  # (M, 1, n), doubled
    heads: dict[str, torch.Tensor]  # (S, ...) each


Gates = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""A GRU's input projections split by gate (r, z, doubled n), each (M, ..., n), contiguous."""


@dataclass
class Acting:
    """What playing needs, computed once per weight change (no gradients)."""

    gi_a: Gates | None  # tower a's input projections of every table row, (S, rows, n) each
    gi_t: Gates | None
    w: Working


def gru_step(gates: Gates, h: torch.Tensor, w: Working) -> torch.Tensor:
    """One step of ``torch.nn.GRU`` for models (M, B, n), rewritten exactly up to rounding:
    the hidden biases of r and z ride on the input projections, and ``tanh(a) = 2
    sigmoid(2 a) - 1`` with the n gate's weights doubled (tanh is several times slower than
    sigmoid on CPU). Every operand is contiguous (slices would be slower, and their backward
    zero-fills whole tensors)."""
    gr, gz, gn = gates
    r = each(torch.sigmoid, torch.baddbmm(gr, h, w.whr))
    z = each(torch.sigmoid, torch.baddbmm(gz, h, w.whz))
    cand = each(torch.sigmoid, gn + r * torch.baddbmm(w.bhn, h, w.whn)) * 2 - 1
    return cand + z * (h - cand)
