"""The networks of the Coins M-FOS meta-agent, batched over seeds (rollout spec 4.6).

**Meta-state**: 7 planes of the g x g torus (own observation, the previous step's two
rewards and an inner-episode-start flag), built in :mod:`recip_tourney.agents.coins_mfos_inputs`
(re-exported here, with the GRU blocks of :mod:`recip_tourney.agents.coins_mfos_gru`).

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
of ``torch.nn`` (``U(+-1/sqrt(fan_in))``; GRU ``U(+-1/sqrt(n))``), drawn in float64 and cast
(:func:`recip_tourney.agents.default_init.seeded_uniform`).

**How it is computed.** Plain torch autograd; the 3 towers of the S seeds are one batch of
``3 S`` models (``bmm`` over the model axis, model ``tower * S + seed``).

* A 3x3 circular conv on the torus is a dense ``(C_in g^2, C_out g^2)`` matrix gathered from
  the kernel (:class:`recip_tourney.agents.torus_conv.CirculantConv`, a 3 x 3 kernel on
  every grid); the gather is differentiable.
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
* The GRU is ``torch.nn.GRU``'s up to rounding, rearranged for speed
  (:func:`~recip_tourney.agents.coins_mfos_gru.gru_step`).

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

import torch
from torch.nn import functional

from recip_tourney.agents.coins_mfos_gru import (
    ALIGN,
    Acting,
    Gates,
    Working,
    each,
    group_mean,
    gru_step,
)
from recip_tourney.agents.coins_mfos_inputs import (
    CHANNELS,
    OBS_CHANNELS,
    TABLE_LIMIT,
    codes_of,
    dense_inputs,
    episode_codes,
    observation_cells,
    orbit_rows,
    previous_rewards,
    representatives,
    reward_levels,
    start_code,
    table_pays,
    torus_translations,
    universe,
)
from recip_tourney.agents.default_init import default_bound, seeded_uniform
from recip_tourney.agents.torus_conv import CirculantConv

__all__ = [
    "ACTIONS", "ALIGN", "CHANNELS", "HEAD_PARAMS", "KERNEL", "OBS_CHANNELS", "TABLE_LIMIT",
    "TOWERS", "TOWER_PARAMS", "Acting", "Gates", "MFOSNets", "codes_of", "dense_inputs",
    "each", "episode_codes", "group_mean", "observation_cells", "orbit_rows",
    "previous_rewards", "representatives", "reward_levels", "start_code", "table_pays",
    "torus_translations", "universe",
]

ACTIONS = 5
KERNEL = 3
"""The convs' kernel side on every grid (the original's 3 x 3, not
:func:`recip_tourney.agents.torus_conv.kernel_size`)."""
TOWERS = ("a", "v", "t")
TOWER_PARAMS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "linear.weight",
                "linear.bias", "gru.weight_ih", "gru.weight_hh", "gru.bias_ih", "gru.bias_hh")
HEAD_PARAMS = ("actor.weight", "actor.bias", "critic.weight", "critic.bias", "theta.weight",
               "theta.bias")


def _circulant(cin: int, cout: int, grid: int, device: torch.device) -> CirculantConv:
    """The dense-matrix form of a 3 x 3 circular conv, its index tensors on ``device``."""
    return CirculantConv(cin, cout, grid, KERNEL, device)


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
        Where the parameters live (default: the CPU; :attr:`device` is read from them).
        The initial weights are drawn on the CPU and moved there.

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
        device = torch.device("cpu") if device is None else torch.device(device)
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
        self.params = [self._draw(g, device) for g in generators]
        self.conv1 = _circulant(CHANNELS, n, grid, device)
        self.conv2 = _circulant(n, n, grid, device)
        shift = torus_translations(grid, device)[0]
        offsets = (torch.arange(n, device=device) * self.cells).view(1, n, 1)
        # [tau, (c, p)] -> (c, shift[tau, p]): the linear layer's columns seen from an orbit
        # representative moved by tau
        self.shifted = (offsets + shift.unsqueeze(1)).reshape(self.cells, feat)
        self._acting: Acting | None = None

    def _draw(self, generator: torch.Generator, device: torch.device
              ) -> dict[str, torch.Tensor]:
        """One seed's parameters: towers a, v, t (each in TOWER_PARAMS order), then heads;
        drawn on the generator's device (the CPU), then moved to ``device``."""
        drawn: dict[str, list[torch.Tensor]] = {name: [] for name in TOWER_PARAMS}
        for _ in TOWERS:
            for name in TOWER_PARAMS:
                drawn[name].append(self._uniform(name, generator, device))
        params = {f"towers.{name}": torch.stack(v) for name, v in drawn.items()}
        for name in HEAD_PARAMS:
            params[name] = self._uniform(name, generator, device)
        return params

    def _uniform(self, name: str, generator: torch.Generator, device: torch.device
                 ) -> torch.Tensor:
        shape, fan_in = self.shapes[name]
        bound = default_bound(self.hidden if name.startswith("gru") else fan_in)
        draw = seeded_uniform(shape, bound, [generator])[0]
        return draw.to(dtype=self.dtype, device=device)

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

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.params[0]["theta.weight"].device

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

    def working(self) -> Working:
        """The working matrices of the current parameters (differentiable)."""
        def towers(name: str) -> torch.Tensor:
            stacked = torch.stack([p[f"towers.{name}"] for p in self.params], dim=1)
            return stacked.flatten(0, 1)

        cells, n = self.cells, self.hidden
        models = len(TOWERS) * self.seeds
        wl, bl = towers("linear.weight"), towers("linear.bias").unsqueeze(1)
        if self.table:  # (M, n g^2, g^2 n): column block tau = the layer seen from tau
            wl = wl[:, :, self.shifted].permute(0, 3, 2, 1)
            wl = wl.reshape(models, n * cells, cells * n)
            bl = bl.repeat(1, 1, cells)
        else:
            wl = wl.transpose(1, 2)
        wih, whh = towers("gru.weight_ih"), towers("gru.weight_hh")
        bih, bhh = towers("gru.bias_ih"), towers("gru.bias_hh")
        return Working(
            d1=self.conv1.dense(towers("conv1.weight").flatten(1)),
            b1=towers("conv1.bias").repeat_interleave(cells, dim=1).unsqueeze(1),
            d2=self.conv2.dense(towers("conv2.weight").flatten(1)),
            b2=towers("conv2.bias").repeat_interleave(cells, dim=1).unsqueeze(1),
            wl=wl, bl=bl,
            wih=torch.cat([wih[:, : 2 * n], wih[:, 2 * n :] * 2], dim=1).transpose(1, 2),
            bih=torch.cat([bih[:, : 2 * n] + bhh[:, : 2 * n], bih[:, 2 * n :] * 2],
                          dim=1).unsqueeze(1),
            whr=whh[:, :n].transpose(1, 2), whz=whh[:, n : 2 * n].transpose(1, 2),
            whn=(whh[:, 2 * n :] * 2).transpose(1, 2), bhn=(bhh[:, 2 * n :] * 2).unsqueeze(1),
            heads={k: torch.stack([p[k] for p in self.params]) for k in HEAD_PARAMS},
        )  # fmt: skip

    def _towers(self, w: Working, which: tuple[int, ...]) -> Working:
        """The working matrices of some towers only (the models of those towers)."""
        seeds = self.seeds

        def pick(x: torch.Tensor) -> torch.Tensor:
            if which == tuple(range(len(TOWERS))):
                return x
            return torch.cat([x[t * seeds : (t + 1) * seeds] for t in which])

        fields = {k: pick(getattr(w, k)) for k in ("d1", "b1", "d2", "b2", "wl", "bl", "wih",
                                                   "bih", "whr", "whz", "whn", "bhn")}
        return Working(**fields, heads=w.heads)

    def encode(self, w: Working, x: torch.Tensor) -> Gates:
        """The GRU input projections (M, R', n) x 3 of rows x (M, R, 7 g^2); in table mode the
        rows are orbit representatives and R' = R g^2 (one row per translation)."""
        a1 = torch.baddbmm(w.b1, x, w.d1).relu_()
        a2 = torch.baddbmm(w.b2, a1, w.d2).relu_()
        e = torch.baddbmm(w.bl, a2, w.wl).relu_().reshape(x.shape[0], -1, self.hidden)
        gi = torch.baddbmm(w.bih, e, w.wih)
        return tuple(g.contiguous() for g in gi.split(self.hidden, -1))  # type: ignore[return-value]

    def table_rows(self, w: Working) -> Gates:
        """The input projections of every table row, (M, rows, n) x 3."""
        x = universe(self.grid, self.dtype, self.device)
        return self.encode(w, x.expand(w.d1.shape[0], *x.shape))

    def projections(self, w: Working, cells: torch.Tensor, codes: torch.Tensor,
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
    def run_gru(gates: Gates, w: Working) -> torch.Tensor:
        """Outputs (M, T, B, n) of the GRUs over input projections (M, T, B, n) x 3 from
        h = 0."""
        models, _, batch, n = gates[0].shape
        h = gates[0].new_zeros(models, batch, n)
        outs = []
        # unbind: one backward for all steps (gi[:, t] would zero-fill T steps per step)
        for step in zip(*(g.unbind(1) for g in gates), strict=True):
            h = gru_step(step, h, w)
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
            hidden = gru_step(gates, hidden, w)
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
