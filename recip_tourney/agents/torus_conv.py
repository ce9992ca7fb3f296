"""Circular convolutions on the g x g torus as dense matrices gathered from their kernels.

Every output cell of a stride-1 conv with circular 'same' padding reads every input cell
through fixed kernel entries, so the conv is the matrix
``D[(ci, p), (co, u)] = sum of K[co, ci, d]`` over the offsets d taking cell u to cell p.
The kernel stays the parameter (same count and initialisation as ``nn.Conv2d``):
:class:`CirculantConv` builds D from it by an index gather and maps D's gradient back to
the kernel by the inverse gather. When the kernel is as wide as the torus (3 x 3 on the
3 x 3 torus of the Coin Game) every entry of D is exactly one kernel entry
(:func:`circular_conv_index`, :func:`dense_circular_conv`).

Used by the Coins PPO networks (:mod:`recip_tourney.agents.coins_gru`) and by the critic of
the value-influence estimator (:mod:`recip_tourney.agents.influence_critic`); checked
against ``torch.nn.functional.conv2d`` in ``tests/test_coins_ppo.py`` and
``tests/test_coins_influence.py``.
"""

from __future__ import annotations

import torch


def kernel_size(grid: int) -> int:
    """The reference's kernel: the grid side, bumped to the next odd number (spec 4.3)."""
    return grid if grid % 2 else grid + 1


def torus_shift(grid: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``shift[tau, x]``: cell x moved by the translation taking cell 0 to cell tau, (g^2, g^2),
    on ``device``."""
    rows = torch.arange(grid, device=device).repeat_interleave(grid)
    cols = torch.arange(grid, device=device).repeat(grid)
    moved_rows = (rows.view(-1, 1) + rows.view(1, -1)) % grid
    moved_cols = (cols.view(-1, 1) + cols.view(1, -1)) % grid
    return moved_rows * grid + moved_cols


class CirculantConv:
    """A stride-1 conv with circular 'same' padding on a g x g torus, as a dense matrix.

    Input and output are flattened channel-major, ``(channel, row, col)``, as ``Flatten``
    does. With ``pad = k // 2``, output cell ``u = (ui, uj)`` reads input cell
    ``((ui + di - pad) mod g, (uj + dj - pad) mod g)`` through kernel entry ``(di, dj)``
    (cross-correlation, as ``torch.nn.functional.conv2d``). Any g works: a kernel wider than
    the torus adds several kernel entries into one dense entry, a narrower one leaves
    dense entries at zero.

    Parameters
    ----------
    in_channels, out_channels, grid, kernel : int
        ``kernel`` must be odd (the 'same' padding is then symmetric).
    device : torch.device or str, optional
        Where the index tensors live (the kernels' device).

    Attributes
    ----------
    gather : Tensor of long, (in_features out_features, multiplicity)
        For each entry of the dense matrix (row-major), the flat kernel entries it sums;
        ``kernel_numel`` (a zero appended to the kernel) where it has fewer.
    inverse : Tensor of long, (kernel_numel g^2,)
        For each kernel entry, the g^2 dense entries it fills (kernel-major).
    """

    def __init__(self, in_channels: int, out_channels: int, grid: int, kernel: int,
                 device: torch.device | str | None = None) -> None:
        if kernel % 2 == 0:
            raise ValueError(f"circular 'same' conv needs an odd kernel, got {kernel}")
        self.in_channels, self.out_channels, self.grid, self.kernel = (
            in_channels, out_channels, grid, kernel)
        cells, pad = grid * grid, kernel // 2
        self.in_features, self.out_features = in_channels * cells, out_channels * cells
        self.kernel_numel = out_channels * in_channels * kernel * kernel
        hits: list[list[int]] = [[] for _ in range(self.in_features * self.out_features)]
        inverse: list[list[int]] = [[] for _ in range(self.kernel_numel)]
        for co in range(out_channels):
            for ci in range(in_channels):
                for di in range(kernel):
                    for dj in range(kernel):
                        k_index = ((co * in_channels + ci) * kernel + di) * kernel + dj
                        for ui in range(grid):
                            for uj in range(grid):
                                p = ((ui + di - pad) % grid) * grid + (uj + dj - pad) % grid
                                dense = ((ci * cells + p) * out_channels + co) * cells
                                dense += ui * grid + uj
                                hits[dense].append(k_index)
                                inverse[k_index].append(dense)
        self.multiplicity = max(len(h) for h in hits)
        # dense entries with fewer hits (grid > kernel) read a zero appended to the kernel
        zero = self.kernel_numel
        padded = [h + [zero] * (self.multiplicity - len(h)) for h in hits]
        self.gather = torch.tensor(padded, dtype=torch.long, device=device)  # (in out, mult.)
        self.inverse = torch.tensor(inverse, dtype=torch.long, device=device).flatten()
        self.needs_zero = any(len(h) < self.multiplicity for h in hits)

    def dense(self, kernel: torch.Tensor) -> torch.Tensor:
        """The matrices ``(M, in_features, out_features)`` of flat kernels ``(M, numel)``."""
        models = kernel.shape[0]
        if self.needs_zero:
            kernel = torch.cat([kernel, kernel.new_zeros(models, 1)], dim=1)
        if self.multiplicity == 1:
            flat = kernel.index_select(1, self.gather[:, 0])
        else:
            flat = kernel.index_select(1, self.gather.flatten())
            flat = flat.view(models, -1, self.multiplicity).sum(-1)
        return flat.view(models, self.in_features, self.out_features)

    def kernel_grad(self, dense_grad: torch.Tensor) -> torch.Tensor:
        """Gradient of flat kernels ``(M, numel)`` from that of their dense matrices."""
        models = dense_grad.shape[0]
        picked = dense_grad.reshape(models, -1).index_select(1, self.inverse)
        return picked.view(models, self.kernel_numel, -1).sum(-1)

    def conv(self, kernel: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One conv: kernel ``(out, in, k, k)``, bias ``(out,)``, x ``(..., in, g, g)``."""
        d = self.dense(kernel.reshape(1, -1))[0]
        flat = x.reshape(*x.shape[:-3], self.in_features) @ d
        flat = flat + bias.repeat_interleave(self.grid * self.grid)
        return flat.view(*x.shape[:-3], self.out_channels, self.grid, self.grid)


def circular_conv_index(c_in: int, c_out: int, grid: int = 3,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Where each entry of the dense map of a circular ``grid x grid`` convolution on the
    ``grid x grid`` torus is in the flat kernel: ``dense = kernel.flatten()[index]``.

    Output cell ``u`` of channel ``o`` reads input cell ``u + d - grid // 2`` (mod grid)
    through ``kernel[o, c, d]`` (:class:`CirculantConv`); with the kernel as wide as the
    torus the offsets reach each input cell once, so every entry of the dense map is one
    kernel entry, and every kernel entry fills ``grid^2`` entries (one per output cell).

    Returns
    -------
    Tensor of long, (c_out g^2, c_in g^2), on ``device``
        Rows ``g^2 o + cell`` (the order of ``Flatten``), columns ``g^2 c + cell'``: the
        transpose of :meth:`CirculantConv.dense`'s layout.
    """
    conv = CirculantConv(c_in, c_out, grid, grid, device)  # grid must be odd, as the kernel
    return conv.gather[:, 0].view(conv.in_features, conv.out_features).T.contiguous()


def dense_circular_conv(kernel: torch.Tensor) -> torch.Tensor:
    """Dense maps ``(..., C_out g^2, C_in g^2)`` of circular g x g convolutions ``(..., C_out,
    C_in, g, g)`` on the g x g torus (``Conv2d(padding=g // 2, padding_mode="circular")``;
    g odd, 3 in the Coin Game)."""
    c_out, c_in, grid = kernel.shape[-4], kernel.shape[-3], kernel.shape[-1]
    return kernel.flatten(-4)[..., circular_conv_index(c_in, c_out, grid, kernel.device)]
