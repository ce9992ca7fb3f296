"""The networks of the Coins M-FOS meta-agent, batched over seeds (rollout spec 4.6).

**Meta-state.** At every step M-FOS sees 7 planes of the g x g torus: its own 4-channel
observation (the match's layout, own position first when egocentric), then its reward of the
previous step, the other player's reward of the previous step and an inner-episode-start
flag, each tiled over the grid (the original M-FOS's 7-channel meta-state). At the first step
of an inner episode both rewards are 0 and the flag is 1 (the original's reset step); the
flag is 0 afterwards.

**Networks** (spec 4.6; n = ``hidden``, 16 in the original). Three towers, ``a`` (actor),
``v`` (value) and ``t`` (conditioning), each ``Conv(7 -> n, 3x3 circular) ReLU Conv(n -> n)
ReLU Flatten Linear(n g^2 -> n) ReLU GRU(n -> n)``, with

* ``theta`` (one n-vector per seed): all ones in the first inner episode; at each inner
  boundary the finished inner episode runs through tower ``t`` from a zero hidden state, the
  last GRU output is averaged over the games of the seed, then ``sigmoid(Linear(n -> n))``;
* actor ``softmax(Linear(n -> 5)(theta * relu(GRU_a)))``, critic
  ``Linear(n -> 1)(sg(theta) * relu(GRU_v))``; both GRUs restart from zero every inner
  episode.

Every seed has its own weights, initialised from its own generator with the default bounds
of ``torch.nn`` (``U(+-1/sqrt(fan_in))``; GRU ``U(+-1/sqrt(n))``), drawn in float64 and cast.

**How it is computed.** Plain torch autograd; the 3 towers of the S seeds are one batch of
``3 S`` models (``bmm`` over the model axis, model ``tower * S + seed``).

* A 3x3 circular conv on the torus is a dense ``(C_in g^2, C_out g^2)`` matrix gathered from
  the kernel (:class:`Circulant`); the gather is differentiable.
* *Table mode* (on the 3 x 3 grid when the samples outnumber the table, see
  :func:`table_pays`: the spec's sizes and the tournament, not CI's tiny trainings). An
  input is 4 one-hot planes and 3 scalars from a finite set (:func:`reward_levels`: 11
  reward pairs and the start code), and the convs commute with translations of the torus
  (the tiled planes are invariant). So the encoder and the GRU's input projection are
  evaluated once per update on a fixed universe: one representative per translation orbit
  (own position at cell 0; ``g^6`` of them) times each code, the linear layer taking the
  ``g^2`` translations as column-permuted copies of its weight. Samples gather their rows
  (autograd scatters their gradients back). On 3 x 3 that is 8748 representatives against
  262144 samples per update at the spec's sizes. ``table=False`` runs the encoder on every
  sample (any grid; the tests check the two modes against each other).
* The GRU is ``torch.nn.GRU``'s up to rounding, rearranged for speed (:func:`_gru_step`).

Speed (``benchmarks/bench_coins_mfos.py``, one thread of a shared 2-core AMD EPYC, float32,
B = 512, 16 x 32 steps, K = 16): about 11 s per update (0.7 s per epoch), 0.6 s of acting
and conditioning per meta-episode; peak memory about 1.5 GB (autograd's saved tensors).

**A seed's numbers do not depend on the other seeds** under one torch thread: products are
per model (``bmm``), sums over a seed's games are products with a vector of ones, the
transcendental functions (whose vectorised and scalar code paths round differently) round
each model's contiguous block as if it were alone (:func:`each`), and every seed's
parameters are their own tensors (so Adam steps them alone). Tested bit for bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch.nn import functional

from recip_tourney.envs import coins as env

OBS_CHANNELS = 4
CHANNELS = OBS_CHANNELS + 3
ACTIONS = 5
KERNEL = 3
TOWERS = ("a", "v", "t")
TABLE_LIMIT = 1 << 14
"""Largest number of orbit representatives evaluated as a table when ``table`` is None."""


def representatives(grid: int) -> int:
    """Rows of the table's universe before translations: codes x ``g^6`` orbits."""
    return len(_levels()) * (grid * grid) ** (OBS_CHANNELS - 1)


def table_pays(grid: int, samples: int | None = None) -> bool:
    """Whether table mode is worth it: a small enough universe (the 3 x 3 grid), and, when
    ``samples`` (the inputs evaluated per weight change) is given, fewer representatives
    than samples."""
    reps = representatives(grid)
    return reps <= TABLE_LIMIT and (samples is None or reps <= samples)

TOWER_PARAMS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "linear.weight",
                "linear.bias", "gru.weight_ih", "gru.weight_hh", "gru.bias_ih", "gru.bias_hh")
HEAD_PARAMS = ("actor.weight", "actor.bias", "critic.weight", "critic.bias", "theta.weight",
               "theta.bias")


# ---------------------------------------------------------------------- the meta-state


@functools.lru_cache(maxsize=1)
def _levels() -> tuple[tuple[float, float, float], ...]:
    # every coincidence pattern of 2 agents and 2 coins is realised on 4 cells; STAY moves
    # nobody, so env.step pays what standing there pays
    cells = torch.cartesian_prod(*[torch.arange(4)] * 4)
    state = env.CoinsState(cells[:, :2], cells[:, 2:])
    stay = torch.full_like(state.agents, env.STAY)
    rewards = env.step(state, stay, state.coins, 2, dtype=torch.float64)[1]
    pairs = sorted({(a, b) for a, b in rewards.tolist()})
    return tuple((a, b, 0.0) for a, b in pairs) + ((0.0, 0.0, 1.0),)


def reward_levels() -> torch.Tensor:
    """Every ``(own reward, other's reward, start flag)`` of a 2-player meta-state, (R, 3).

    The reward pairs one Coins step can pay (11), flag 0, then the start code ``(0, 0, 1)``
    (index :func:`start_code`). Found by playing every coincidence of the two agents and the
    two coins through :func:`recip_tourney.envs.coins.step`.
    """
    return torch.tensor(_levels(), dtype=torch.float64)


def start_code() -> int:
    """The code of an inner episode's first step."""
    return len(_levels()) - 1


def codes_of(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """The codes (long, same shape) of a previous step's rewards ``own`` and ``other``."""
    pairs = reward_levels()[:-1, :2].to(own.device)
    pair = torch.stack((own, other), dim=-1).to(torch.float64)
    match = (pair.unsqueeze(-2) == pairs).all(-1)
    if not bool(match.any(-1).all()):
        raise ValueError("a reward pair that no Coins step pays (is this 2-player Coins?)")
    return match.long().argmax(-1)


def episode_codes(rewards: torch.Tensor, me: int) -> torch.Tensor:
    """Codes (T, ...) of an episode's steps from its rewards (T, 2, ...) by slot: the start
    code, then each previous step's (own, other's) rewards."""
    codes = torch.full(rewards[:, 0].shape, start_code(), dtype=torch.long,
                       device=rewards.device)
    codes[1:] = codes_of(rewards[:-1, me], rewards[:-1, 1 - me])
    return codes


def previous_rewards(before: env.CoinsState, after: env.CoinsState, grid: int) -> torch.Tensor:
    """The rewards (..., n) of the step that took the game from ``before`` to ``after``.

    A step pays for the agents' positions after the move against the coins before it (the
    respawns change only coins), so :func:`recip_tourney.envs.coins.step` with everybody
    standing still at ``after``'s positions in front of ``before``'s coins pays exactly that.
    """
    state = env.CoinsState(after.agents, before.coins)
    stay = torch.full_like(after.agents, env.STAY)
    return env.step(state, stay, before.coins, grid, dtype=torch.float64)[1]


def observation_cells(obs: torch.Tensor) -> torch.Tensor:
    """Cells (..., 4) of one-hot observation planes (..., 4, g, g)."""
    return obs.flatten(-2).argmax(-1)


@functools.lru_cache(maxsize=8)
def torus_translations(grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``shift[tau, x]``: cell x moved by the translation taking cell 0 to cell tau, and
    ``unshift`` with ``unshift[tau, shift[tau, x]] = x``; both (g^2, g^2)."""
    row, col = torch.arange(grid * grid) // grid, torch.arange(grid * grid) % grid
    shift = ((row.view(-1, 1) + row) % grid) * grid + (col.view(-1, 1) + col) % grid
    return shift, torch.argsort(shift, dim=1)


def orbit_rows(cells: torch.Tensor, codes: torch.Tensor, grid: int) -> torch.Tensor:
    """Table rows (long) of inputs given by their cells (..., 4) and codes (...).

    Row ``(code * g^6 + rho) * g^2 + tau``: ``tau`` is channel 0's cell, ``rho`` the cells of
    channels 1-3 moved back by that translation, in base g^2.
    """
    cellcount = grid * grid
    unshift = torus_translations(grid)[1].to(cells.device)
    tau = cells[..., 0]
    rho = torch.zeros_like(tau)
    for ch in range(OBS_CHANNELS - 1, 0, -1):
        rho = rho * cellcount + unshift[tau, cells[..., ch]]
    return (codes * cellcount ** (OBS_CHANNELS - 1) + rho) * cellcount + tau


def dense_inputs(cells: torch.Tensor, codes: torch.Tensor, grid: int,
                 dtype: torch.dtype) -> torch.Tensor:
    """The 7 planes (..., 7 g^2), flattened channel-major, of cells (..., 4) and codes."""
    cellcount = grid * grid
    planes = torch.zeros(*cells.shape, cellcount, dtype=dtype, device=cells.device)
    planes.scatter_(-1, cells.unsqueeze(-1), 1)
    scalars = reward_levels().to(dtype=dtype, device=cells.device)[codes]
    tiled = scalars.unsqueeze(-1).expand(*codes.shape, 3, cellcount)
    return torch.cat([planes, tiled], dim=-2).flatten(-2)


@functools.lru_cache(maxsize=4)
def universe(grid: int, dtype: torch.dtype) -> torch.Tensor:
    """Inputs of the table's representatives, (R g^6, 7 g^2), in row order // g^2."""
    cellcount = grid * grid
    reps = cellcount ** (OBS_CHANNELS - 1)
    rho = torch.arange(reps)
    cells = torch.zeros(reps, OBS_CHANNELS, dtype=torch.long)
    for ch in range(1, OBS_CHANNELS):
        cells[:, ch] = (rho // cellcount ** (ch - 1)) % cellcount
    codes = torch.arange(len(_levels())).repeat_interleave(reps)
    return dense_inputs(cells.repeat(len(_levels()), 1), codes, grid, dtype)


# ---------------------------------------------------------------------- building blocks


class Circulant:
    """A stride-1 circular 'same' conv on the g x g torus as a dense matrix of its kernel.

    Output cell ``(ui, uj)`` of channel co reads input cell ``((ui + di - 1) mod g,
    (uj + dj - 1) mod g)`` of channel ci through kernel entry ``[co, ci, di, dj]`` (as
    ``torch.nn.functional.conv2d`` with circular padding); features are flattened
    ``(channel, row, col)``. :meth:`dense` is a differentiable gather.
    """

    def __init__(self, cin: int, cout: int, grid: int, kernel: int = KERNEL) -> None:
        cells, pad = grid * grid, kernel // 2
        self.shape = (cin * cells, cout * cells)
        hits: list[list[int]] = [[] for _ in range(self.shape[0] * self.shape[1])]
        for co in range(cout):
            for ci in range(cin):
                for di in range(kernel):
                    for dj in range(kernel):
                        k = ((co * cin + ci) * kernel + di) * kernel + dj
                        for u in range(cells):
                            ui, uj = divmod(u, grid)
                            p = ((ui + di - pad) % grid) * grid + (uj + dj - pad) % grid
                            hits[(ci * cells + p) * self.shape[1] + co * cells + u].append(k)
        self.multiplicity = max(len(h) for h in hits)
        self.zero = cout * cin * kernel * kernel  # index of a zero appended to the kernel
        padded = [h + [self.zero] * (self.multiplicity - len(h)) for h in hits]
        self.index = torch.tensor(padded, dtype=torch.long).flatten()
        self.padded = any(len(h) < self.multiplicity for h in hits)

    def dense(self, kernel: torch.Tensor) -> torch.Tensor:
        """Matrices (M, C_in g^2, C_out g^2) of kernels (M, C_out, C_in, k, k)."""
        flat = kernel.flatten(1)
        if self.padded:
            flat = torch.cat([flat, flat.new_zeros(flat.shape[0], 1)], dim=1)
        picked = flat.index_select(1, self.index.to(flat.device))
        picked = picked.view(flat.shape[0], -1, self.multiplicity)
        out = picked[..., 0] if self.multiplicity == 1 else picked.sum(-1)
        return out.view(flat.shape[0], *self.shape)


ALIGN = 64
"""A contiguous elementwise op rounds an element alike wherever it lies when the tensor has
no scalar tail: blocks of a multiple of this many elements (AVX-512 doubles unrolled)."""


def each(fn, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """``fn`` on every model's block ``x[m]`` of a contiguous x, rounding every block as if
    it were alone: one call when the blocks are a multiple of :data:`ALIGN` elements (no
    vector tail anywhere), else block by block (see the module docstring)."""
    x = x.contiguous()
    if x[0].numel() % ALIGN == 0:
        return fn(x)
    return torch.stack([fn(block) for block in x.unbind(0)])


def group_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (M, B, F), as a product with ones (rounds per model): (M, F)."""
    ones = x.new_ones(x.shape[0], 1, x.shape[1])
    return torch.bmm(ones, x).squeeze(1) / x.shape[1]


@dataclass
class _Working:
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
    w: _Working


def _gru_step(gates: Gates, h: torch.Tensor, w: _Working) -> torch.Tensor:
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


# ---------------------------------------------------------------------- the networks


class MFOSNets:
    """The three towers and the heads of S seeds' M-FOS.

    Parameters
    ----------
    hidden : int
        n, the width of every tower (conv channels, linear, GRU).
    generators : list of torch.Generator
        One per seed; seed s's weights are drawn from its generator alone.
    dtype : torch.dtype
    grid : int
        Side g of the torus.
    table : bool, optional
        Table mode (module docstring); default: :func:`table_pays` (the 3 x 3 grid). Both
        modes compute the same functions; they round differently.
    device : torch.device, optional

    Attributes
    ----------
    params : list of dict
        Per seed: ``towers.<name>`` (3, ...) for towers a, v, t, and the heads; plain
        leaf tensors (``requires_grad`` set by the learner).
    """

    def __init__(self, hidden: int, generators: list[torch.Generator],
                 dtype: torch.dtype = torch.float32, grid: int = 3, table: bool | None = None,
                 device: torch.device | None = None) -> None:
        self.hidden, self.grid, self.dtype = hidden, grid, dtype
        self.device = torch.device("cpu") if device is None else device
        self.cells = grid * grid
        self.table = table_pays(grid) if table is None else table
        n, feat = hidden, hidden * self.cells
        self.shapes: dict[str, tuple[tuple[int, ...], float]] = {
            "conv1.weight": ((n, CHANNELS, KERNEL, KERNEL), CHANNELS * KERNEL**2),
            "conv1.bias": ((n,), CHANNELS * KERNEL**2),
            "conv2.weight": ((n, n, KERNEL, KERNEL), n * KERNEL**2),
            "conv2.bias": ((n,), n * KERNEL**2),
            "linear.weight": ((n, feat), feat), "linear.bias": ((n,), feat),
            "gru.weight_ih": ((3 * n, n), n), "gru.weight_hh": ((3 * n, n), n),
            "gru.bias_ih": ((3 * n,), n), "gru.bias_hh": ((3 * n,), n),
            "actor.weight": ((ACTIONS, n), n), "actor.bias": ((ACTIONS,), n),
            "critic.weight": ((1, n), n), "critic.bias": ((1,), n),
            "theta.weight": ((n, n), n), "theta.bias": ((n,), n),
        }  # fmt: skip
        self.params = [self._draw(g) for g in generators]
        self.conv1 = Circulant(CHANNELS, n, grid)
        self.conv2 = Circulant(n, n, grid)
        shift = torus_translations(grid)[0]
        offsets = (torch.arange(n) * self.cells).view(1, n, 1)
        # [tau, (c, p)] -> (c, shift[tau, p]): the linear layer's columns seen from an orbit
        # representative moved by tau
        self.shifted = (offsets + shift.unsqueeze(1)).reshape(self.cells, feat)
        self._acting: Acting | None = None

    def _draw(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One seed's parameters: towers a, v, t (each in TOWER_PARAMS order), then heads."""
        drawn: dict[str, list[torch.Tensor]] = {name: [] for name in TOWER_PARAMS}
        for _ in TOWERS:
            for name in TOWER_PARAMS:
                drawn[name].append(self._uniform(name, generator))
        params = {f"towers.{name}": torch.stack(v) for name, v in drawn.items()}
        for name in HEAD_PARAMS:
            params[name] = self._uniform(name, generator)
        return params

    def _uniform(self, name: str, generator: torch.Generator) -> torch.Tensor:
        shape, fan_in = self.shapes[name]
        bound = 1 / math.sqrt(self.hidden if name.startswith("gru") else fan_in)
        draw = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        return draw.to(dtype=self.dtype, device=self.device)

    @classmethod
    def from_state_dicts(cls, states: list[dict[str, torch.Tensor]], dtype: torch.dtype,
                         grid: int = 3, table: bool | None = None,
                         device: torch.device | None = None) -> MFOSNets:
        """Nets whose seed s holds ``states[s]`` (as written by :meth:`state_dict`)."""
        hidden = states[0]["theta.weight"].shape[0]
        nets = cls(hidden, [torch.Generator() for _ in states], dtype, grid, table, device)
        for s, state in enumerate(states):
            nets.load_state_dict(s, state)
        return nets

    @property
    def seeds(self) -> int:
        return len(self.params)

    def state_dict(self, seed: int) -> dict[str, torch.Tensor]:
        """Copies of seed ``seed``'s parameters."""
        return {k: v.detach().clone() for k, v in self.params[seed].items()}

    def load_state_dict(self, seed: int, state: dict[str, torch.Tensor]) -> None:
        """Replace seed ``seed``'s parameters (names and shapes must match)."""
        mine = self.params[seed]
        if set(state) != set(mine):
            raise ValueError(f"expected parameters {sorted(mine)}, got {sorted(state)}")
        for name, value in state.items():
            if value.shape != mine[name].shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)}, expected "
                                 f"{tuple(mine[name].shape)}")
            with torch.no_grad():
                mine[name].copy_(value)
        self.changed()

    def parameters(self) -> list[torch.Tensor]:
        """Every leaf tensor, seed by seed."""
        return [t for p in self.params for t in p.values()]

    def changed(self) -> None:
        """Forget what was computed from the old weights (call after every update)."""
        self._acting = None

    # ------------------------------------------------------------------ forward pieces

    def working(self) -> _Working:
        """The working matrices of the current parameters (differentiable)."""
        def towers(name: str) -> torch.Tensor:
            stacked = torch.stack([p[f"towers.{name}"] for p in self.params], dim=1)
            return stacked.flatten(0, 1)

        cells, n = self.cells, self.hidden
        models = len(TOWERS) * self.seeds
        wl, bl = towers("linear.weight"), towers("linear.bias").unsqueeze(1)
        if self.table:  # (M, n g^2, g^2 n): column block tau = the layer seen from tau
            wl = wl[:, :, self.shifted.to(wl.device)].permute(0, 3, 2, 1)
            wl = wl.reshape(models, n * cells, cells * n)
            bl = bl.repeat(1, 1, cells)
        else:
            wl = wl.transpose(1, 2)
        wih, whh = towers("gru.weight_ih"), towers("gru.weight_hh")
        bih, bhh = towers("gru.bias_ih"), towers("gru.bias_hh")
        return _Working(
            d1=self.conv1.dense(towers("conv1.weight")),
            b1=towers("conv1.bias").repeat_interleave(cells, dim=1).unsqueeze(1),
            d2=self.conv2.dense(towers("conv2.weight")),
            b2=towers("conv2.bias").repeat_interleave(cells, dim=1).unsqueeze(1),
            wl=wl, bl=bl,
            wih=torch.cat([wih[:, : 2 * n], wih[:, 2 * n :] * 2], dim=1).transpose(1, 2),
            bih=torch.cat([bih[:, : 2 * n] + bhh[:, : 2 * n], bih[:, 2 * n :] * 2],
                          dim=1).unsqueeze(1),
            whr=whh[:, :n].transpose(1, 2), whz=whh[:, n : 2 * n].transpose(1, 2),
            whn=(whh[:, 2 * n :] * 2).transpose(1, 2), bhn=(bhh[:, 2 * n :] * 2).unsqueeze(1),
            heads={k: torch.stack([p[k] for p in self.params]) for k in HEAD_PARAMS},
        )  # fmt: skip

    def _towers(self, w: _Working, which: tuple[int, ...]) -> _Working:
        """The working matrices of some towers only (the models of those towers)."""
        seeds = self.seeds

        def pick(x: torch.Tensor) -> torch.Tensor:
            if which == tuple(range(len(TOWERS))):
                return x
            return torch.cat([x[t * seeds : (t + 1) * seeds] for t in which])

        fields = {k: pick(getattr(w, k)) for k in ("d1", "b1", "d2", "b2", "wl", "bl", "wih",
                                                   "bih", "whr", "whz", "whn", "bhn")}
        return _Working(**fields, heads=w.heads)

    def encode(self, w: _Working, x: torch.Tensor) -> Gates:
        """The GRU input projections (M, R', n) x 3 of rows x (M, R, 7 g^2); in table mode the
        rows are orbit representatives and R' = R g^2 (one row per translation)."""
        a1 = torch.baddbmm(w.b1, x, w.d1).relu_()
        a2 = torch.baddbmm(w.b2, a1, w.d2).relu_()
        e = torch.baddbmm(w.bl, a2, w.wl).relu_().reshape(x.shape[0], -1, self.hidden)
        gi = torch.baddbmm(w.bih, e, w.wih)
        return tuple(g.contiguous() for g in gi.split(self.hidden, -1))  # type: ignore[return-value]

    def table_rows(self, w: _Working) -> Gates:
        """The input projections of every table row, (M, rows, n) x 3."""
        x = universe(self.grid, self.dtype).to(self.device)
        return self.encode(w, x.expand(w.d1.shape[0], *x.shape))

    def projections(self, w: _Working, cells: torch.Tensor, codes: torch.Tensor,
                    table: Gates | None = None) -> Gates:
        """Input projections (M, ..., n) x 3 of inputs given by cells (S, ..., 4) and codes
        (S, ...), for the models of ``w`` (a multiple of S), from ``table`` when given."""
        seeds, models = self.seeds, w.d1.shape[0]
        shape = (models, *codes.shape[1:], self.hidden)
        if self.table:
            rows = orbit_rows(cells, codes, self.grid).reshape(seeds, -1)
            table = self.table_rows(w) if table is None else table
            per_model = table[0].shape[1]
            offsets = torch.arange(models, device=rows.device).view(models, 1) * per_model
            index = (offsets + rows.repeat(models // seeds, 1)).flatten()
            gates = [t.view(-1, self.hidden).index_select(0, index) for t in table]
        else:
            x = dense_inputs(cells, codes, self.grid, self.dtype).reshape(seeds, -1,
                                                                          CHANNELS * self.cells)
            gates = list(self.encode(w, x.repeat(models // seeds, 1, 1)))
        return tuple(g.view(shape) for g in gates)  # type: ignore[return-value]

    @staticmethod
    def run_gru(gates: Gates, w: _Working) -> torch.Tensor:
        """Outputs (M, T, B, n) of the GRUs over input projections (M, T, B, n) x 3 from
        h = 0."""
        models, _, batch, n = gates[0].shape
        h = gates[0].new_zeros(models, batch, n)
        outs = []
        # unbind: one backward for all steps (gi[:, t] would zero-fill T steps per step)
        for step in zip(*(g.unbind(1) for g in gates), strict=True):
            h = _gru_step(step, h, w)
            outs.append(h)
        return torch.stack(outs, dim=1)

    def theta(self, last: torch.Tensor, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        """Conditioning (S, K, n) from tower t's last outputs (S, K, B, n) of K episodes."""
        seeds, k, batch, n = last.shape
        mean = group_mean(last.reshape(seeds * k, batch, n)).view(seeds, k, n)
        pre = torch.baddbmm(heads["theta.bias"].unsqueeze(1), mean,
                            heads["theta.weight"].transpose(1, 2))
        return each(torch.sigmoid, pre)

    # ------------------------------------------------------------------ the update's pass

    def evaluate(self, cells: torch.Tensor, codes: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re-run a meta-episode with gradients (spec 4.6's evaluation).

        Parameters
        ----------
        cells : Tensor of long, (S, T, E, B, 4)
            Observation cells of E inner episodes of T steps.
        codes : Tensor of long, (S, T, E, B)

        Returns
        -------
        log_probs : (S, T E B, 5)
        values : (S, T E B)
        thetas : (S, E, n)
            The conditioning of each inner episode (ones for the first).
        """
        seeds, steps, episodes, batch = codes.shape
        n = self.hidden
        w = self.working()
        gates = tuple(g.flatten(2, 3) for g in self.projections(w, cells, codes))
        hs = self.run_gru(gates, w)  # (3S, T, E B, n)
        last = hs[2 * seeds :, -1].reshape(seeds, episodes, batch, n)
        made = self.theta(last[:, :-1], w.heads)  # from episodes 0..E-2
        thetas = torch.cat([made.new_ones(seeds, 1, n), made], dim=1)
        spread = thetas.view(seeds, 1, episodes, 1, n)
        feats = hs[: 2 * seeds].relu().view(2, seeds, steps, episodes, batch, n)
        actor = (feats[0] * spread).view(seeds, -1, n)
        critic = (feats[1] * spread.detach()).view(seeds, -1, n)
        heads = w.heads
        logits = torch.baddbmm(heads["actor.bias"].unsqueeze(1), actor,
                               heads["actor.weight"].transpose(1, 2))
        values = torch.baddbmm(heads["critic.bias"].unsqueeze(1), critic,
                               heads["critic.weight"].transpose(1, 2))
        return each(lambda x: functional.log_softmax(x, dim=-1), logits), values[..., 0], thetas

    # ------------------------------------------------------------------ playing

    def acting(self) -> Acting:
        """Tables and weights for playing with the current parameters (cached)."""
        if self._acting is None:
            with torch.no_grad():
                w = self.working()
                seeds = self.seeds
                gi_a = gi_t = None
                if self.table:
                    table = self.table_rows(self._towers(w, (0, 2)))
                    gi_a = tuple(t[:seeds] for t in table)
                    gi_t = tuple(t[seeds:] for t in table)
                self._acting = Acting(gi_a, gi_t, w)  # type: ignore[arg-type]
        return self._acting

    def act(self, cells: torch.Tensor, codes: torch.Tensor, hidden: torch.Tensor,
            theta: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every seed's actor: actions (S, B) by inverse CDF of ``noise`` (S, B)
        and the next hidden state (S, B, n), from cells (S, B, 4) and codes (S, B)."""
        with torch.no_grad():
            play = self.acting()
            w = self._towers(play.w, (0,))
            gates = self.projections(w, cells, codes, play.gi_a)
            hidden = _gru_step(gates, hidden, w)
            heads = w.heads
            features = theta.unsqueeze(1) * hidden.relu()
            logits = torch.baddbmm(heads["actor.bias"].unsqueeze(1), features,
                                   heads["actor.weight"].transpose(1, 2))
            cdf = each(lambda x: torch.softmax(x, dim=-1), logits).cumsum(-1)
            actions = (cdf[..., :-1] <= noise.unsqueeze(-1)).sum(-1)
        return actions, hidden

    def condition(self, cells: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The next inner episode's theta (S, n) from a finished one: cells (T, S, B, 4) and
        codes (T, S, B)."""
        with torch.no_grad():
            play = self.acting()
            w = self._towers(play.w, (2,))
            gates = self.projections(w, cells.transpose(0, 1), codes.transpose(0, 1), play.gi_t)
            last = self.run_gru(gates, w)[:, -1]  # (S, B, n)
            return self.theta(last.unsqueeze(1), w.heads)[:, 0]
