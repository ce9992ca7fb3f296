"""Learned value influence of the 2-player 3 x 3 Coin Game (``CoinsVoI``), batched over seeds.

The estimator of the rollout spec (5.3.3, 5.3.4) holds seven models, trained on the last
``buffer_episodes`` episodes of joint play (canonical state ``s_t``, joint action ``a_t``,
joint rewards ``r_t``) and queried for the value influence of each player on each player
(:mod:`recip_tourney.agents.influence_models`): the conv critic ``V`` of the state, fit to
both players' discounted returns ``G_t``; reward models ``R``, ``R-0``, ``R-1`` fit to
``r_t`` from ``x_t = [a^0_t, a^1_t, vec(s_t), tau_t]`` (:mod:`recip_tourney.agents.
influence_features`) and from the counterfactual ``x^{-u}_t`` without ``a^u_t``; and
transition models ``P``, ``P-0``, ``P-1`` (4 heads x 9 cells) fit to the cells of
``s_{t+1}`` (``t < T - 1``: an episode's last step has no stored successor).

The influence of ``u`` on ``v`` is

``VI^{u->v}_t = [R_v(x_t) - R^{-u}_v(x^{-u}_t)]
+ gamma sum_l [prod_k P_k(l_k | x_t) - prod_k P^{-u}_k(l_k | x^{-u}_t)] V_v(S(l))``,

the sum over the 9^4 = 6561 tuples of cells. ``V`` is evaluated once on all 6561 states
and the sum is two matrix products: the outer product of heads 0 and 1 (81 numbers) times
``V`` as an 81 x 162 matrix, then a dot product with the outer product of heads 2 and 3
(:func:`~recip_tourney.agents.influence_critic.expected_values`).

Everything is stacked over seeds, and each seed has its own weights, Adam state, subsamples
and minibatches (drawn from its own generator; :mod:`recip_tourney.agents.
influence_schedule`), so seed ``s``'s numbers do not depend on which seeds share the batch
(with one torch thread, as matches run: checked bit for bit in
``tests/test_coins_influence.py``). Gradient for gradient, a fit is what
``torch.optim.Adam`` does to plain ``nn.Linear`` / ``nn.Conv2d`` models on the same
minibatches (checked in float64 in the tests); in float32 the two drift apart at rounding
level, which Adam can amplify to a step size where a gradient is near zero (a ReLU at its
kink).

Quirks of the reference code, as switches (defaults reproduce the reference, as the
project reproduces the paper):

* ``time_feature="faithful"`` (spec 8 item 14): the transition models are trained with the
  time remaining of sequences of length ``T - 1`` (``T - 2 - t``) and queried with
  ``T - 1 - t``; ``"consistent"`` uses ``T - 1 - t`` everywhere;
* ``value_time=False`` (spec 8 item 15): ``V`` has no time input and no terminal handling;
  ``True`` feeds ``tau`` to the critic's first linear layer (``Linear(145 -> 64)``) and
  takes ``V(s_T) = 0`` after an episode's last step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.nn import functional

from recip_tourney.agents.influence_critic import affine, expected_values

if TYPE_CHECKING:
    from recip_tourney.tournament.match import SidePool
from recip_tourney.agents.influence_features import (
    CELLS,
    CHANNELS,
    COLUMNS,
    FEATURES,
    N_STATES,
    ONE,
    PLAYERS,
    TAU,
    SampleTables,
    state_labels,
)
from recip_tourney.agents.influence_models import (
    DROPPED_ACTION,
    MLP_MODELS,
    MODELS,
    InfluenceModels,
)
from recip_tourney.agents.influence_schedule import (
    StepPlan,
    draw_epoch,
    draw_subsamples,
    epoch_index,
    fit_due,
    subsample_sizes,
)
from recip_tourney.agents.returns import discounted_returns

__all__ = ["MODELS", "CoinsVoI", "TimeFeature", "fit_due"]

TimeFeature = Literal["faithful", "consistent"]


def _in_order(tasks: list[Callable[[], Any]]) -> list[Any]:
    return [task() for task in tasks]


class CoinsVoI(InfluenceModels):
    """Value-influence estimator of the 2-player Coin Game (``CoinsVoI``), S seeds at once.

    Parameters
    ----------
    generators : list of torch.Generator
        One per seed: its initial weights (model by model in :data:`MODELS` order, layer by
        layer, weight then bias, drawn as ``nn.Linear`` / ``nn.Conv2d`` do) and every
        subsample and minibatch shuffle of its fits.
    gamma : float
        Discount of the critic's targets and of the influence's future part (0.99).
    lr : float
        Adam step size of every model (0.01).
    samples, minibatch, epochs : int
        Per model and fit: a fresh subsample without replacement of ``samples`` of the
        buffer's samples (all of them if fewer), then ``epochs`` epochs of shuffled
        minibatches of ``minibatch`` (the last one smaller if it does not divide). Spec:
        16 x 4096, 4096, 20.
    buffer_episodes : int
        Episodes kept for fitting (3).
    init_episodes, period : int
        The fit schedule, see :meth:`due` (2, 2).
    hidden, channels : int
        MLP and critic width (64) and the critic's conv channels (16).
    time_feature : {"faithful", "consistent"}
        ``"faithful"`` (default, the reference, spec 8 item 14): the transition models
        train with ``tau = T - 2 - t`` and are queried with ``T - 1 - t``;
        ``"consistent"``: ``T - 1 - t`` everywhere.
    value_time : bool
        ``False`` (default, the reference, spec 8 item 15): the critic sees the state only
        and the next state's value counts after the last step too; ``True``: the critic's
        first linear layer also takes ``tau`` (``Linear(145 -> 64)``) and the value after
        the last step is 0.
    dtype : torch.dtype
    betas, eps : tuple of float, float
        Adam's, as ``torch.optim.Adam``.
    device : torch.device or str, optional
        Where the models, their Adam state, the buffer and the fits live (default: the
        CPU); the seeds' draws are made on the CPU and copied over.

    Attributes
    ----------
    flat, grad, exp_avg, exp_avg_sq, adam_steps
        The models' parameters and Adam state, as in :class:`~recip_tourney.agents.
        influence_models.InfluenceModels` (:meth:`view` and :meth:`parameters` name them).
    buffer : deque of dict
        The stored episodes, oldest first.
    fits : int
        Fits done.

    Examples
    --------
    After each 1-based episode ``e`` (tensors ``(T, S, B, ...)``), as the reference's
    trainer does before the agents' updates::

        estimator.store(states, actions, rewards)
        if estimator.due(e):
            estimator.fit()
        vi = estimator.influence(states, actions)  # (T, S, B, 2, 2): [u, v] = u -> v
    """

    def __init__(
        self,
        generators: list[torch.Generator],
        *,
        gamma: float = 0.99,
        lr: float = 0.01,
        samples: int = 65536,
        minibatch: int = 4096,
        epochs: int = 20,
        buffer_episodes: int = 3,
        init_episodes: int = 2,
        period: int = 2,
        hidden: int = 64,
        channels: int = 16,
        time_feature: TimeFeature = "faithful",
        value_time: bool = False,
        dtype: torch.dtype = torch.float32,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        device: torch.device | str | None = None,
    ) -> None:
        if time_feature not in ("faithful", "consistent"):
            raise ValueError(f"time_feature must be 'faithful' or 'consistent', "
                             f"not {time_feature!r}")
        super().__init__(generators, lr=lr, hidden=hidden, channels=channels,
                         value_time=value_time, dtype=dtype, betas=betas, eps=eps,
                         device=device)
        self.gamma = gamma
        self.samples, self.minibatch, self.epochs = samples, minibatch, epochs
        self.init_episodes, self.period = init_episodes, period
        self.time_feature = time_feature
        self.buffer: deque[dict[str, torch.Tensor]] = deque(maxlen=buffer_episodes)
        self.fits = 0

    # ------------------------------------------------------------------ data

    def due(self, episode: int) -> bool:
        """Whether to fit after 1-based episode ``episode``: :func:`fit_due`."""
        return fit_due(episode, self.init_episodes, self.period)

    def store(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
              ) -> None:
        """Push an episode into the buffer (the oldest leaves past ``buffer_episodes``).

        Parameters
        ----------
        states : Tensor, (T, S, B, 4) labels or (T, S, B, 4, 3, 3) / (T, S, B, 36) one-hot
            Canonical states ``s_t`` (agent 0's observation).
        actions : Tensor of long, (T, S, B, 2)
        rewards : Tensor, (T, S, B, 2)
            Extrinsic rewards; the critic's targets are their discounted returns.
        """
        rewards = rewards.to(self.dtype)
        self.buffer.append({
            "labels": state_labels(states).to(torch.uint8),
            "actions": actions.to(torch.uint8),
            "rewards": rewards,
            "returns": discounted_returns(rewards, self.gamma),
        })

    def _tables(self) -> SampleTables:
        """The buffer as one table of rows ``s N + t nB + b`` (episodes side by side)."""
        if not self.buffer:
            raise RuntimeError("CoinsVoI: the buffer is empty (store an episode first)")
        return SampleTables.build(self.buffer, self.dtype, self.value_time)

    def training_inputs(self, model: str) -> torch.Tensor:
        """The inputs ``model`` is fit on, every buffer sample of every seed: (S, n, 39) for
        the MLPs (the dropped action zeroed; the transition models' ``n`` is (T - 1) nB
        and their ``tau`` follows ``time_feature``), (S, n, 36) states (37 with ``tau`` and
        ``value_time``) for ``"V"``."""
        tables = self._tables()
        x = tables.x.view(self.seeds, tables.rows, COLUMNS)[..., :FEATURES]
        if model == "V":
            return x[..., PLAYERS:] if self.value_time else x[..., PLAYERS:TAU]
        m = MLP_MODELS.index(model)
        if m >= 3:
            x = x[:, : tables.transitions].clone()
            if self.time_feature == "faithful":
                x[..., TAU] -= 1.0
        return x * self._input_mask[m, ..., :FEATURES]

    # ------------------------------------------------------------------ fitting

    draw_subsamples = staticmethod(draw_subsamples)
    draw_epoch = staticmethod(draw_epoch)

    def fit(self, pool: SidePool | None = None) -> None:
        """Fit all seven models on the buffer (spec 5.3.4), every seed, side by side.

        For each seed: a fresh subsample for each model (:meth:`draw_subsamples`), then
        ``epochs`` epochs (:meth:`draw_epoch`); step ``j`` of an epoch trains every model and
        seed on its ``j``-th minibatch, then one Adam step updates all of them. A model
        whose minibatches are used up (a smaller dataset) sits the remaining steps out
        (:mod:`recip_tourney.agents.influence_schedule`). With a ``pool`` of several threads
        the transition models, the reward models and the value model of a step compute their
        gradients side by side (the same numbers).
        """
        run = pool.run if pool is not None else _in_order
        tables = self._tables()
        sizes = subsample_sizes(self.samples, tables.rows, tables.transitions)
        plan = StepPlan.build(sizes, self.minibatch, self.dtype, self.device)
        subsamples = [draw_subsamples(g, tables.rows, tables.transitions, sizes)
                      for g in self.generators]
        for _ in range(self.epochs):
            index = epoch_index(self.generators, subsamples, tables.rows, plan.steps,
                                self.minibatch, self.device)
            for j in range(plan.steps):
                self._step(tables, index[j], plan.weights[j], plan.active[j], run)
        self._scratch.clear()
        self.fits += 1

    def _step(self, tables: SampleTables, index: torch.Tensor, weights: torch.Tensor,
              active: list[bool], run: Callable[[list[Callable[[], None]]], list[None]]
              ) -> None:
        """One minibatch of every model and seed, then one Adam step.

        ``index`` (7, S, mb): table rows; ``weights`` (7, mb): 1 / minibatch rows, or 0.
        """
        seeds, mb = index.shape[1:]
        x = functional.embedding(index[1:].reshape(-1), tables.x)  # the rows: a fast gather
        x = x.view(len(MLP_MODELS), seeds, mb, COLUMNS)
        for m, dropped in enumerate(DROPPED_ACTION):
            if dropped is not None:
                x[m, ..., dropped] = 0.0
        if self.time_feature == "faithful":
            x[3:, ..., TAU] -= 1.0
        r_target = tables.rewards.index_select(0, index[1:4].reshape(-1))
        p_target = tables.next_labels.index_select(0, index[4:].reshape(-1))
        mlp = partial(self._mlp_step, x.view(6 * seeds, mb, COLUMNS),
                      r_target.view(3 * seeds, mb, PLAYERS), p_target.view(3 * seeds, mb, CHANNELS),
                      weights[1:])
        # the heaviest first: it runs in this thread while the pool takes the other two
        run([partial(mlp, group=1), partial(mlp, group=0),
             partial(self._value_step, tables, index[0], weights[0])])
        self._adam(active)

    # ------------------------------------------------------------------ queries

    expected_values = staticmethod(expected_values)

    def influence_parts(self, states: torch.Tensor, actions: torch.Tensor, chunk: int = 8192
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """The immediate and future parts of the value influence of every ordered pair.

        ``VI = immediate + gamma * future``, with ``immediate[u, v] = R_v(x) -
        R^{-u}_v(x^{-u})`` and ``future[u, v] = sum_l [prod_k P_k - prod_k P^{-u}_k] V_v``.

        Parameters
        ----------
        states : Tensor, (T, S, B, 4) labels or one-hot (T, S, B, 4, 3, 3) / (T, S, B, 36)
            The episode's canonical states ``s_t``.
        actions : Tensor of long, (T, S, B, 2)
        chunk : int
            Rows per seed evaluated at once (whole time steps; bounds the memory).

        Returns
        -------
        immediate, future : Tensor, (T, S, B, 2, 2)
            Indexed ``[t, s, b, u, v]``: influencer ``u``, influenced ``v``.
        """
        steps, seeds, games = actions.shape[:3]
        with torch.no_grad():
            x = self._query_inputs(states, actions)
            if self.value_time:
                # the next state's value at tau_{t+1} = T - 2 - t; none after the last step
                taus = steps - 2 - torch.arange(steps, device=self.device)
                table = self.value_table(taus)  # (S, T, 6561, 2)
            else:
                table = self.value_table().repeat(3, 1, 1)  # (3 S, 6561, 2)
            rows = steps * games
            chunk = max(1, chunk // games) * games
            immediate = torch.empty(seeds, PLAYERS, PLAYERS, rows, dtype=self.dtype,
                                    device=self.device)
            future = torch.empty_like(immediate)
            for lo in range(0, rows, chunk):
                hi = min(rows, lo + chunk)
                r, logits = self._mlp_forward(x[:, lo:hi])
                probs = logits.softmax(3)  # (3, S, 4, 9, n)
                if self.value_time:
                    t0, t1 = lo // games, hi // games
                    g = 3 * seeds * (t1 - t0)
                    ev = self.expected_values(
                        probs.unflatten(-1, (t1 - t0, games)).movedim(-2, 2).reshape(
                            g, CHANNELS, CELLS, games),
                        table[:, t0:t1].expand(3, -1, -1, -1, -1).reshape(g, N_STATES, -1))
                    ev = ev.view(3, seeds, t1 - t0, PLAYERS, games).movedim(2, -2)
                else:
                    ev = self.expected_values(probs.flatten(0, 1), table)
                ev = ev.reshape(3, seeds, PLAYERS, hi - lo)
                immediate[..., lo:hi] = (r[0] - r[1:]).transpose(0, 1)  # (S, u, v, n)
                future[..., lo:hi] = (ev[0] - ev[1:]).transpose(0, 1)

        def back(y: torch.Tensor) -> torch.Tensor:  # (S, u, v, T B) -> (T, S, B, u, v)
            return y.view(seeds, PLAYERS, PLAYERS, steps, games).permute(3, 0, 4, 1, 2)

        return back(immediate), back(future)

    def influence(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Value influence ``VI^{u->v}_t`` of every ordered pair on an episode (spec 5.3.3).

        Parameters
        ----------
        states : Tensor, (T, S, B, 4) labels or one-hot (T, S, B, 4, 3, 3) / (T, S, B, 36)
            The episode's canonical states ``s_t``.
        actions : Tensor of long, (T, S, B, 2)

        Returns
        -------
        Tensor, (T, S, B, 2, 2)
            ``[t, s, b, u, v]`` = influence of player ``u`` on player ``v``.
        """
        immediate, future = self.influence_parts(states, actions)
        return torch.add(immediate, future, alpha=self.gamma)

    def losses(self, chunk: int = 8192) -> torch.Tensor:
        """Each model's loss on all its buffer samples (:meth:`training_inputs`), (S, 7) in
        :data:`MODELS` order: MSE for V and R, mean per-head NLL for P (float64; evaluated
        ``chunk`` rows per seed at a time)."""
        tables = self._tables()
        seeds, n, nt = self.seeds, tables.rows, tables.transitions
        total = torch.zeros(seeds, len(MODELS), dtype=torch.float64, device=self.device)
        x_all = tables.x.view(seeds, n, COLUMNS)
        returns_all = tables.returns.view(seeds, n, PLAYERS).transpose(1, 2)
        rewards_all = tables.rewards.view(1, seeds, n, PLAYERS).transpose(2, 3)
        targets_all = tables.next_labels.view(seeds, n, CHANNELS).transpose(1, 2)
        with torch.no_grad():
            w = self._value_weights()
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                x = x_all[:, lo:hi]
                _, h2, _ = self._critic.trunk(w, x[..., PLAYERS:])
                pre = affine(w.linear3, w.bias3, h2)
                if w.tau3 is not None:
                    pre.baddbmm_(w.tau3, x[..., TAU:ONE].transpose(1, 2))
                values = affine(w.linear4, w.bias4, pre.relu_())
                total[:, 0] += (values - returns_all[..., lo:hi]).square().sum((1, 2))
                r, _ = self._mlp_forward(x[..., :FEATURES])
                total[:, 1:4] += (r - rewards_all[..., lo:hi]).square().sum((2, 3)).T
                if lo >= nt:
                    continue
                hi = min(nt, hi)
                xp = x[:, : hi - lo, :FEATURES].clone()
                if self.time_feature == "faithful":
                    xp[..., TAU] -= 1.0
                _, logits = self._mlp_forward(xp)
                target = targets_all[..., lo:hi].unsqueeze(2).expand(3, -1, -1, -1, -1)
                picked = logits.log_softmax(3).gather(3, target)
                total[:, 4:] -= picked.sum((2, 3, 4)).T
        return total / torch.tensor([2 * n] * 4 + [4 * nt] * 3, dtype=torch.float64,
                                    device=self.device)
