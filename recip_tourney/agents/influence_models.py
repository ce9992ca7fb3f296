"""The seven models of the Coins value-influence estimator, fused over models and seeds.

The estimator (:class:`~recip_tourney.agents.coins_influence.CoinsVoI`, rollout spec 5.3.3)
holds, per seed:

* ``V``: the conv critic (:mod:`recip_tourney.agents.influence_critic`) of the one-hot
  state, fit to both players' discounted returns (MSE);
* ``R``, ``R-0``, ``R-1``: MLPs ``in -> 64 -> 64 -> 2`` fit to the rewards (MSE) from
  ``x_t`` (39 features, :mod:`recip_tourney.agents.influence_features`) and from the
  counterfactual ``x^{-u}_t`` without ``a^u_t`` (38 features);
* ``P``, ``P-0``, ``P-1``: MLPs ``in -> 64 -> 64 -> 36``, read as 4 heads x 9 cells with a
  log-softmax per head, fit (NLL averaged over the 4 N (sample, head) rows) to the cells of
  the next state.

:class:`InfluenceModels` keeps every parameter of every model and seed in one flat tensor
and trains them side by side, one minibatch of each per step, with the forward and backward
passes written out as batched matrix products (activations stored features x rows, so the
per-head softmax and the bias sums run along contiguous rows) and one hand-written Adam step
(``torch.optim.Adam``'s update) on the flat tensor; it also evaluates them on an episode
(:meth:`InfluenceModels.predict`, :meth:`InfluenceModels.value_table`). For speed:

* the six MLPs are one stack (model x seed): a counterfactual model is a 39-input model
  whose input column ``a^u`` is zeroed and whose weight column starts at zero; that column
  then gets an exactly zero gradient and Adam state and stays zero, so the model is the
  38-input MLP (its other weights drawn with the 38-input bound);
* the critic runs in the Fourier basis of the torus and on each minibatch's distinct
  states only (:mod:`recip_tourney.agents.influence_critic`);
* the first layers' biases ride in the matrix products (a constant-1 input column), the
  MLPs' inputs are gathered from one table of all samples, and the large activations live
  in scratch buffers reused by every step of a fit.

Each seed has its own weights and Adam state, and every product is per model and seed, so
seed ``s``'s numbers do not depend on which seeds share the batch (with one torch thread).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from recip_tourney.agents.default_init import default_bias, kaiming_weight
from recip_tourney.agents.influence_critic import (
    CRITIC_BLOCKS,
    CriticWeights,
    FourierCritic,
    affine,
    relu_grad,
)
from recip_tourney.agents.influence_features import (
    CELLS,
    CHANNELS,
    COLUMNS,
    FEATURES,
    GRID,
    ONE,
    PLAYERS,
    STATE_FEATURES,
    SampleTables,
    all_states,
    features,
    state_labels,
    with_one,
)
from recip_tourney.device import upload

#: Model names, in the reference's fitting order.
MODELS = ("V", "R", "R-0", "R-1", "P", "P-0", "P-1")
MLP_MODELS = MODELS[1:]
#: The action column each MLP does not see (``None``: the joint model).
DROPPED_ACTION = (None, 0, 1, None, 0, 1)


class InfluenceModels:
    """The estimator's seven models (:data:`MODELS`) of S seeds, with their Adam state.

    Parameters
    ----------
    generators : list of torch.Generator
        One per seed: draws its initial weights, model by model in :data:`MODELS` order,
        layer by layer, weight then bias, as ``nn.Linear`` / ``nn.Conv2d`` do
        (:func:`~recip_tourney.agents.default_init.kaiming_weight`, ``default_bias``).
    lr : float
        Adam step size of every model.
    hidden, channels : int
        MLP and critic width and the critic's conv channels.
    value_time : bool
        Whether the critic's first linear layer also takes ``tau`` (``Linear(9C + 1, H)``).
    dtype : torch.dtype
    betas, eps : tuple of float, float
        Adam's, as ``torch.optim.Adam``.
    device : torch.device or str, optional
        Where the parameters, Adam's state and the fits live (default: the CPU). The initial
        weights are drawn on the CPU from the seeds' generators and moved there.

    Attributes
    ----------
    flat : Tensor
        Every parameter of every model and seed (blocks named as in :meth:`view`);
        :meth:`parameters` gives one model of one seed.
    grad, exp_avg, exp_avg_sq : Tensor
        Shaped like :attr:`flat`: the last step's gradient and Adam's moments.
    adam_steps : list of int
        Adam steps taken by each model.
    """

    def __init__(
        self,
        generators: list[torch.Generator],
        *,
        lr: float = 0.01,
        hidden: int = 64,
        channels: int = 16,
        value_time: bool = False,
        dtype: torch.dtype = torch.float32,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        device: torch.device | str | None = None,
    ) -> None:
        device = torch.device("cpu") if device is None else torch.device(device)
        self.generators = generators
        self.seeds = s = len(generators)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.hidden, self.channels = h, c = hidden, channels
        self.value_time, self.dtype = value_time, dtype

        self._shapes: dict[str, tuple[int, ...]] = {
            "mlp.w1": (6, s, h, COLUMNS),  # the bias in column ONE
            "mlp.w2": (6, s, h, h), "mlp.b2": (6, s, h),
            "r.w3": (3, s, PLAYERS, h), "r.b3": (3, s, PLAYERS),
            "p.w3": (3, s, STATE_FEATURES, h), "p.b3": (3, s, STATE_FEATURES),
            "v.k1": (s, c, CHANNELS, GRID, GRID), "v.b1": (s, c),
            "v.k2": (s, c, c, GRID, GRID), "v.b2": (s, c),
            "v.w3": (s, h, c * CELLS + int(value_time)), "v.b3": (s, h),
            "v.w4": (s, PLAYERS, h), "v.b4": (s, PLAYERS),
        }
        self._offsets: dict[str, tuple[int, int]] = {}
        total = 0
        for name, shape in self._shapes.items():
            self._offsets[name] = (total, total + math.prod(shape))
            total += math.prod(shape)
        # drawn on the CPU (the seeds' generators), then moved
        self.flat = torch.zeros(total, dtype=dtype, device="cpu")
        self._initialise()
        self.flat = self.flat.to(device)
        self.grad = torch.zeros(total, dtype=dtype, device=device)
        self.exp_avg = torch.zeros(total, dtype=dtype, device=device)
        self.exp_avg_sq = torch.zeros(total, dtype=dtype, device=device)
        self.adam_steps = [0] * len(MODELS)
        self._scratch: dict[str, torch.Tensor] = {}
        self._model_of = self._element_models()
        self._critic = FourierCritic.build(c, h, value_time, dtype, device)
        mask = torch.ones(6, 1, 1, COLUMNS, dtype=dtype, device=device)
        for m, dropped in enumerate(DROPPED_ACTION):
            if dropped is not None:
                mask[m, ..., dropped] = 0.0
        self._input_mask = mask

    # ------------------------------------------------------------------ parameters

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.flat.device

    def _element_models(self) -> torch.Tensor:
        """The model (index in :data:`MODELS`) of every element of :attr:`flat`."""
        out = torch.empty(self.flat.numel(), dtype=torch.long, device=self.device)
        for name, shape in self._shapes.items():
            lo, hi = self._offsets[name]
            if name.startswith("v."):
                out[lo:hi] = 0
            else:
                first = 1 if name.startswith(("mlp.", "r.")) else 4
                out[lo:hi] = (torch.arange(shape[0], device=self.device) + first).repeat_interleave(
                    math.prod(shape[1:]))
        return out

    def __getstate__(self) -> dict[str, Any]:
        # scratch is per fit; a checkpoint need not carry it
        return {**self.__dict__, "_scratch": {}}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A contiguous scratch tensor reused by the steps of a fit (no allocation per step:
        the storage only grows)."""
        size = math.prod(shape)
        buffer = self._scratch.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._scratch[name] = torch.empty(size, dtype=self.dtype,
                                                       device=self.device)
        return buffer[:size].view(shape)

    def view(self, name: str, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Block ``name`` of ``flat`` (default :attr:`flat`) as a view: ``"mlp.w1"`` ...
        ``"p.b3"`` (model x seed first: MLP models in :data:`MLP_MODELS` order, ``r.`` the
        three reward heads, ``p.`` the three transition heads), ``"v.k1"`` ... ``"v.b4"``
        (seed first; kernels ``(S, C_out, C_in, 3, 3)``)."""
        lo, hi = self._offsets[name]
        return (self.flat if flat is None else flat)[lo:hi].view(self._shapes[name])

    def _initialise(self) -> None:
        """Draw every seed's weights as ``nn.Linear`` / ``nn.Conv2d`` do (zero dropped column)."""
        h, dtype = self.hidden, self.dtype
        for s, g in enumerate(self.generators):
            for w_name in ("v.k1", "v.k2", "v.w3", "v.w4"):
                w = self.view(w_name)[s]
                w.copy_(kaiming_weight(tuple(w.shape), g, dtype))
                self.view(w_name.replace(".w", ".b").replace(".k", ".b"))[s].copy_(
                    default_bias(w.shape[0], w[0].numel(), g, dtype))
            for m, dropped in enumerate(DROPPED_ACTION):
                fan_in = FEATURES - (dropped is not None)
                keep = [i for i in range(FEATURES) if i != dropped]
                self.view("mlp.w1")[m, s, :, keep] = kaiming_weight((h, fan_in), g, dtype)
                self.view("mlp.w1")[m, s, :, ONE] = default_bias(h, fan_in, g, dtype)
                self.view("mlp.w2")[m, s] = kaiming_weight((h, h), g, dtype)
                self.view("mlp.b2")[m, s] = default_bias(h, h, g, dtype)
                head = "r" if m < 3 else "p"
                w3 = self.view(f"{head}.w3")[m % 3, s]
                w3.copy_(kaiming_weight(tuple(w3.shape), g, dtype))
                self.view(f"{head}.b3")[m % 3, s] = default_bias(w3.shape[0], h, g, dtype)

    def parameters(self, model: str, seed: int) -> dict[str, torch.Tensor]:
        """One model's parameters for one seed, named as the equivalent ``nn.Sequential``.

        MLPs: ``Linear, ReLU, Linear, ReLU, Linear`` (keys ``0.``, ``2.``, ``4.``), the
        counterfactual ones with 38 inputs (the dropped column removed; copies). Critic
        (``"V"``): ``Conv2d, ReLU, Conv2d, ReLU, Flatten, Linear, ReLU, Linear`` (keys
        ``0.``, ``2.``, ``5.``, ``7.``; with ``value_time`` the ``5.`` weight has the tau
        column last); views.
        """
        if model == "V":
            names = (("0", "v.k1", "v.b1"), ("2", "v.k2", "v.b2"),
                     ("5", "v.w3", "v.b3"), ("7", "v.w4", "v.b4"))
            out = {}
            for key, w, b in names:
                out[f"{key}.weight"] = self.view(w)[seed]
                out[f"{key}.bias"] = self.view(b)[seed]
            return out
        m = MLP_MODELS.index(model)
        dropped = DROPPED_ACTION[m]
        keep = [i for i in range(FEATURES) if i != dropped]
        head = "r" if m < 3 else "p"
        return {
            "0.weight": self.view("mlp.w1")[m, seed][:, keep],
            "0.bias": self.view("mlp.w1")[m, seed][:, ONE],
            "2.weight": self.view("mlp.w2")[m, seed],
            "2.bias": self.view("mlp.b2")[m, seed],
            "4.weight": self.view(f"{head}.w3")[m % 3, seed],
            "4.bias": self.view(f"{head}.b3")[m % 3, seed],
        }

    def _adam(self, active: list[bool]) -> None:
        """``torch.optim.Adam``'s update (no weight decay) of every active model and seed."""
        beta1, beta2 = self.betas
        for m, on in enumerate(active):
            self.adam_steps[m] += on
        grad = self.grad
        if all(active) and len(set(self.adam_steps)) == 1:
            n = self.adam_steps[0]
            self.exp_avg.lerp_(grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**n)).add_(self.eps)
            self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - beta1**n))
            return
        # models at different step counts, or sitting this step out (small buffers only)
        # small host tensors, copied without waiting for the device
        steps = upload(torch.tensor(self.adam_steps, dtype=torch.float64, device="cpu"),
                       self.device)
        on = upload(torch.tensor(active, device="cpu"), self.device)[self._model_of]
        c1 = (1 - beta1**steps).to(self.dtype)[self._model_of]
        c2 = (1 - beta2**steps).sqrt().to(self.dtype)[self._model_of]
        exp_avg = torch.lerp(self.exp_avg, grad, 1 - beta1)
        exp_avg_sq = (self.exp_avg_sq * beta2).addcmul_(grad, grad, value=1 - beta2)
        self.exp_avg = torch.where(on, exp_avg, self.exp_avg)
        self.exp_avg_sq = torch.where(on, exp_avg_sq, self.exp_avg_sq)
        step = self.exp_avg / (self.exp_avg_sq.sqrt() / c2).add_(self.eps) * (self.lr / c1)
        self.flat.sub_(torch.where(on, step, 0.0))

    # ------------------------------------------------------------------ the MLPs

    def _mlp_layers(self) -> tuple[torch.Tensor, ...]:
        """The six MLPs' parameters as (6 S | 3 S, out, in) weights and (.., out, 1) biases
        (the first layer's bias is its weight's column ``ONE``)."""
        n6, n3, h = 6 * self.seeds, 3 * self.seeds, self.hidden
        return (self.view("mlp.w1").view(n6, h, COLUMNS),
                self.view("mlp.w2").view(n6, h, h), self.view("mlp.b2").view(n6, h, 1),
                self.view("r.w3").view(n3, PLAYERS, h), self.view("r.b3").view(n3, PLAYERS, 1),
                self.view("p.w3").view(n3, STATE_FEATURES, h),
                self.view("p.b3").view(n3, STATE_FEATURES, 1))

    def _mlp_step(self, x: torch.Tensor, r_target: torch.Tensor, p_target: torch.Tensor,
                  weights: torch.Tensor, group: int) -> None:
        """Forward and backward of three of the six MLPs on a minibatch each; gradients into
        :attr:`grad`. ``group`` 0: the reward models, 1: the transition models (disjoint
        blocks of every tensor, so the two groups may run side by side).

        ``x`` (6 S, mb, 40) masked inputs (and 1); targets (3 S, mb, 2) and (3 S, mb, 4) long;
        ``weights`` (6, mb).
        """
        n6, mb = x.shape[:2]
        n3, h, grad = n6 // 2, self.hidden, self.grad
        rows = slice(group * n3, (group + 1) * n3)
        w1, w2, b2, w3r, b3r, w3p, b3p = self._mlp_layers()
        w1, w2, b2, x = w1[rows], w2[rows], b2[rows], x[rows]
        size = (n3, h, mb)
        h1 = torch.bmm(w1, x.transpose(1, 2), out=self._buffer(f"h1.{group}", size)).relu_()
        h2 = torch.bmm(w2, h1, out=self._buffer(f"h2.{group}", size)).add_(b2).relu_()
        d_h2 = self._buffer(f"d_h2.{group}", size)
        if group == 0:
            # MSE over the mb x 2 entries: d/d out = 2 (out - r) / (2 mb)
            d_r = affine(w3r, b3r, h2).sub_(r_target.transpose(1, 2))
            d_r = d_r.view(3, -1, PLAYERS, mb).mul_(weights[:3].view(3, 1, 1, mb))
            d_r = d_r.view(n3, -1, mb)
            torch.bmm(d_r, h2.transpose(1, 2), out=self.view("r.w3", grad).view(n3, PLAYERS, h))
            torch.sum(d_r, 2, out=self.view("r.b3", grad).view(n3, PLAYERS))
            # R's 2-row product as two outer products (a K = 2 matrix product is slow)
            w3r_t = w3r.transpose(1, 2)
            torch.mul(w3r_t[..., :1], d_r[:, :1], out=d_h2).addcmul_(w3r_t[..., 1:], d_r[:, 1:])
        else:
            # NLL over the mb x 4 (row, head) pairs: d/d logits = (softmax - onehot) / (4 mb)
            d_p = affine(w3p, b3p, h2).view(n3, CHANNELS, CELLS, mb).softmax(2)
            d_p.scatter_add_(2, p_target.transpose(1, 2).unsqueeze(2),
                             torch.full((n3, CHANNELS, 1, mb), -1.0, dtype=d_p.dtype,
                                        device=d_p.device))
            d_p = d_p.view(3, -1, STATE_FEATURES, mb).mul_(weights[3:].view(3, 1, 1, mb) * 0.25)
            d_p = d_p.view(n3, STATE_FEATURES, mb)
            torch.bmm(d_p, h2.transpose(1, 2),
                      out=self.view("p.w3", grad).view(n3, STATE_FEATURES, h))
            torch.sum(d_p, 2, out=self.view("p.b3", grad).view(n3, STATE_FEATURES))
            torch.bmm(w3p.transpose(1, 2), d_p, out=d_h2)
        d_h2 = relu_grad(d_h2, h2)
        torch.bmm(d_h2, h1.transpose(1, 2), out=self.view("mlp.w2", grad).view(n6, h, h)[rows])
        torch.sum(d_h2, 2, out=self.view("mlp.b2", grad).view(n6, h)[rows])
        d_h1 = torch.bmm(w2.transpose(1, 2), d_h2, out=self._buffer(f"d_h1.{group}", size))
        d_h1 = relu_grad(d_h1, h1)
        # (x^T d_h1^T)^T: the faster orientation of this product
        d_w1 = torch.bmm(x.transpose(1, 2), d_h1.transpose(1, 2))  # (3 S, 40, H)
        self.view("mlp.w1", grad).view(n6, h, COLUMNS)[rows].copy_(d_w1.transpose(1, 2))

    def _mlp_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The six MLPs on the same rows ``x`` (S, n, 39) (unmasked).

        Returns
        -------
        rewards : Tensor, (3, S, 2, n)
            ``R``, ``R-0``, ``R-1``.
        logits : Tensor, (3, S, 4, 9, n)
            ``P``, ``P-0``, ``P-1`` (heads x cells x rows).
        """
        seeds, n = x.shape[:2]
        n6, n3 = 6 * seeds, 3 * seeds
        w1, w2, b2, w3r, b3r, w3p, b3p = self._mlp_layers()
        xm = (with_one(x).unsqueeze(0) * self._input_mask).view(n6, n, COLUMNS)
        h = torch.bmm(w1, xm.transpose(1, 2)).relu_()
        h = affine(w2, b2, h).relu_()
        r = affine(w3r, b3r, h[:n3])
        p = affine(w3p, b3p, h[n3:])
        return r.view(3, seeds, PLAYERS, n), p.view(3, seeds, CHANNELS, CELLS, n)

    def _query_inputs(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``x_t`` (``tau = T - 1 - t``) of an episode per seed, (S, T B, 39), time-major."""
        labels = state_labels(states)
        steps = labels.shape[0]
        tau = (steps - 1 - torch.arange(steps, dtype=self.dtype, device=labels.device)
               ).view(-1, 1, 1)
        x = features(labels, actions, tau, self.dtype)
        return x.transpose(0, 1).flatten(1, 2)

    def predict(self, states: torch.Tensor, actions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reward and transition models on an episode (queried with ``tau = T - 1 - t``).

        Parameters
        ----------
        states : Tensor, (T, S, B, 4) labels or one-hot (T, S, B, 4, 3, 3) / (T, S, B, 36)
        actions : Tensor of long, (T, S, B, 2)

        Returns
        -------
        rewards : Tensor, (3, T, S, B, 2)
            ``R(x_t)``, ``R^{-0}(x^{-0}_t)``, ``R^{-1}(x^{-1}_t)``.
        probs : Tensor, (3, T, S, B, 4, 9)
            Per-head next-cell probabilities of ``P``, ``P^{-0}``, ``P^{-1}``.
        """
        with torch.no_grad():
            r, logits = self._mlp_forward(self._query_inputs(states, actions))
        steps, _, games = actions.shape[:3]
        r = r.movedim(-1, 2).unflatten(2, (steps, games))  # (3, S, T, B, 2)
        p = logits.softmax(3).movedim(-1, 2).unflatten(2, (steps, games))
        return r.transpose(1, 2), p.transpose(1, 2)

    # ------------------------------------------------------------------ the critic

    def _value_weights(self) -> CriticWeights:
        """The critic's parameters in the forms of its passes (see :class:`~recip_tourney.
        agents.influence_critic.CriticWeights`)."""
        params = {name: self.view(f"v.{name}") for name in CRITIC_BLOCKS}
        return self._critic.weights(params)

    def _value_step(self, tables: SampleTables, index: torch.Tensor, weights: torch.Tensor
                    ) -> None:
        """The critic's gradient on each seed's minibatch into :attr:`grad` (``index`` (S, mb):
        table rows; ``weights`` (mb,): 1 / rows, 0 on padding; :meth:`~recip_tourney.agents.
        influence_critic.FourierCritic.minibatch_gradient`)."""
        grads = {name: self.view(f"v.{name}", self.grad) for name in CRITIC_BLOCKS}
        self._critic.minibatch_gradient(self._value_weights(), tables, index, weights, grads,
                                        self._buffer)

    def value_table(self, taus: torch.Tensor | None = None) -> torch.Tensor:
        """``V`` on all 6561 states (flat index ``729 l0 + 81 l1 + 9 l2 + l3``).

        Parameters
        ----------
        taus : Tensor, (K,), optional
            With ``value_time``: the steps remaining to evaluate at (a negative one, past
            the end of the episode, gives 0).

        Returns
        -------
        Tensor, (S, 6561, 2), or (S, K, 6561, 2) with ``value_time``
        """
        with torch.no_grad():
            x = all_states(self.dtype, self.device).expand(self.seeds, -1, -1)
            return self._critic.values(self._value_weights(), x, taus).transpose(-1, -2)

