"""Learned value influence from reward and future-value models, for any Coin Game.

This is the reference code's ``ValueOfInfluence`` (rollout spec 5.3.2), the estimator its
trainer uses whenever the game is not the 2-player 3 x 3 one (where
:class:`~recip_tourney.agents.coins_influence.CoinsVoI` enumerates the next states). It
needs no enumeration, so it works on any torus. For ``n`` players it holds ``2 n + 2``
MLPs (``in -> hidden -> hidden -> n``), every one predicting a value for every player:

* ``R`` fit to the rewards ``r_t`` from ``x_t = [a_t, vec(s_t), tau_t]`` (raw action
  indices as floats, the one-hot canonical state, the steps remaining ``T - 1 - t``);
* ``R-u`` (one per player ``u``) fit to ``r_t`` from ``x^{-u}_t``, the same input without
  ``a^u_t``; regression on the buffer then marginalises ``a^u`` under the behaviour of the
  last ``buffer_episodes`` episodes;
* ``Q`` and ``Q-u``, the same, fit to the future part of the return ``G_t - r_t``.

The influence of ``u`` on ``v`` is

``VI^{u->v}_t = [R_v(x_t) - R^{-u}_v(x^{-u}_t)] + c [Q_v(x_t) - Q^{-u}_v(x^{-u}_t)]``,

with ``c = gamma`` as in the reference (``double_discount=True``, spec 8 item 13: the target
``G_t - r_t = gamma G_{t+1}`` is already discounted, so the future is discounted twice) or
``c = 1`` (``double_discount=False``, the corrected form).

Fits follow spec 5.3.4: after episodes 1, 2, 4, 6, ..., each model draws a fresh subsample of
``samples`` buffer samples, then trains ``epochs`` epochs of shuffled minibatches with Adam;
models are never re-initialised. All seeds and models train at once as stacked matrices
(autograd and ``torch.optim.Adam``, both elementwise across the stack), each seed from its
own generator, so a seed's numbers do not depend on which seeds share the batch. A
counterfactual model is stored at the full input width with a zero row where its dropped
action would be: that row meets only zero inputs, so its gradient and Adam step are zero and
the model is exactly the narrower one (initialised, as ``nn.Linear`` is, for its own width).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import torch

from recip_tourney.agents.default_init import default_bias, kaiming_weight
from recip_tourney.agents.influence_schedule import fit_due
from recip_tourney.agents.returns import discounted_returns
from recip_tourney.device import upload

if TYPE_CHECKING:
    from recip_tourney.tournament.match import SidePool


def model_names(players: int) -> list[str]:
    """The models in order: ``R``, ``R-0`` .. ``R-(n-1)``, ``Q``, ``Q-0`` .. ``Q-(n-1)``."""
    return [f"{kind}{suffix}" for kind in "RQ"
            for suffix in ["", *(f"-{u}" for u in range(players))]]


def joint_features(labels: torch.Tensor, actions: torch.Tensor, cells: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """``x_t = [a_t, vec(s_t), tau_t]`` of an episode (spec 5.3.1).

    Parameters
    ----------
    labels : Tensor of long, (T, ..., 2 n)
        Cells (``0 .. cells - 1``) of agents ``0..n-1`` then coins ``0..n-1``: the canonical
        state, whose one-hot planes are channel ``k`` at ``cells k + label_k``.
    actions : Tensor of long, (T, ..., n)
    cells : int
        Cells of the torus, ``g * g``.

    Returns
    -------
    Tensor, (T, ..., n + 2 n cells + 1), on the labels' device
    """
    steps, players, device = labels.shape[0], actions.shape[-1], labels.device
    width = players + labels.shape[-1] * cells + 1
    out = torch.zeros(*labels.shape[:-1], width, dtype=dtype, device=device)
    out[..., :players] = actions
    offsets = torch.arange(labels.shape[-1], device=device) * cells + players
    out.scatter_(-1, labels.long() + offsets, 1.0)
    tau = steps - 1 - torch.arange(steps, dtype=dtype, device=device)
    tau = tau.view(steps, *[1] * (labels.dim() - 1))
    out[..., -1] = tau.squeeze(-1)
    return out


class FutureQInfluence:
    """Value-influence estimator from reward and future-value models (the reference's
    ``ValueOfInfluence``), ``S`` seeds at once.

    Parameters
    ----------
    generators : list of torch.Generator
        One per seed: its initial weights (model by model, layer by layer, weight then bias,
        drawn as ``nn.Linear`` does for the model's own input width), then every subsample
        and minibatch order of its fits.
    grid : int
        Side of the torus.
    players : int
        Players ``n`` (2 in the tournament).
    gamma : float
        Discount of the returns ``G_t`` (the agents', 0.99), and ``c`` with
        ``double_discount``.
    lr, samples, minibatch, epochs, buffer_episodes, init_episodes, period, hidden
        As :class:`~recip_tourney.agents.coins_influence.CoinsVoI` (spec 5.3.4, 7.2).
    double_discount : bool
        ``True`` (the reference, spec 8 item 13): the future part is multiplied by ``gamma``
        although its target is already ``gamma G_{t+1}``; ``False``: not.
    dtype : torch.dtype
    device : torch.device or str, optional
        Where the models, Adam's state, the buffer and the fits live (default: the CPU); the
        initial weights and every subsample and minibatch order are drawn on the CPU from
        the seeds' generators and copied over.

    Examples
    --------
    After each 1-based episode ``e`` (tensors ``(T, S, B, ...)``)::

        estimator.store(labels, actions, rewards)
        if estimator.due(e):
            estimator.fit()
        vi = estimator.influence(labels, actions)  # (T, S, B, n, n): [u, v] = u -> v
    """

    def __init__(
        self,
        generators: list[torch.Generator],
        *,
        grid: int,
        players: int = 2,
        gamma: float = 0.99,
        lr: float = 0.01,
        samples: int = 65536,
        minibatch: int = 4096,
        epochs: int = 20,
        buffer_episodes: int = 3,
        init_episodes: int = 2,
        period: int = 2,
        hidden: int = 64,
        double_discount: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        device = torch.device("cpu") if device is None else torch.device(device)
        self.generators = generators
        self.players, self.cells = players, grid * grid
        self.gamma, self.lr = gamma, lr
        self.samples, self.minibatch, self.epochs = samples, minibatch, epochs
        self.init_episodes, self.period = init_episodes, period
        self.double_discount = double_discount
        self.dtype = dtype
        self.names = model_names(players)
        self.features = players + 2 * players * self.cells + 1
        # mask[m, f] = 0 where model m's dropped action would be
        mask = torch.ones(len(self.names), self.features, dtype=dtype, device="cpu")
        for m, name in enumerate(self.names):
            if "-" in name:
                mask[m, int(name.split("-")[1])] = 0.0
        self.weights, self.biases = self._initial(hidden, mask, device)
        self.mask = mask.to(device)
        self.optimizer = torch.optim.Adam([*self.weights, *self.biases], lr=lr)
        self.buffer: deque[dict[str, torch.Tensor]] = deque(maxlen=buffer_episodes)
        self.fits = 0

    @property
    def seeds(self) -> int:
        """Seeds ``S`` estimated side by side."""
        return len(self.generators)

    @property
    def device(self) -> torch.device:
        """Where the models live."""
        return self.mask.device

    def _initial(self, hidden: int, mask: torch.Tensor, device: torch.device
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stacked ``(M, S, in, out)`` weights and ``(M, S, 1, out)`` biases of 3 layers,
        drawn on the CPU and moved to ``device``."""
        sizes = [(self.features, hidden), (hidden, hidden), (hidden, self.players)]
        weights = [torch.zeros(len(self.names), self.seeds, i, o, dtype=self.dtype, device="cpu")
                   for i, o in sizes]
        biases = [torch.zeros(len(self.names), self.seeds, 1, o, dtype=self.dtype, device="cpu")
                  for _, o in sizes]
        for s, g in enumerate(self.generators):
            for m in range(len(self.names)):
                kept = mask[m].nonzero().squeeze(1)
                for layer, (fan_in, out) in enumerate(sizes):
                    fan_in = len(kept) if layer == 0 else fan_in
                    w = kaiming_weight((out, fan_in), g, self.dtype).T
                    if layer == 0:
                        weights[0][m, s, kept] = w
                    else:
                        weights[layer][m, s] = w
                    biases[layer][m, s, 0] = default_bias(out, fan_in, g, self.dtype)
        return ([w.to(device).requires_grad_() for w in weights],
                [b.to(device).requires_grad_() for b in biases])

    # ------------------------------------------------------------------ data

    def due(self, episode: int) -> bool:
        """Whether to fit after 1-based episode ``episode`` (1, 2, 4, 6, ...; spec 5.3.4)."""
        return fit_due(episode, self.init_episodes, self.period)

    def store(self, labels: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
              ) -> None:
        """Push an episode (``(T, S, B, 2 n)`` labels, ``(T, S, B, n)`` actions and
        extrinsic rewards) into the buffer; the oldest leaves past ``buffer_episodes``."""
        rewards = rewards.detach().to(self.device, self.dtype)
        self.buffer.append({
            "x": joint_features(labels.to(self.device), actions.to(self.device), self.cells,
                                self.dtype),
            "rewards": rewards,
            "future": discounted_returns(rewards, self.gamma) - rewards,
        })

    def _table(self, key: str) -> torch.Tensor:
        """The buffer's ``key`` per seed, episodes side by side: (S, N, width)."""
        cat = torch.cat([episode[key] for episode in self.buffer], dim=2)  # (T, S, nB, w)
        return cat.transpose(0, 1).reshape(self.seeds, -1, cat.shape[-1])

    # ------------------------------------------------------------------ models

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every model's prediction: ``x`` (M, S, rows, in), masked by the caller ->
        (M, S, rows, n)."""
        h = x
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.matmul(h, w) + b
            if layer < len(self.weights) - 1:
                h = h.relu()
        return h

    def fit(self, pool: SidePool | None = None) -> None:
        """Fit every model of every seed on the buffer (spec 5.3.4); ``pool`` is unused (the
        models train as one stack)."""
        if not self.buffer:
            raise RuntimeError("FutureQInfluence: the buffer is empty (store an episode first)")
        x, rewards, future = self._table("x"), self._table("rewards"), self._table("future")
        rows, models = x.shape[1], len(self.names)
        size = min(self.samples, rows)
        half = models // 2
        subsamples = [[torch.randperm(rows, generator=g, device=g.device)[:size]
                       for _ in range(models)] for g in self.generators]
        steps = math.ceil(size / self.minibatch)
        seed_rows = torch.arange(self.seeds, device=self.device).view(1, self.seeds, 1)
        for _ in range(self.epochs):
            orders = upload(torch.stack([
                torch.stack([sub[torch.randperm(size, generator=g, device=g.device)]
                             for sub in subs])
                for g, subs in zip(self.generators, subsamples, strict=True)
            ], 1), self.device)  # (M, S, size), drawn on the CPU, copied once per epoch
            for j in range(steps):
                index = orders[..., j * self.minibatch: (j + 1) * self.minibatch]
                seed_index = seed_rows.expand_as(index)
                inputs = x[seed_index, index] * self.mask[:, None, None]
                targets = torch.cat((rewards[seed_index[:half], index[:half]],
                                     future[seed_index[half:], index[half:]]))
                loss = (self.forward(inputs) - targets).square().mean((2, 3)).sum()
                self.optimizer.zero_grad(set_to_none=False)
                loss.backward()
                self.optimizer.step()
        self.fits += 1

    # ------------------------------------------------------------------ queries

    def influence_parts(self, labels: torch.Tensor, actions: torch.Tensor, chunk: int = 8192
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """The immediate and future parts of every ordered pair's influence on an episode.

        Returns ``immediate[..., u, v] = R_v(x) - R^{-u}_v(x^{-u})`` and ``future[..., u, v]
        = Q_v(x) - Q^{-u}_v(x^{-u})``, each (T, S, B, n, n); ``chunk`` rows per seed are
        evaluated at once (it bounds the memory).
        """
        steps, seeds, games, n = actions.shape
        x = joint_features(labels.to(self.device), actions.to(self.device), self.cells,
                           self.dtype)
        x = x.transpose(0, 1).reshape(1, seeds, steps * games, -1)
        with torch.no_grad():
            y = torch.cat([self.forward(x[:, :, lo: lo + chunk] * self.mask[:, None, None])
                           for lo in range(0, steps * games, chunk)], dim=2)  # (M, S, T B, n)
        y = y.view(2, n + 1, seeds, steps, games, n).permute(0, 3, 2, 4, 1, 5)
        parts = y[:, ..., :1, :] - y[:, ..., 1:, :]  # (2, T, S, B, u, v)
        return parts[0].to(labels.device), parts[1].to(labels.device)

    def influence(self, labels: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``VI^{u->v}_t`` of every ordered pair on an episode: (T, S, B, n, n), ``[u, v]``."""
        immediate, future = self.influence_parts(labels, actions)
        return torch.add(immediate, future, alpha=self.gamma if self.double_discount else 1.0)
