"""PPO for the Coin Game on conv-encoder + GRU actors and critics, batched over seeds.

Rollout spec 4.1 (the PPO update) on the networks of spec 4.3
(:class:`~recip_tourney.agents.coins_gru.ConvGRUNets`: per seed an actor
``StateEncoder -> GRU -> ReLU -> Linear(H, 5) -> softmax`` and a critic with its own
encoder and GRU). One update per episode: Monte-Carlo reward-to-go (no bootstrap),
standardised per seed over its T x B samples with the unbiased std + eps, then K full-batch
epochs of Adam on ``mean[-min(rho A, clip(rho) A) - beta H] + 0.5 mean[(V - G)^2]``, where
each epoch re-runs both networks over the whole (T, B) sequences from a zero hidden state
and ``A = G - V`` is recomputed with the current critic.

How it is made fast (all exact up to float rounding; checked against ``torch.nn`` modules
and autograd in ``tests/test_coins_ppo.py``): the convs on the torus are dense matrices
gathered from their kernels (:mod:`recip_tourney.agents.torus_conv`); the 2 S networks of S
seeds run as one batch of models, and the encoder is evaluated as a table over the universe
of one-hot observations (:mod:`recip_tourney.agents.coins_gru`); forward and backward are
written out, feature-major, with no autograd (:mod:`recip_tourney.agents.coins_gru_passes`).
This module adds the loss's gradient at the networks' outputs, the Adam step on the flat
parameters, and acting step by step with a carried hidden state.

A seed's numbers never depend on the other seeds: every product and reduction is per model
(``bmm`` over the model axis, row sums as products with a vector of ones), and Adam is
elementwise, so with one torch thread (the tournament's worker numerics) a seed trains to
bit-identical weights alone or in a batch (tested). With more threads MKL may split one
product differently depending on the batch, which breaks this (not the results' accuracy).

Speed (``benchmarks/bench_coins_ppo.py``; 2 players, H = 32, B = 1024, T = 32, 40 epochs,
float32, one thread, on a shared 2-core AMD EPYC): about 2.7 s of CPU per update and 0.03 s
per acting episode for one seed; batching seeds does not lower the per-seed time here. The
table mode is about 2.6 times faster than the per-sample encoder (``table=False``). Memory:
about 100 MB of buffers per seed at these sizes.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import torch
from torch.nn import functional

from recip_tourney.agents.coins_gru import ConvGRUNets, WorkingWeights
from recip_tourney.agents.coins_gru_passes import (
    Workspace,
    backward,
    encode,
    expand_models,
    forward,
)
from recip_tourney.agents.coins_ppo_graph import EpochGradient, graphs_enabled
from recip_tourney.agents.flat_adam import adam_update
from recip_tourney.agents.returns import discounted_returns
from recip_tourney.device import check

__all__ = ["TABLE_LIMIT", "CoinsPPO", "ConvGRUNets"]

TABLE_LIMIT = 1 << 14
"""Largest observation universe evaluated as a table when ``table`` is left to choose."""


class CoinsPPO:
    """The reference's PPO (spec 4.1) on :class:`ConvGRUNets`, batched over seeds.

    Parameters
    ----------
    nets : ConvGRUNets
    lr, gamma, epochs, clip, entropy : float, float, int, float, float
        Adam step size, discount, full-batch epochs per update, ratio clip and entropy
        bonus (spec 4.3: 0.005, 0.99, 40, 0.15, 0.01).
    eps : float
        Added to the std when standardising the returns (spec 4.1: 1e-5).
    betas, adam_eps : tuple of float, float
        Adam's, as ``torch.optim.Adam`` (whose update this repeats on the flat tensor).
    table : bool or None
        Evaluate the encoder on the universe of one-hot observations (see
        :mod:`recip_tourney.agents.coins_gru`);
        None chooses it when there are at most :data:`TABLE_LIMIT` of them. In table mode
        observations must be one-hot in every channel (checked without waiting for the
        device: see :func:`~recip_tourney.device.check`).
    """

    def __init__(
        self,
        nets: ConvGRUNets,
        *,
        lr: float = 0.005,
        gamma: float = 0.99,
        epochs: int = 40,
        clip: float = 0.15,
        entropy: float = 0.01,
        eps: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        table: bool | None = None,
    ) -> None:
        self.nets = nets
        self.lr, self.gamma, self.epochs, self.clip, self.entropy, self.eps = (
            lr, gamma, epochs, clip, entropy, eps)
        self.betas, self.adam_eps = betas, adam_eps
        self.table = nets.n_observations <= TABLE_LIMIT if table is None else table
        self.steps = 0
        self.exp_avg = torch.zeros_like(nets.flat)
        self.exp_avg_sq = torch.zeros_like(nets.flat)
        self._hidden: torch.Tensor | None = None
        self._acting: tuple[WorkingWeights, torch.Tensor | None] | None = None
        self._minus_one = nets.flat.new_full((), -1.0)  # a fill: no copy to the device
        self._workspace: tuple[tuple[int, int, bool], Workspace] | None = None
        #: How epochs 2..K-1 of an update run: ``auto`` (a CUDA graph where
        #: :func:`~recip_tourney.agents.coins_ppo_graph.graphs_enabled`, else eagerly),
        #: ``graph``, ``static`` (the graph's buffers, no capture: for tests) or ``off``.
        self.graph_mode = "auto"
        self._epoch: EpochGradient | None = None
        self._epoch_ws: Workspace | None = None

    # ------------------------------------------------------------------ inputs

    def cells(self, obs: torch.Tensor, lead: int) -> torch.Tensor:
        """The cell of every channel, long ``(*obs.shape[:lead], C)``.

        ``obs`` holds one-hot planes ``(*lead, C, g, g)`` or ``(*lead, C g^2)`` (checked),
        or the cells themselves, long ``(*lead, C)``.
        """
        nets = self.nets
        shape = obs.shape[:lead]
        if not obs.is_floating_point():
            return obs.reshape(*shape, nets.in_channels)
        planes = obs.reshape(*shape, nets.in_channels, nets.cells)
        one_hot = (planes.sum(-1) == 1).all() & ((planes == 0) | (planes == 1)).all()
        check(one_hot, "table mode needs observations one-hot in every channel")
        return planes.argmax(-1)

    def features(self, obs: torch.Tensor, lead: int) -> torch.Tensor:
        """Observations as flat features ``(*lead, C g^2)`` of the nets' dtype."""
        nets = self.nets
        shape = obs.shape[:lead]
        if not obs.is_floating_point():
            cells = obs.reshape(*shape, nets.in_channels, 1)
            planes = torch.zeros(*shape, nets.in_channels, nets.cells, dtype=nets.dtype,
                                 device=obs.device)
            return planes.scatter_(-1, cells, 1).view(*shape, nets.features)
        return obs.reshape(*shape, nets.features).to(nets.dtype)

    def _inputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder input rows ``(M, R, F)`` of the M = 2 S models and, in table mode, the
        table row of every sample, ``(M, N)``."""
        steps, seeds, batch = obs.shape[:3]
        models = 2 * seeds
        if self.table:
            rows = self.nets.table_rows(self.cells(obs, 3))  # (T, S, B)
            rows = rows.transpose(0, 1).reshape(seeds, 1, steps * batch)
            index = rows.expand(-1, 2, -1).reshape(models, steps * batch)
            return expand_models(self.nets.table_inputs(), models), index
        feats = self.features(obs, 3).transpose(0, 1).reshape(seeds, steps * batch, -1)
        return expand_models(feats, models).contiguous(), None

    def standardised_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """Discounted reward-to-go of (T, S, B) rewards, standardised per seed over its
        T x B samples (unbiased std + eps); returned seed-major, ``(S, T B)``."""
        returns = discounted_returns(rewards.to(self.nets.dtype), self.gamma)
        rows = returns.transpose(0, 1).reshape(returns.shape[1], -1)
        # seed by seed: a seed's statistics do not depend on which seeds share the batch
        return torch.stack([(r - r.mean()) / (r.std() + self.eps) for r in rows.unbind(0)])

    # ------------------------------------------------------------------ loss

    def _loss_gradient(
        self, ws: Workspace, returns: torch.Tensor, actions: torch.Tensor,
        chosen: torch.Tensor, old: torch.Tensor | None, diagnose: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Gradients of every seed's PPO loss at the logits and values (spec 4.1).

        Per seed: ``mean(-min(rho A, clip(rho) A) - entropy H) + 0.5 mean((V - G)^2)``
        with ``A = G - V`` held constant. ``returns`` and ``actions`` are (S, 1, N),
        ``chosen`` the one-hot actions (S, 5, N); ``old``, the log-probabilities of the
        actions under theta_old, is taken from this forward when None.

        Returns
        -------
        d_logits (S, 5, N), d_values (S, 1, N), old (S, 1, N), diagnostics
        """
        samples = returns.shape[-1]
        logp = functional.log_softmax(ws.logits, dim=1)
        p = logp.exp()
        entropy = (p * logp).sum(1, keepdim=True).neg_()
        taken = logp.gather(1, actions)
        if old is None:
            old = taken.clone()
        ratio = (taken - old).exp_()
        adv = returns - ws.values
        keep = torch.where(adv > 0, ratio <= 1 + self.clip, ratio >= 1 - self.clip)
        coef = (adv * ratio).mul_(keep).div_(-samples)  # d loss / d log pi(a)
        d_logits = (logp + entropy).mul_(self.entropy / samples).sub_(coef).mul_(p)
        d_logits.addcmul_(chosen, coef)
        d_values = (ws.values - returns).div_(samples)
        diagnostics = {}
        if diagnose:
            clipped = ratio.clamp(1 - self.clip, 1 + self.clip)
            per_sample = {
                "policy_loss": -torch.minimum(ratio * adv, clipped * adv),
                "entropy": entropy,
                "value_loss": 0.5 * (ws.values - returns) ** 2,
                "approx_kl": old - taken,
                "clip_fraction": ((ratio - 1).abs() > self.clip).to(ratio.dtype),
            }
            diagnostics = {k: torch.stack([row.mean(dtype=torch.float64) for row in v.unbind(0)])
                           for k, v in per_sample.items()}
        return d_logits, d_values, old, diagnostics

    def __getstate__(self) -> dict[str, Any]:
        # scratch buffers and the acting cache are rebuilt from the parameters when needed:
        # a checkpoint need not carry them (the update buffers are ~100 MiB at paper sizes)
        return {**self.__dict__, "_workspace": None, "_acting": None, "_epoch": None,
                "_epoch_ws": None}

    def adam_step(self, grad: torch.Tensor) -> None:
        """``torch.optim.Adam``'s update (no weight decay, no amsgrad) on the flat tensor."""
        self.steps += 1
        adam_update(self.nets.flat, grad, self.exp_avg, self.exp_avg_sq, self.steps, self.lr,
                    self.betas, self.adam_eps)

    # ------------------------------------------------------------------ public

    def _prepare(
        self, obs: torch.Tensor
    ) -> tuple[Workspace, torch.Tensor, torch.Tensor | None]:
        nets = self.nets
        steps, seeds, batch = obs.shape[:3]
        x, index = self._inputs(obs)
        key = (steps, batch, self.table)
        if self._workspace is None or self._workspace[0] != key:  # reused across updates
            table = nets.n_observations if self.table else None
            self._workspace = (key, Workspace.allocate(seeds, steps, batch, table, nets.hidden,
                                                       nets.actions, nets.flat))
        return self._workspace[1], x, index

    def _weights(self) -> WorkingWeights:
        body = self.nets.split(self.nets.flat)[0]
        return self.nets.weights(body.view(2 * self.nets.seeds, -1), self.table)

    def update(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One PPO update (``epochs`` full-batch Adam steps) on an episode.

        Parameters
        ----------
        obs : Tensor, (T, S, B, C, g, g) or (T, S, B, C g^2)
            The observations the actions were chosen in (or cells, long (T, S, B, C)).
        actions : Tensor of long, (T, S, B)
        rewards : Tensor, (T, S, B)
            The rewards PPO learns from (extrinsic, or shaped by the caller).

        Returns
        -------
        dict of Tensor (S,), float64
            Per seed, at theta_old (the acting policy): ``policy_loss``, ``entropy`` and
            ``value_loss`` (means over the samples); from the last epoch's forward:
            ``approx_kl`` (mean of log pi_old - log pi) and ``clip_fraction``.
        """
        steps, seeds, batch = actions.shape
        samples = steps * batch
        returns = self.standardised_returns(rewards).unsqueeze(1)
        taken = actions.transpose(0, 1).reshape(seeds, 1, samples)
        chosen = torch.zeros(seeds, self.nets.actions, samples, dtype=self.nets.dtype,
                             device=self.nets.device)
        chosen.scatter_(1, taken, 1)
        ws, x, index = self._prepare(obs)
        old, diagnostics = None, {}
        for epoch in range(self.epochs):
            first, last = epoch == 0, epoch == self.epochs - 1
            if not (first or last) and self._epoch is not None:
                self.adam_step(self._epoch())  # the same epoch, replayed
                continue
            w = self._weights()
            enc = forward(self.nets, w, ws, x, index)
            d_logits, d_values, old, diag = self._loss_gradient(
                ws, returns, taken, chosen, old, first or last)
            if first:
                for key in ("policy_loss", "entropy", "value_loss"):
                    diagnostics[key] = diag[key]
            if last:
                for key in ("approx_kl", "clip_fraction"):
                    diagnostics[key] = diag[key]
            self.adam_step(backward(self.nets, w, ws, enc, index, d_logits, d_values))
            if first and self.epochs > 2:
                self._load_epoch(ws, {"x": x, "index": index, "returns": returns,
                                      "taken": taken, "chosen": chosen, "old": old})
        self._acting = None
        return diagnostics

    def _epoch_gradient(self, ws: Workspace, x: torch.Tensor, index: torch.Tensor | None,
                        returns: torch.Tensor, taken: torch.Tensor, chosen: torch.Tensor,
                        old: torch.Tensor) -> torch.Tensor:
        """One epoch's gradient after the first (``old`` fixed, no diagnostics)."""
        w = self._weights()
        enc = forward(self.nets, w, ws, x, index)
        d_logits, d_values, _, _ = self._loss_gradient(ws, returns, taken, chosen, old, False)
        return backward(self.nets, w, ws, enc, index, d_logits, d_values)

    def _load_epoch(self, ws: Workspace, inputs: dict[str, torch.Tensor | None]) -> None:
        """Give the replayed epoch this update's inputs (building it on first use)."""
        mode = self.graph_mode
        if mode == "auto":
            mode = "graph" if graphs_enabled(self.nets.device) else "off"
        if mode == "off":
            self._epoch = None
            return
        shared = frozenset({"x"}) if inputs["index"] is not None else frozenset()
        if (self._epoch is None or self._epoch_ws is not ws
                or self._epoch.key != EpochGradient.signature(inputs)):
            try:
                self._epoch = EpochGradient(partial(self._epoch_gradient, ws), inputs, shared,
                                            capture=mode == "graph")
            except RuntimeError as exc:  # a capture CUDA refused: run the epochs eagerly
                warnings.warn(f"PPO epochs run eagerly: CUDA graph capture failed ({exc})",
                              RuntimeWarning, stacklevel=2)
                self.graph_mode, self._epoch = "off", None
                return
            self._epoch_ws = ws
        else:
            self._epoch.load(inputs)

    def evaluate(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy probabilities (T, S, B, 5) and values (T, S, B) of the current networks
        on sequences of observations (T, S, B, ...) from a zero hidden state."""
        steps, seeds, batch = obs.shape[:3]
        with torch.no_grad():
            ws, x, index = self._prepare(obs)
            forward(self.nets, self._weights(), ws, x, index)
            probs = torch.softmax(ws.logits, dim=1).view(seeds, -1, steps, batch)
            values = ws.values.view(seeds, steps, batch)
        return probs.permute(2, 0, 3, 1), values.transpose(0, 1)

    def policy_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """Action probabilities (T, S, B, 5) on sequences of observations (T, S, B, ...)."""
        return self.evaluate(obs)[0]

    def begin_episode(self, batch: int) -> None:
        """Reset the acting hidden state of the B games of every seed to zero (and take the
        actor's current weights: acting uses theta_old throughout the episode)."""
        nets = self.nets
        self._acting = None
        self._hidden = nets.flat.new_zeros(nets.seeds, nets.hidden + 1, batch)
        self._hidden[:, nets.hidden] = 1

    def act(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One step of every seed's actor with the carried hidden state.

        Parameters
        ----------
        obs : Tensor, (S, B, C, g, g) or (S, B, C g^2)
            This step's observations (or cells, long (S, B, C)).
        noise : Tensor, (S, B)
            Uniform draws in [0, 1): the action is sampled by inverse CDF.

        Returns
        -------
        Tensor of long, (S, B)
        """
        if self._hidden is None:
            raise RuntimeError("call begin_episode before act")
        nets = self.nets
        seeds, batch = obs.shape[:2]
        h = nets.hidden
        with torch.no_grad():
            if self._acting is None:
                w = nets.weights(nets.split(nets.flat)[0][:, 0], self.table)
                table = None
                if self.table:
                    enc = encode(w, expand_models(nets.table_inputs(), seeds))
                    table = torch.baddbmm(w.bih, w.wih, enc.e.transpose(1, 2))
                self._acting = (w, table)
            w, table = self._acting
            if table is None:
                enc = encode(w, self.features(obs, 2))
                gi = torch.baddbmm(w.bih, w.wih, enc.e.transpose(1, 2))
            else:
                rows = nets.table_rows(self.cells(obs, 2)).view(seeds, 1, batch)
                gi = torch.gather(table, 2, rows.expand(-1, 3 * h, -1))
            prev = self._hidden
            gh = torch.bmm(w.whh, prev)
            rz = torch.add(gh[:, : 2 * h], gi[:, h:]).sigmoid_()
            s = torch.addcmul(gi[:, :h], rz[:, :h], gh[:, 2 * h :]).sigmoid_()
            n = torch.add(self._minus_one, s, alpha=2)
            hidden = prev.clone()
            torch.addcmul(n, rz[:, h:], prev[:, :h] - n, out=hidden[:, :h])
            self._hidden = hidden
            logits = torch.bmm(nets.heads()[0], hidden.clamp(min=0))
            cdf = torch.softmax(logits, dim=1).cumsum(1)
            return (cdf[:, :-1] <= noise.unsqueeze(1)).sum(1)
