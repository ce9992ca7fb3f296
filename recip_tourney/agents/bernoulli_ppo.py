"""PPO for a Bernoulli policy of the IPD observation, batched over seeds (rollout spec 4.1, 4.2).

The networks are those of the reference code (``matrix_components.py``): an actor
``Linear(2, H) -> ReLU -> Linear(H, H) -> ReLU -> Linear(H, 1) -> sigmoid`` giving
P(defect), and a critic of the same shape without the sigmoid, H = 2. One update per
episode: Monte-Carlo discounted returns, standardised over the episode's T x B samples,
then ``epochs`` full-batch steps of Adam on the clipped surrogate, half the value MSE and an
entropy bonus, with the advantage ``G - V(s)`` recomputed every epoch from the current critic.

The observation takes only 5 values, so both networks are evaluated on those 5 inputs and
the full-batch loss is written with per-(state, action) sums over the samples:

* the ratio depends only on (state, action), so ``sum_i min(rho A_i, clip(rho) A_i)`` over a
  group is ``min(rho, clip(rho)) P + max(rho, clip(rho)) M``, with ``P`` and ``M`` the sums
  of the group's positive and negative advantages (the advantage is held constant);
* ``sum_i (V(s) - G_i)^2 = n V^2 - 2 V sum G + sum G^2`` per state; the entropy is per state.

This is the same loss and gradient as the per-sample formulation (checked against autograd
on it in ``tests/test_bernoulli_ppo.py``), for a per-epoch cost of one pass over the samples
to sum the advantages. Every network is stacked over the S seeds of a match: seed s has
its own weights, optimiser state and samples, and the loss is the sum of the seeds' losses,
so seeds never mix (Adam is elementwise).

On a GPU the per-group sums are products with a one-hot table of the samples' groups (made
once per update): ``torch.bincount`` there reads its largest index back to the host, and a
deterministic ``index_add_`` is a sort per call (it was 90% of an episode's GPU time). On the
CPU the code is the one the golden numbers were made with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional

from recip_tourney.agents.flat_adam import adam_update
from recip_tourney.agents.returns import discounted_returns
from recip_tourney.device import upload
from recip_tourney.envs.ipd import STATES
from recip_tourney.envs.ipd_rollout import OBSERVATION_FEATURES, per_seed

N_STATES, N_ACTIONS = len(STATES), 2


def _linear_init(
    fan_in: int, shape: tuple[int, ...], generators: list[torch.Generator]
) -> torch.Tensor:
    """``nn.Linear``'s default initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per seed,
    drawn on the generators' device (the CPU)."""
    bound = 1.0 / math.sqrt(fan_in)
    draws = [torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
             for g in generators]
    return (torch.stack(draws) * 2 - 1) * bound


def one_hot(ids: torch.Tensor, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """``(..., groups)`` indicators of ``ids`` (each below ``groups``) in ``dtype``; sums per
    group are then products with it, with no read-back to the host."""
    return (ids.unsqueeze(-1) == torch.arange(groups, device=ids.device)).to(dtype)


def seed_major(x: torch.Tensor) -> torch.Tensor:
    """A time-major ``(T, S, B)`` tensor as ``(S, T * B)``: each seed's samples in a row."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


class MemoryOneNets:
    """Actor and critic MLPs of the rollout IPD, one pair per seed, in one flat tensor.

    Actor and critic have the same shape (2 -> H -> H -> 1), so they are stacked as a
    batch of 2 S networks and evaluated together with batched products; the forward and
    backward passes are written out (three layers, five inputs), which keeps an update to a
    few dozen tensor operations per epoch.

    Parameters
    ----------
    hidden : int
        Hidden width H (2 in the reference).
    generators : list of torch.Generator
        One per seed: draws that seed's initial weights, layer by layer as ``nn.Linear``
        (actor's three layers, then the critic's).
    dtype : torch.dtype
    device : torch.device or str
        Where the parameters live (drawn on the CPU and moved there in one copy).

    Attributes
    ----------
    flat : Tensor, (S, 2, P)
        Every parameter; :meth:`named` gives ``nn.Linear``-style views into it.
    """

    NETS = ("actor", "critic")

    def __init__(
        self,
        hidden: int,
        generators: list[torch.Generator],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        self.hidden = h = hidden
        self.layers = ((2, h), (h, h), (h, 1))  # (fan_in, fan_out)
        sizes = [n for fan_in, fan_out in self.layers for n in (fan_out * fan_in, fan_out)]
        seeds = len(generators)
        flat = torch.empty(seeds, 2, sum(sizes), dtype=dtype, device="cpu")
        for net in range(2):
            offset = 0
            for fan_in, fan_out in self.layers:
                for shape in ((fan_out, fan_in), (fan_out,)):
                    size = math.prod(shape)
                    draw = _linear_init(fan_in, shape, generators).reshape(seeds, size)
                    flat[:, net, offset : offset + size] = draw.to(dtype)
                    offset += size
        self.flat = upload(flat, device)
        self.inputs = torch.tensor(OBSERVATION_FEATURES, dtype=dtype, device=self.flat.device)
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._layers_of: torch.Tensor | None = None

    def views(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight (S, 2, out, in), bias (S, 2, out)) of each layer, as views of ``flat``."""
        out, offset = [], 0
        for fan_in, fan_out in self.layers:
            w = flat[:, :, offset : offset + fan_out * fan_in].unflatten(-1, (fan_out, fan_in))
            offset += fan_out * fan_in
            b = flat[:, :, offset : offset + fan_out]
            offset += fan_out
            out.append((w, b))
        return out

    def named(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Parameters by ``nn.Linear``-style name (``actor.0.weight``...), views (S, ...)
        of ``flat`` (default: :attr:`flat`)."""
        names = {}
        for layer, (w, b) in enumerate(self.views(self.flat if flat is None else flat)):
            for k, net in enumerate(self.NETS):
                names[f"{net}.{layer}.weight"] = w[:, k]
                names[f"{net}.{layer}.bias"] = b[:, k]
        return names

    def _batched(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's (weight^T (2S, in, out), bias (2S, 1, out)), views of :attr:`flat`."""
        n = 2 * self.flat.shape[0]
        return [(w.reshape(n, *w.shape[2:]).transpose(1, 2), b.reshape(n, 1, -1))
                for w, b in self.views(self.flat)]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Actor logits of P(defect) and critic values on the 5 observations.

        Returns
        -------
        logits, values : Tensor, (S, 5)
        hidden : list of Tensor
            Layer inputs ((2 S, 5, fan_in) each), kept for :meth:`backward`.
        """
        if self._layers is None or self._layers_of is not self.flat:
            self._layers, self._layers_of = self._batched(), self.flat
        seeds = self.flat.shape[0]
        x = self.inputs.expand(2 * seeds, -1, -1)
        hidden = []
        last = len(self._layers) - 1
        for i, (w_t, b) in enumerate(self._layers):
            hidden.append(x)
            x = torch.baddbmm(b, x, w_t)
            if i < last:
                x = x.relu_()
        out = x.view(seeds, 2, -1)
        return out[:, 0], out[:, 1], hidden

    def backward(
        self, hidden: list[torch.Tensor], d_logits: torch.Tensor, d_values: torch.Tensor
    ) -> torch.Tensor:
        """Gradient of a loss with respect to :attr:`flat`, given its gradient at the outputs.

        Parameters
        ----------
        hidden : list of Tensor
            From :meth:`forward`.
        d_logits, d_values : Tensor, (S, 5)
        """
        seeds = self.flat.shape[0]
        d = torch.stack((d_logits, d_values), dim=1).view(2 * seeds, -1, 1)  # (2S, 5, out)
        pieces: list[torch.Tensor] = []
        for i in range(len(hidden) - 1, -1, -1):
            x = hidden[i]
            pieces.append(d.sum(1))  # bias
            pieces.append(torch.bmm(d.transpose(1, 2), x).flatten(1))  # weight (out, in)
            if i:
                d = torch.bmm(d, self._layers[i][0].transpose(1, 2)).mul_(x > 0)
        return torch.cat(pieces[::-1], dim=1).view_as(self.flat)

    def p_cooperate(self) -> torch.Tensor:
        """P(cooperate) in each observation, (S, 5)."""
        return torch.sigmoid(-self.forward()[0])


def log_policy(defect_logits: torch.Tensor) -> torch.Tensor:
    """``log pi(a | s)`` for a = C, D: (S, 5, 2) from the logits of P(defect)."""
    return torch.stack((functional.logsigmoid(-defect_logits),
                        functional.logsigmoid(defect_logits)), dim=-1)


@dataclass(frozen=True)
class GroupSums:
    """An episode's standardised returns and their sums per (seed, state, action) group.

    Attributes
    ----------
    returns : Tensor, (N_all,), or (S, T x B) with ``groups``
        Standardised returns of every sample, in (step, seed, game) order (seed-major).
    state_id, group_id : Tensor of long, (N_all,)
        ``seed * 5 + state`` and ``state_id * 2 + action`` of every sample; with ``groups``
        (a GPU), ``state_id`` is (S, T x B) and holds the state alone, ``group_id`` is None.
    count, total : Tensor, (S, 5, 2)
        Samples and sum of returns per group (summed in float64).
    state_count, state_total, squares : Tensor, (S, 5)
        Samples, sum of returns and of squared returns per (seed, state).
    samples : int
        Samples per seed, T x B (the loss is a mean over them).
    groups : Tensor, (S, T x B, 10), optional
        On a GPU: each sample's group ``state * 2 + action`` as a one-hot row.
    """

    returns: torch.Tensor
    state_id: torch.Tensor
    group_id: torch.Tensor | None
    count: torch.Tensor
    total: torch.Tensor
    state_count: torch.Tensor
    state_total: torch.Tensor
    squares: torch.Tensor
    samples: int
    groups: torch.Tensor | None = None


class GroupedPPO:
    """The reference's PPO on :class:`MemoryOneNets`, with the loss summed per group.

    Parameters
    ----------
    nets : MemoryOneNets
    lr, gamma, epochs, clip, entropy : float, float, int, float, float
        Adam step size, discount of the returns, full-batch epochs per update, ratio clip
        and entropy bonus (spec 7.1: 0.005, 0.96, 10, 0.1, 0.02).
    eps : float
        Added to the std when standardising the returns (the reference's IPD code uses 0,
        which gives NaN when all returns are equal).
    betas : tuple of float
        Adam's, as ``torch.optim.Adam`` (whose update this repeats on the flat tensor).
    """

    def __init__(
        self,
        nets: MemoryOneNets,
        *,
        lr: float,
        gamma: float,
        epochs: int,
        clip: float,
        entropy: float,
        eps: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        self.nets = nets
        self.lr, self.gamma, self.epochs, self.clip, self.entropy, self.eps = (
            lr, gamma, epochs, clip, entropy, eps)
        self.betas = betas
        self.steps = 0
        self.exp_avg = torch.zeros_like(nets.flat)
        self.exp_avg_sq = torch.zeros_like(nets.flat)

    def standardised_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """Discounted returns of (T, S, B) rewards, standardised per seed over (T, B)."""
        returns = discounted_returns(rewards, self.gamma)
        rows = per_seed(returns)  # seed by seed: the statistics do not depend on S
        mean = torch.stack([r.mean() for r in rows]).view(1, -1, 1)
        std = torch.stack([r.std() for r in rows]).view(1, -1, 1)
        return (returns - mean) / (std + self.eps)

    def group_sums(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> GroupSums:
        """Standardise the episode's returns and sum them per (seed, state, action)."""
        steps, seeds, batch = obs.shape
        dtype = self.nets.flat.dtype
        if obs.device.type != "cpu":
            return self._group_sums_dense(obs, actions, rewards)
        returns = self.standardised_returns(rewards.to(dtype)).reshape(-1)
        seed_offset = torch.arange(seeds, device=obs.device).view(1, seeds, 1) * N_STATES
        state_id = (obs + seed_offset).reshape(-1)
        group_id = state_id * N_ACTIONS + actions.reshape(-1)
        n_groups = seeds * N_STATES * N_ACTIONS
        wide = returns.to(torch.float64)  # the once-per-update sums, accurately
        shape = (seeds, N_STATES, N_ACTIONS)
        count = torch.bincount(group_id, minlength=n_groups).view(shape).to(torch.float64)
        total = torch.bincount(group_id, weights=wide, minlength=n_groups).view(shape)
        squares = torch.bincount(state_id, weights=wide * wide, minlength=seeds * N_STATES)
        return GroupSums(
            returns, state_id, group_id, count.to(dtype), total.to(dtype),
            count.sum(-1).to(dtype), total.sum(-1).to(dtype),
            squares.view(seeds, N_STATES).to(dtype), steps * batch,
        )

    def _group_sums_dense(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> GroupSums:
        """:meth:`group_sums` on a GPU: sums as products with the samples' one-hot groups."""
        steps, seeds, batch = obs.shape
        dtype = self.nets.flat.dtype
        returns = seed_major(self.standardised_returns(rewards.to(dtype)))  # (S, N)
        state = seed_major(obs)
        groups = one_hot(state * N_ACTIONS + seed_major(actions), N_STATES * N_ACTIONS,
                         torch.float64)
        wide = returns.to(torch.float64)  # the once-per-update sums, accurately
        sums = torch.bmm(torch.stack((torch.ones_like(wide), wide, wide * wide), 1), groups)
        count, total, squares = sums.view(seeds, 3, N_STATES, N_ACTIONS).unbind(1)
        return GroupSums(
            returns, state, None, count.to(dtype), total.to(dtype), count.sum(-1).to(dtype),
            total.sum(-1).to(dtype), squares.sum(-1).to(dtype), steps * batch,
            groups.to(dtype),
        )

    def loss_and_gradient(
        self, sums: GroupSums, old_log_pi: torch.Tensor, with_loss: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The full-batch PPO loss of every seed, (S,), and its gradient, like ``nets.flat``.

        Per seed: ``mean(-min(rho A, clip(rho) A) - entropy H) + 0.5 mean((V - G)^2)`` with
        ``A = G - V`` held constant, written per group (see the module docstring); the
        gradient follows autograd's conventions at the clip boundaries. The loss itself is
        only computed ``with_loss`` (an update needs only the gradient).
        """
        logits, values, hidden = self.nets.forward()
        # advantages G - V(s), V held constant: their positive and negative sums per group
        if sums.groups is None:
            v_sample = values.reshape(-1).index_select(0, sums.state_id)
            zeros = torch.zeros(sums.count.numel(), dtype=values.dtype, device=values.device)
            positive = zeros.index_add_(
                0, sums.group_id, (sums.returns - v_sample).clamp_(min=0.0)).view_as(sums.count)
        else:
            gain = (sums.returns - values.gather(1, sums.state_id)).clamp_(min=0.0)
            positive = torch.bmm(gain.unsqueeze(1), sums.groups).view_as(sums.count)
        negative = sums.total - sums.count * values.unsqueeze(-1) - positive
        count, total = sums.state_count, sums.state_total

        log_pi = log_policy(logits)
        pi = log_pi.exp()
        ratio = (log_pi - old_log_pi).exp_()
        hi, lo = 1.0 + self.clip, 1.0 - self.clip
        # d surrogate / d ratio: P where the ratio is not clipped above, M where not below
        slope = positive * (ratio <= hi) + negative * (ratio >= lo)
        # d log pi(C) / dz = -pi(D), d log pi(D) / dz = pi(C);  dH/dz = -z pi(C) pi(D)
        p_c, p_d = pi[..., 0], pi[..., 1]
        d_logits = slope[..., 0] * ratio[..., 0] * p_d - slope[..., 1] * ratio[..., 1] * p_c
        d_logits += self.entropy * count * logits * p_c * p_d
        d_values = count * values - total
        n = sums.samples
        grad = self.nets.backward(hidden, d_logits / n, d_values / n)
        if not with_loss:
            return None, grad
        clipped = ratio.clamp(lo, hi)
        surrogate = (torch.minimum(ratio, clipped) * positive
                     + torch.maximum(ratio, clipped) * negative)
        entropy = -(pi * log_pi).sum(-1)
        value_sq = count * values * values - 2 * values * total + sums.squares
        loss = ((-surrogate.sum((1, 2)) - self.entropy * (count * entropy).sum(1)
                 + 0.5 * value_sq.sum(1)) / n)
        return loss, grad

    def adam_step(self, grad: torch.Tensor) -> None:
        """``torch.optim.Adam``'s update (no weight decay, no amsgrad) on the flat tensor."""
        self.steps += 1
        adam_update(self.nets.flat, grad, self.exp_avg, self.exp_avg_sq, self.steps, self.lr,
                    self.betas, 1e-8)

    def update(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        """One PPO update (``epochs`` full-batch Adam steps) on an episode of samples.

        Parameters
        ----------
        obs, actions : Tensor of long, shape (T, S, B)
            Observation index each action was chosen in, and the action (0 = C, 1 = D).
        rewards : Tensor, shape (T, S, B)
            The rewards PPO learns from (extrinsic, or shaped by the caller).
        """
        sums = self.group_sums(obs, actions, rewards)
        # the policy that acted: theta_old = theta after each update
        old_log_pi = log_policy(self.nets.forward()[0])
        for _ in range(self.epochs):
            _, grad = self.loss_and_gradient(sums, old_log_pi, with_loss=False)
            self.adam_step(grad)
