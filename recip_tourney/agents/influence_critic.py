"""The conv critic ``V`` of the Coins value-influence estimator, as fused batched passes.

``V`` is ``Conv(4->C) ReLU Conv(C->C) ReLU Flatten(9C) Linear(9C->H) ReLU Linear(H->2)``
(3 x 3 kernels, circular padding on the 3 x 3 torus; C = 16, H = 64), optionally with the
steps remaining ``tau`` as one more input of its first linear layer (``value_time``).
Its passes, written out for every seed at once (checked against plain ``nn`` modules, in
the forward pass and trained by autograd and Adam, in ``tests/test_coins_influence.py``):

* a circular 3 x 3 convolution on the 3 x 3 torus is a dense ``(C_in 9) -> (C_out 9)``
  linear map whose entries are kernel entries (each fills 9 cells;
  :func:`~recip_tourney.agents.torus_conv.dense_circular_conv`); the first convolution is
  that map, its bias riding in the product (a constant-1 input column). The second is
  applied in the real Fourier basis of the torus (:class:`FourierConv`), where it is block
  diagonal (one ``C x C`` block for the constant frequency, four ``2C x 2C`` blocks for the
  conjugate pairs): 4 x fewer multiplications than the dense ``144 x 144`` map, and the
  same function;
* the critic sees only the state, so each minibatch is reduced to its distinct states
  (with their counts and summed returns: the same loss and gradient), about 3/4 of the
  rows with uniformly spread states; this is done seed by seed;
* activations are stored features x rows, cell-major, and the large ones of a fit live in
  scratch buffers reused by every step.

The estimator's parameters and Adam are in :mod:`recip_tourney.agents.influence_models`;
:func:`expected_values` is the future part of the influence, the expectation of ``V``
under the transition models' per-head next-cell probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from recip_tourney.agents.influence_features import (
    CELLS,
    CHANNELS,
    GRID,
    PLAYERS,
    STATE_FEATURES,
    SampleTables,
    all_states,
)
from recip_tourney.agents.torus_conv import circular_conv_index, dense_circular_conv

#: The critic's parameter blocks (kernels ``k``, weights ``w``, biases ``b`` of its layers).
CRITIC_BLOCKS = ("k1", "b1", "k2", "b2", "w3", "b3", "w4", "b4")

Buffer = Callable[[str, tuple[int, ...]], torch.Tensor]
"""A scratch tensor of a name and shape, reused across calls (its contents are garbage)."""


def affine(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x + bias`` of stacked layers: (n, out, in), (n, out, 1), (n, in, rows).

    (``torch.baddbmm`` first copies the broadcast bias into its output, which is slower
    than the product itself here.)
    """
    return torch.bmm(weight, x).add_(bias)


def relu_grad(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Gradient through a ReLU, given its output: zero where the output is not positive
    (in place on ``grad``)."""
    return torch.ops.aten.threshold_backward.grad_input(grad, output, 0, grad_input=grad)


def fourier_basis() -> torch.Tensor:
    """Real orthonormal Fourier basis of functions on the 3 x 3 torus, (10, 9) float64.

    Rows 0..7: ``sqrt(2)/3 cos`` and ``sqrt(2)/3 sin`` of ``2 pi (p i + q j) / 3`` for the
    frequencies ``(p, q)`` = (0, 1), (1, 0), (1, 1), (1, 2) (one of each conjugate pair);
    row 8: the constant 1/3; row 9: zero (a pad, so that the basis splits in 5 pairs).
    Shifts act on each (cos, sin) pair as rotations, so a circular convolution maps each
    pair's span, and the constant, to itself. Computed on the CPU (the same numbers for
    every device; users move it).
    """
    i, j = (x.flatten().double() for x in torch.meshgrid(
        torch.arange(GRID, device="cpu"), torch.arange(GRID, device="cpu"), indexing="ij"))
    rows = []
    for p, q in ((0, 1), (1, 0), (1, 1), (1, 2)):
        phase = 2 * math.pi * (p * i + q * j) / GRID
        rows += [math.sqrt(2) / GRID * phase.cos(), math.sqrt(2) / GRID * phase.sin()]
    rows += [torch.full((CELLS,), 1 / GRID, dtype=torch.float64, device="cpu"),
             torch.zeros(CELLS, dtype=torch.float64, device="cpu")]
    return torch.stack(rows)


@dataclass(frozen=True)
class FourierConv:
    """A circular 3 x 3 convolution ``C -> C`` in the basis of :func:`fourier_basis`.

    With the basis ``Q`` (10 x 9), a conv's dense map ``D`` (per channel pair) becomes
    ``Q D Q^T``: 4 rotation-scaling 2 x 2 blocks and one 1 x 1 block. Over channels that is
    5 blocks of ``2C x 2C`` (block ``g`` acts on basis rows ``2g, 2g + 1`` of every channel,
    rows ``a C + o`` for row ``2g + a``; block 4 is the constant frequency, its pad half
    zero). Each block entry is a fixed combination of one channel pair's 9 kernel entries:
    ``G[o, c, :] = kernel[o, c].flatten() @ mix`` (17 numbers: 4 per pair block, 1 for the
    constant), and each entry of ``G`` sits in exactly one block position.

    Attributes
    ----------
    basis : Tensor, (10, 9) float64
    mix : Tensor, (9, 17) float64
    block_of_g : Tensor of long, (5 (2C)^2,)
        For each block entry, its entry of ``[G.flatten(), 0]`` (the last: a zero).
    g_of_block : Tensor of long, (C^2 17,)
        For each entry of ``G``, its position in the flattened blocks.
    """

    basis: torch.Tensor
    mix: torch.Tensor
    block_of_g: torch.Tensor
    g_of_block: torch.Tensor

    @classmethod
    def build(cls, channels: int) -> FourierConv:
        """The maps for ``channels`` channels, on the CPU."""
        q = fourier_basis()[:CELLS]
        units = torch.eye(CELLS, dtype=torch.float64, device="cpu").view(CELLS, 1, 1, GRID, GRID)
        freq = q @ dense_circular_conv(units) @ q.T  # (9 kernel entries, 9, 9)
        cols = [freq[:, 2 * g + a, 2 * g + b] for g in range(4) for a in (0, 1) for b in (0, 1)]
        mix = torch.stack([*cols, freq[:, 8, 8]], dim=1)  # (9, 17)
        c = channels
        block_of_g = torch.full((5, 2, c, 2, c), c * c * 17, dtype=torch.long, device="cpu")
        o = torch.arange(c, device="cpu").view(-1, 1)
        pair = (o * c + o.T) * 17  # G index of (o, c), column 0
        for g in range(4):
            for a in (0, 1):
                for b in (0, 1):
                    block_of_g[g, a, :, b, :] = pair + 4 * g + 2 * a + b
        block_of_g[4, 0, :, 0, :] = pair + 16
        block_of_g = block_of_g.flatten()
        g_of_block = torch.empty(c * c * 17, dtype=torch.long, device="cpu")
        inside = block_of_g < c * c * 17
        g_of_block[block_of_g[inside]] = torch.arange(block_of_g.numel(), device="cpu")[inside]
        return cls(fourier_basis(), mix, block_of_g, g_of_block)


@dataclass
class CriticWeights:
    """The critic's parameters in the forms its passes use (all seeds)."""

    conv1: torch.Tensor  # (S, 9C, 38): dense map (rows cell-major, C cell + o), 0, bias
    blocks: torch.Tensor  # (5 S, 2C, 2C) the second conv in the Fourier basis
    bias2: torch.Tensor  # (5 S, 2C, 1): 3 b2 on the constant frequency
    linear3: torch.Tensor  # (S, H, 9C) columns cell-major
    tau3: torch.Tensor | None  # (S, H, 1) the time column (value_time)
    bias3: torch.Tensor  # (S, H, 1)
    linear4: torch.Tensor  # (S, 2, H)
    bias4: torch.Tensor  # (S, 2, 1)

    def seed(self, s: int) -> CriticWeights:
        """Seed ``s``'s parameters (views, leading dimension 1, or 5 for the blocks)."""
        one = slice(s, s + 1)
        return CriticWeights(
            self.conv1[one], self.blocks[5 * s: 5 * s + 5], self.bias2[5 * s: 5 * s + 5],
            self.linear3[one], None if self.tau3 is None else self.tau3[one],
            self.bias3[one], self.linear4[one], self.bias4[one])



@dataclass(frozen=True)
class FourierCritic:
    """The critic's passes for ``channels`` conv channels and width ``hidden`` (and a time
    input with ``value_time``): the fixed maps of its convolutions, and its forward and
    backward on stacked seeds.

    Attributes
    ----------
    conv1_index : Tensor of long, (9C, 36)
        The first conv's dense map in the flat kernel (:func:`~recip_tourney.agents.
        torus_conv.circular_conv_index`), rows cell-major (``C cell + o``).
    conv1_sum : Tensor of long, (C 4 9, 9)
        For each kernel entry, the 9 entries of the flattened dense map it fills.
    basis, mix, block_of_g, g_of_block : Tensor
        The second conv in the Fourier basis (:class:`FourierConv`; ``basis`` and ``mix``
        in the parameters' dtype).
    states : Tensor, (6561, 36)
        ``vec(S(l))`` of all states (:func:`~recip_tourney.agents.influence_features.
        all_states`), in the parameters' dtype.
    """

    channels: int
    hidden: int
    value_time: bool
    conv1_index: torch.Tensor
    conv1_sum: torch.Tensor
    basis: torch.Tensor
    mix: torch.Tensor
    block_of_g: torch.Tensor
    g_of_block: torch.Tensor
    states: torch.Tensor

    @classmethod
    def build(cls, channels: int, hidden: int, value_time: bool, dtype: torch.dtype,
              device: torch.device | str | None = None) -> FourierCritic:
        """The maps of a critic with ``channels`` conv channels and width ``hidden``, on
        ``device`` (default: the CPU; computed there, then moved: the same numbers on every
        device)."""
        c = channels
        device = torch.device("cpu") if device is None else torch.device(device)
        # first conv: dense map with rows cell-major (9 cells x C), inputs channel-major
        rows = torch.arange(c * CELLS, device="cpu").view(c, CELLS).T.flatten()
        conv1_index = circular_conv_index(CHANNELS, c, device="cpu")[rows]
        conv1_sum = conv1_index.flatten().argsort(stable=True).view(-1, CELLS)
        fourier = FourierConv.build(c)
        return cls(c, hidden, value_time, conv1_index.to(device), conv1_sum.to(device),
                   fourier.basis.to(dtype=dtype, device=device),
                   fourier.mix.to(dtype=dtype, device=device), fourier.block_of_g.to(device),
                   fourier.g_of_block.to(device), all_states(dtype, device))

    def weights(self, params: dict[str, torch.Tensor]) -> CriticWeights:
        """The forms of the passes (:class:`CriticWeights`) of every seed's parameters
        ``params`` (:data:`CRITIC_BLOCKS`, seed first; kernels ``(S, C_out, C_in, 3, 3)``)."""
        k1 = params["k1"]
        s, c, h = k1.shape[0], self.channels, self.hidden
        trunk = c * CELLS
        # the first conv's input rows are [vec(s), tau, 1]: its dense map, 0 and its bias
        conv1 = torch.cat((k1.reshape(s, -1)[:, self.conv1_index],
                           k1.new_zeros(s, trunk, 1),
                           params["b1"].repeat(1, CELLS).unsqueeze(-1)), dim=2)
        g = torch.mm(params["k2"].reshape(s * c * c, CELLS), self.mix).view(s, -1)
        g = torch.cat((g, g.new_zeros(s, 1)), dim=1)
        blocks = g[:, self.block_of_g].view(5 * s, 2 * c, 2 * c)
        bias2 = torch.zeros(s, 5, 2 * c, 1, dtype=k1.dtype, device=k1.device)
        bias2[:, 4, :c, 0] = GRID * params["b2"]  # the constant b has coefficient 3 b
        w3 = params["w3"]
        linear3 = w3[..., :trunk].reshape(s, h, c, CELLS).transpose(2, 3).reshape(s, h, trunk)
        return CriticWeights(
            conv1, blocks, bias2.view(5 * s, 2 * c, 1), linear3,
            w3[..., trunk:] if self.value_time else None, params["b3"].unsqueeze(-1),
            params["w4"], params["b4"].unsqueeze(-1))

    def trunk(self, w: CriticWeights, x: torch.Tensor, buffer: Buffer | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two convolutions (with ReLUs) on states ``x`` (S, n, 38): ``[vec(s), tau, 1]``
        (``tau`` unused here); into scratch tensors of ``buffer`` if given.

        Returns
        -------
        h1, h2 : Tensor, (S, 9C, n)
            Cell-major activations (row ``C cell + channel``).
        spectrum : Tensor, (5 S, 2C, n)
            ``h1`` in the Fourier basis, grouped in the 5 blocks.
        """
        s, n = x.shape[0], x.shape[1]
        c = self.channels

        def out(name: str, *shape: int) -> torch.Tensor | None:
            return buffer(name, shape) if buffer is not None else None

        h1 = torch.bmm(w.conv1, x.transpose(1, 2), out=out("v.h1", s, CELLS * c, n)).relu_()
        basis = self.basis.expand(s, -1, -1)
        spectrum = torch.bmm(basis, h1.view(s, CELLS, c * n), out=out("v.sp", s, 10, c * n))
        spectrum = spectrum.view(5 * s, 2 * c, n)
        mixed = torch.bmm(w.blocks, spectrum, out=out("v.mix", 5 * s, 2 * c, n))
        mixed = mixed.add_(w.bias2).view(s, CELLS + 1, c * n)
        h2 = torch.bmm(basis.transpose(1, 2), mixed, out=out("v.h2", s, CELLS, c * n))
        return h1, h2.view(s, CELLS * c, n).relu_(), spectrum

    def rows(self, keys: torch.Tensor, steps: int) -> torch.Tensor:
        """The critic's input rows ``[vec(s), tau, 1]`` (n, 38) of value keys
        (:attr:`~recip_tourney.agents.influence_features.SampleTables.value_keys`)."""
        tau = torch.zeros(len(keys), 1, dtype=self.states.dtype, device=keys.device)
        if self.value_time:
            keys, tau = keys.div(steps, rounding_mode="floor"), (keys % steps).to(tau).view(-1, 1)
        rows = self.states.index_select(0, keys)
        return torch.cat((rows, tau, torch.ones_like(tau)), dim=1)

    def minibatch_gradient(self, w: CriticWeights, tables: SampleTables, index: torch.Tensor,
                           weights: torch.Tensor, grads: dict[str, torch.Tensor],
                           buffer: Buffer, distinct: bool | None = None) -> None:
        """Forward and backward of the critic on each seed's minibatch; gradients into
        ``grads`` (:data:`CRITIC_BLOCKS`, seed first).

        With ``distinct`` (the default on the CPU): the critic sees the state only (and
        ``tau`` with ``value_time``), so the minibatch is reduced to its distinct inputs:
        with ``n_u`` rows of input ``u`` and returns summing to ``Sigma_u``, the MSE gradient
        at ``V(u)`` is ``(n_u V(u) - Sigma_u) / mb`` (the same loss, about a quarter fewer
        rows with uniform states). Seed by seed, as each seed has its own number of distinct
        inputs. Without (the default elsewhere): every row of the minibatch, each weighted
        by its ``weights`` entry; the same gradient up to rounding, with no size that
        depends on the data, so a GPU never waits for the host (``torch.unique`` and the
        count of rows would).

        ``index`` (S, mb): table rows; ``weights`` (mb,): 1 / rows, 0 on padding.
        """
        if distinct is None:
            distinct = index.device.type == "cpu"
        if not distinct:
            one = weights.new_ones(())
            for seed in range(index.shape[0]):
                index_s = index[seed]
                x = self.rows(tables.value_keys.index_select(0, index_s), tables.steps)
                returns = tables.returns.index_select(0, index_s).T.unsqueeze(0)
                self.gradient(w.seed(seed), x.unsqueeze(0), one, returns, weights,
                              {k: g[seed: seed + 1] for k, g in grads.items()}, buffer)
            return
        rows = int((weights > 0).sum())  # padding, if any, is at the end
        for seed in range(index.shape[0]):
            index_s = index[seed, :rows]
            keys, inverse, counts = torch.unique(
                tables.value_keys.index_select(0, index_s), return_inverse=True,
                return_counts=True)
            returns = tables.rewards.new_zeros(len(keys), PLAYERS).index_add_(
                0, inverse, tables.returns.index_select(0, index_s))
            x = self.rows(keys, tables.steps).unsqueeze(0)  # (1, U, 38)
            self.gradient(w.seed(seed), x, counts.to(self.states.dtype), returns.T.unsqueeze(0),
                          weights[0], {k: g[seed: seed + 1] for k, g in grads.items()}, buffer)

    def gradient(self, w: CriticWeights, x: torch.Tensor, counts: torch.Tensor,
                 returns: torch.Tensor, scale: torch.Tensor, grads: dict[str, torch.Tensor],
                 buffer: Buffer) -> None:
        """One seed's critic gradient into ``grads`` (:data:`CRITIC_BLOCKS`, leading
        dimension 1): inputs ``x`` (1, U, 38), each seen ``counts`` (U,) times with returns
        summing to ``returns`` (1, 2, U); the loss is ``scale`` (1 / minibatch rows, or one
        weight per input, (U,)) times the sum of squared errors."""
        n = x.shape[1]
        c, h = self.channels, self.hidden
        trunk = c * CELLS

        h1, h2, spectrum = self.trunk(w, x, buffer)
        pre3 = torch.bmm(w.linear3, h2, out=buffer("v.h3", (1, h, n))).add_(w.bias3)
        tau = x[..., STATE_FEATURES:STATE_FEATURES + 1].transpose(1, 2)  # (1, 1, U)
        if w.tau3 is not None:
            pre3.baddbmm_(w.tau3, tau)
        h3 = pre3.relu_()
        # sum over rows of (V - G)^2 / mb: d/dV(u) = 2 (n_u V(u) - Sigma_u) / (2 mb)
        d = affine(w.linear4, w.bias4, h3).mul_(counts).sub_(returns).mul_(scale)

        torch.bmm(d, h3.transpose(1, 2), out=grads["w4"])
        torch.sum(d, 2, out=grads["b4"])
        d_h3 = relu_grad(torch.bmm(w.linear4.transpose(1, 2), d), h3)
        d_w3 = grads["w3"]
        d_linear3 = torch.bmm(d_h3, h2.transpose(1, 2))  # (1, H, 9C) cell-major
        d_w3[..., :trunk] = d_linear3.view(1, h, CELLS, c).transpose(2, 3).reshape(1, h, trunk)
        if w.tau3 is not None:
            torch.bmm(d_h3, tau.transpose(1, 2), out=d_w3[..., trunk:])
        torch.sum(d_h3, 2, out=grads["b3"])
        d_h2 = torch.bmm(w.linear3.transpose(1, 2), d_h3, out=buffer("v.d_h2", h2.shape))
        d_h2 = relu_grad(d_h2, h2)
        basis = self.basis.unsqueeze(0)
        d_mixed = torch.bmm(basis, d_h2.view(1, CELLS, c * n),
                            out=buffer("v.d_mix", (1, 10, c * n)))
        d_mixed = d_mixed.view(5, 2 * c, n)
        d_blocks = torch.bmm(d_mixed, spectrum.transpose(1, 2)).view(-1)
        d_g = d_blocks[self.g_of_block].view(c * c, 17)
        torch.mm(d_g, self.mix.T, out=grads["k2"].view(c * c, CELLS))
        d_bias2 = d_mixed[4, :c].sum(-1, keepdim=True).T
        torch.mul(d_bias2, GRID, out=grads["b2"])
        d_spectrum = torch.bmm(w.blocks.transpose(1, 2), d_mixed,
                               out=buffer("v.d_sp", (5, 2 * c, n)))
        d_h1 = torch.bmm(basis.transpose(1, 2), d_spectrum.view(1, CELLS + 1, c * n),
                         out=buffer("v.d_h1", (1, CELLS, c * n)))
        d_h1 = relu_grad(d_h1.view(1, CELLS * c, n), h1)
        d_conv1 = torch.bmm(x.transpose(1, 2), d_h1.transpose(1, 2))  # (1, 38, 9C)
        dense = d_conv1[:, :STATE_FEATURES].transpose(1, 2).reshape(1, -1)  # (1, 9C x 36)
        torch.sum(dense[:, self.conv1_sum], -1, out=grads["k1"].view(1, -1))
        torch.sum(d_conv1[:, -1].view(1, CELLS, c), 1, out=grads["b1"])

    def values(self, w: CriticWeights, x: torch.Tensor, taus: torch.Tensor | None = None
               ) -> torch.Tensor:
        """The critic on one-hot states ``x`` (S, n, 36): (S, 2, n), or (S, K, 2, n) at each
        of ``taus`` (K,) with a time input (``w.tau3``; 0 where ``tau < 0``)."""
        x = torch.cat((x, torch.zeros_like(x[..., :1]), torch.ones_like(x[..., :1])), -1)
        _, h2, _ = self.trunk(w, x)
        pre = affine(w.linear3, w.bias3, h2)
        if w.tau3 is None:
            return affine(w.linear4, w.bias4, pre.relu_())
        if taus is None:
            raise ValueError("a time-aware critic (value_time=True) needs taus")
        taus = taus.to(x.dtype).view(1, -1, 1, 1)
        h3 = (pre.unsqueeze(1) + taus * w.tau3.unsqueeze(1)).relu_()  # (S, K, H, n)
        seeds, k = h3.shape[:2]
        out = affine(w.linear4.repeat_interleave(k, 0), w.bias4.repeat_interleave(k, 0),
                     h3.flatten(0, 1))
        return out.view(seeds, k, PLAYERS, -1) * (taus >= 0)


def expected_values(probs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``sum_l prod_k probs_k(l_k) V(S(l))`` of each row, with no loop over states.

    Heads 0 and 1 form an 81-vector (outer product) that multiplies ``V`` as an
    81 x 162 matrix (rows ``(l0, l1)``, columns ``(l2, l3, v)``); the result is
    summed against the outer product of heads 2 and 3.

    Parameters
    ----------
    probs : Tensor, (G, 4, 9, n)
        Per-head cell probabilities of ``n`` rows in each of ``G`` groups.
    table : Tensor, (G, 6561, 2)
        The values of each group (:meth:`value_table`).

    Returns
    -------
    Tensor, (G, 2, n)
    """
    groups, n = probs.shape[0], probs.shape[-1]
    pairs = CELLS * CELLS
    front = (probs[:, 0, :, None] * probs[:, 1, None, :]).view(groups, pairs, n)
    back = (probs[:, 2, :, None] * probs[:, 3, None, :]).view(groups, pairs, 1, n)
    partial = torch.bmm(table.reshape(groups, pairs, pairs * PLAYERS).transpose(1, 2),
                        front)  # (G, 162, n)
    return (partial.view(groups, pairs, PLAYERS, n) * back).sum(1)
