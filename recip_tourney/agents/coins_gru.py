"""The Coins PPO networks (``ConvGRUNets``): conv encoder + GRU actor and critic of S seeds.

Rollout spec 4.3. Per seed, the actor is
``StateEncoder -> GRU(H, H) -> ReLU -> Linear(H, 5) -> softmax`` and the critic its own
``StateEncoder -> GRU(H, H) -> ReLU -> Linear(H, 1)``, where ``StateEncoder`` is
``Conv(2n -> c) ReLU Conv(c -> c) ReLU Flatten Linear(c g^2 -> H) ReLU`` with H = 32,
c = H / 4, kernel k = g (g + 1 if g is even), stride 1 and circular 'same' padding on the
g x g torus. This module holds their parameters and the forms the hand-written passes
(:mod:`recip_tourney.agents.coins_gru_passes`) use; the learner is
:class:`~recip_tourney.agents.coins_ppo.CoinsPPO`.

* **A conv on the torus is a dense linear map** (:class:`~recip_tourney.agents.torus_conv.
  CirculantConv`): the kernel stays the parameter and the matrix is gathered from it.
* **Seeds and the two networks are one batch of models.** Actor and critic share shapes up
  to their heads, so the 2 S networks of S seeds run as one batch of matrix products
  (``bmm`` over the model axis), halving the kernel launches of the sequential GRU loop.
* **The encoder is a table** (``table`` mode, the default for 2-player Coins). An
  observation is one-hot per channel: 2n cells, so at most ``(g^2)^(2n)`` distinct inputs
  (6561 for two players on 3 x 3, against 32768 samples per episode). Each epoch the
  encoder and the GRU's input projection run once on that universe, samples gather their
  rows, and the backward pass scatters their gradients back (``index_add_``). The universe
  is ordered by translation orbit: the convs commute with translations of the torus, so
  they run on one representative per orbit (channel 0 at cell 0; ``g^2`` times fewer rows)
  and the translations move into the columns of the linear layer, one ``(g^2 H, c g^2)``
  matrix of its column-permuted copies (:meth:`ConvGRUNets.table_inputs`,
  :meth:`ConvGRUNets.table_rows`, ``wst`` in :class:`WorkingWeights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from recip_tourney.agents.default_init import default_bound, seeded_uniform
from recip_tourney.agents.torus_conv import CirculantConv, kernel_size, torus_shift

N_ACTIONS = 5


@dataclass(frozen=True)
class _Slot:
    """Where one parameter lies in a model's block: offset, shape, init bound."""

    offset: int
    shape: tuple[int, ...]
    bound: float

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class WorkingWeights:
    """Working matrices of a batch of M models, built from their parameters.

    The GRU's gate rows are reordered and the n gate doubled (exact): the input projection
    has rows (2n, r, z) and the hidden one (r, z, 2n), and ``tanh(a) = 2 sigmoid(2 a) - 1``.
    The hidden projection takes the hidden state with a row of ones appended (its bias).
    ``wst``/``bst`` (table mode) stack the linear layer for the g^2 translations:
    ``wst[tau H + o, j] = wl[o, shifted column j]``.
    """

    d1: torch.Tensor  # (M, F, Fc)
    b1: torch.Tensor  # (M, 1, Fc)
    d2: torch.Tensor  # (M, Fc, Fc)
    b2: torch.Tensor  # (M, 1, Fc)
    wl: torch.Tensor  # (M, H, Fc)
    bl: torch.Tensor  # (M, 1, H)
    wih: torch.Tensor  # (M, 3H, H), rows (2n, r, z)
    bih: torch.Tensor  # (M, 3H, 1)
    whh: torch.Tensor  # (M, 3H, H + 1), rows (r, z, 2n), the bias as the last column
    wst: torch.Tensor | None = None  # (M, g^2 H, Fc)
    bst: torch.Tensor | None = None  # (M, 1, g^2 H)


class ConvGRUNets:
    """Actor and critic of the Coin Game for S seeds, every parameter in one flat tensor.

    Parameters
    ----------
    in_channels : int
        Observation channels, 2 n.
    hidden : int
        H (32 in the reference); the conv channels are H / 4.
    generators : list of torch.Generator
        One per seed: draws that seed's initial weights, parameter by parameter in the order
        of :meth:`named` (actor, then critic), with the default bounds of ``nn.Conv2d`` and
        ``nn.Linear`` (``U(+-1/sqrt(fan_in))`` for weights and biases) and ``nn.GRU``
        (``U(+-1/sqrt(H))``). A seed's weights depend on its generator only.
    dtype : torch.dtype
    grid : int
        Side g of the torus.
    actions : int
        Actor outputs (5 moves).
    device : torch.device or str, optional
        Where the parameters and index tables live (default: the CPU). The initial weights
        are drawn on the CPU from the seeds' generators and moved there, so they are the same
        numbers on every device.

    Attributes
    ----------
    flat : Tensor, 1-D
        Every parameter: first the ``(S, 2, P)`` block of the two networks' shared-shape
        parts (encoder and GRU; 0 = actor, 1 = critic), then the ``(S, Q)`` block of the
        heads. :meth:`named` gives ``nn.Module``-style views.
    """

    BODY = ("encoder.conv1.weight", "encoder.conv1.bias", "encoder.conv2.weight",
            "encoder.conv2.bias", "encoder.linear.weight", "encoder.linear.bias",
            "gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0")
    HEADS = ("actor.head.weight", "actor.head.bias", "critic.head.weight", "critic.head.bias")
    NETS = ("actor", "critic")

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        generators: list[torch.Generator],
        dtype: torch.dtype = torch.float32,
        grid: int = 3,
        actions: int = N_ACTIONS,
        device: torch.device | str | None = None,
    ) -> None:
        if hidden % 4:
            raise ValueError(f"hidden must be a multiple of 4, got {hidden}")
        self.seeds, self.in_channels, self.hidden, self.grid = (
            len(generators), in_channels, hidden, grid)
        self.channels, self.kernel, self.actions = hidden // 4, kernel_size(grid), actions
        self.cells = grid * grid
        self.features = in_channels * self.cells
        device = torch.device("cpu") if device is None else torch.device(device)
        self.conv1 = CirculantConv(in_channels, self.channels, grid, self.kernel, device)
        self.conv2 = CirculantConv(self.channels, self.channels, grid, self.kernel, device)
        h, c, k = hidden, self.channels, self.kernel
        fc = c * self.cells
        conv_in1, conv_in2 = in_channels * k * k, c * k * k
        self.body = self._slots(self.BODY, (
            ((c, in_channels, k, k), conv_in1), ((c,), conv_in1),
            ((c, c, k, k), conv_in2), ((c,), conv_in2), ((h, fc), fc), ((h,), fc),
            ((3 * h, h), h), ((3 * h, h), h), ((3 * h,), h), ((3 * h,), h)))
        self.body_size = sum(s.size for s in self.body.values())
        self.head = self._slots(self.HEADS, (((actions, h), h), ((actions,), h),
                                             ((1, h), h), ((1,), h)))
        self.head_size = sum(s.size for s in self.head.values())
        seeds = self.seeds
        # drawn and assembled on the CPU (the seeds' generators), then moved
        flat = torch.empty(seeds * (2 * self.body_size + self.head_size), dtype=dtype,
                           device="cpu")
        body, heads = self.split(flat)
        for net, name in enumerate(self.NETS):
            for slot in self.body.values():
                draw = seeded_uniform(slot.shape, slot.bound, generators).view(seeds, -1)
                body[:, net, slot.offset : slot.offset + slot.size] = draw.to(dtype)
            for key, slot in self.head.items():
                if key.startswith(name):
                    draw = seeded_uniform(slot.shape, slot.bound, generators).view(seeds, -1)
                    heads[:, slot.offset : slot.offset + slot.size] = draw.to(dtype)
        self.flat = flat.to(device)
        # translations of the torus acting on the linear layer's input columns (c, cell)
        shift = torus_shift(grid, device)
        unshift = torch.argsort(shift, dim=1)  # unshift[tau, shift[tau, x]] = x
        offsets = (torch.arange(c, device=device) * self.cells).view(1, c, 1)
        self.shifted_columns = (offsets + shift.unsqueeze(1)).reshape(self.cells, fc)
        self.unshifted_columns = (offsets + unshift.unsqueeze(1)).reshape(self.cells, fc)
        self._unshift = unshift
        self._table_inputs: torch.Tensor | None = None

    @staticmethod
    def _slots(
        names: tuple[str, ...], shapes: tuple[tuple[tuple[int, ...], int], ...]
    ) -> dict[str, _Slot]:
        out, offset = {}, 0
        for name, (shape, fan_in) in zip(names, shapes, strict=True):
            out[name] = _Slot(offset, shape, default_bound(fan_in))
            offset += math.prod(shape)
        return out

    @property
    def dtype(self) -> torch.dtype:
        return self.flat.dtype

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.flat.device

    @property
    def n_observations(self) -> int:
        """Distinct one-hot observations, (g^2)^(2n): the rows of the table."""
        return self.cells**self.in_channels

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``(S, 2, P)`` (bodies) and ``(S, Q)`` (heads) of a tensor shaped like
        :attr:`flat`."""
        cut = self.seeds * 2 * self.body_size
        return (flat[:cut].view(self.seeds, 2, self.body_size),
                flat[cut:].view(self.seeds, self.head_size))

    def named(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Parameters by ``nn.Module``-style name (``actor.encoder.conv1.weight``, ...,
        ``critic.head.bias``), views ``(S, *shape)`` of ``flat`` (default :attr:`flat`)."""
        body, heads = self.split(self.flat if flat is None else flat)
        out = {}
        for net, name in enumerate(self.NETS):
            for key, slot in self.body.items():
                piece = body[:, net, slot.offset : slot.offset + slot.size]
                out[f"{name}.{key}"] = piece.view(self.seeds, *slot.shape)
        for key, slot in self.head.items():
            out[key] = heads[:, slot.offset : slot.offset + slot.size].view(
                self.seeds, *slot.shape)
        return out

    def heads(self, flat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor and critic heads ``(S, out, H + 1)``: the weights, the bias as last column."""
        named = self.named(flat)
        return tuple(torch.cat([named[f"{net}.head.weight"],
                                named[f"{net}.head.bias"].unsqueeze(-1)], dim=2)
                     for net in self.NETS)

    # ------------------------------------------------------------------ the table

    def table_inputs(self) -> torch.Tensor:
        """One observation per translation orbit, ``(g^2)^(C-1)`` rows of C g^2 features:
        channel 0 at cell 0, channel c >= 1 at cell ``(rho // (g^2)^(c-1)) % g^2`` in row rho."""
        if self._table_inputs is None:
            reps = self.cells ** (self.in_channels - 1)
            rho = torch.arange(reps, device=self.device)
            x = torch.zeros(reps, self.in_channels, self.cells, dtype=self.dtype,
                            device=self.device)
            x[:, 0, 0] = 1
            for ch in range(1, self.in_channels):
                x[rho, ch, (rho // self.cells ** (ch - 1)) % self.cells] = 1
            self._table_inputs = x.view(reps, self.features)
        return self._table_inputs

    def table_rows(self, cells: torch.Tensor) -> torch.Tensor:
        """Table row of observations given by their cells, long ``(..., C)``.

        The table is ordered (orbit, translation): the observation whose channel 0 is at
        cell tau is its orbit representative moved by tau, in row ``rho g^2 + tau``.
        """
        tau = cells[..., 0]
        rho = torch.zeros_like(tau)
        for ch in range(self.in_channels - 1, 0, -1):
            rho = rho * self.cells + self._unshift[tau, cells[..., ch]]
        return rho * self.cells + tau

    def weights(self, body: torch.Tensor, table: bool) -> WorkingWeights:
        """Working matrices of the models whose parameters are the rows of ``body`` (M, P)."""
        models, h, cells = body.shape[0], self.hidden, self.cells
        p = {k: body[:, s.offset : s.offset + s.size] for k, s in self.body.items()}
        wih = p["gru.weight_ih_l0"].view(models, 3 * h, h)
        whh = p["gru.weight_hh_l0"].view(models, 3 * h, h)
        bih, bhh = p["gru.bias_ih_l0"], p["gru.bias_hh_l0"]
        whh_aug = torch.cat([whh, bhh.unsqueeze(2)], dim=2)
        wl = p["encoder.linear.weight"].view(models, h, -1)
        bl = p["encoder.linear.bias"].unsqueeze(1)
        w = WorkingWeights(
            d1=self.conv1.dense(p["encoder.conv1.weight"]),
            b1=p["encoder.conv1.bias"].repeat_interleave(cells, dim=1).unsqueeze(1),
            d2=self.conv2.dense(p["encoder.conv2.weight"]),
            b2=p["encoder.conv2.bias"].repeat_interleave(cells, dim=1).unsqueeze(1),
            wl=wl, bl=bl,
            wih=torch.cat([wih[:, 2 * h :] * 2, wih[:, : 2 * h]], dim=1),
            bih=torch.cat([bih[:, 2 * h :] * 2, bih[:, : 2 * h]], dim=1).unsqueeze(2),
            whh=torch.cat([whh_aug[:, : 2 * h], whh_aug[:, 2 * h :] * 2], dim=1),
        )
        if table:
            w.wst = wl[:, :, self.shifted_columns].transpose(1, 2).reshape(models, -1, wl.shape[2])
            w.bst = bl.repeat(1, 1, cells)
        return w

