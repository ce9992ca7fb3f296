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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional

from recip_tourney.envs.ipd import STATES
from recip_tourney.envs.ipd_rollout import OBSERVATION_FEATURES

N_STATES, N_ACTIONS = len(STATES), 2


def _linear_init(
    seeds: int, fan_in: int, shape: tuple[int, ...], generators: list[torch.Generator]
) -> torch.Tensor:
    """``nn.Linear``'s default initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per seed."""
    bound = 1.0 / math.sqrt(fan_in)
    draws = [torch.rand(shape, generator=g, dtype=torch.float64) for g in generators]
    return (torch.stack(draws) * 2 - 1) * bound


class MemoryOneNets:
    """Actor and critic MLPs of the rollout IPD, one of each per seed, stacked.

    Parameters
    ----------
    hidden : int
        Hidden width H (2 in the reference).
    generators : list of torch.Generator
        One per seed: draws that seed's initial weights (actor first, then critic).
    dtype : torch.dtype
    """

    def __init__(
        self, hidden: int, generators: list[torch.Generator], dtype: torch.dtype
    ) -> None:
        self.hidden = hidden
        n = len(generators)
        shapes = []
        for net in ("actor", "critic"):
            for layer, (fan_in, fan_out) in enumerate(((2, hidden), (hidden, hidden), (hidden, 1))):
                shapes.append((f"{net}.{layer}.weight", (fan_out, fan_in), fan_in))
                shapes.append((f"{net}.{layer}.bias", (fan_out,), fan_in))
        self.params = {
            name: _linear_init(n, fan_in, shape, generators).to(dtype).requires_grad_()
            for name, shape, fan_in in shapes
        }
        self.inputs = torch.tensor(OBSERVATION_FEATURES, dtype=dtype)

    def _mlp(self, net: str) -> torch.Tensor:
        """Output of ``net`` on the 5 observations: (S, 5)."""
        p = self.params
        h = torch.einsum("ni,soi->sno", self.inputs, p[f"{net}.0.weight"])
        h = h + p[f"{net}.0.bias"].unsqueeze(1)
        h = torch.baddbmm(p[f"{net}.1.bias"].unsqueeze(1), h.relu(),
                          p[f"{net}.1.weight"].transpose(1, 2))
        out = torch.baddbmm(p[f"{net}.2.bias"].unsqueeze(1), h.relu(),
                            p[f"{net}.2.weight"].transpose(1, 2))
        return out.squeeze(-1)

    def defect_logits(self) -> torch.Tensor:
        """Actor logits of P(defect) in each observation, (S, 5)."""
        return self._mlp("actor")

    def values(self) -> torch.Tensor:
        """Critic value of each observation, (S, 5)."""
        return self._mlp("critic")

    def p_cooperate(self) -> torch.Tensor:
        """P(cooperate) in each observation, (S, 5), without gradient."""
        with torch.no_grad():
            return torch.sigmoid(-self.defect_logits())


def log_policy(defect_logits: torch.Tensor) -> torch.Tensor:
    """``log pi(a | s)`` for a = C, D: (S, 5, 2) from the logits of P(defect)."""
    return torch.stack((functional.logsigmoid(-defect_logits),
                        functional.logsigmoid(defect_logits)), dim=-1)


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go ``G_t = sum_{k >= t} gamma^(k - t) r_k`` of time-major rewards (T, ...)."""
    steps = rewards.shape[0]
    t = torch.arange(steps, dtype=torch.float64)
    lag = t.unsqueeze(0) - t.unsqueeze(1)  # k - t
    weights = torch.where(lag >= 0, gamma ** lag.clamp(min=0), 0.0).to(rewards.dtype)
    return (weights @ rewards.reshape(steps, -1)).reshape(rewards.shape)


@dataclass(frozen=True)
class GroupSums:
    """An episode's standardised returns and their sums per (seed, state, action) group.

    Attributes
    ----------
    returns : Tensor, (N_all,) float64
        Standardised returns of every sample, in (step, seed, game) order.
    state_id, group_id : Tensor of long, (N_all,)
        ``seed * 5 + state`` and ``state_id * 2 + action`` of every sample.
    count, total : Tensor, (S * 10,) float64
        Samples and sum of returns per group.
    squares : Tensor, (S * 5,) float64
        Sum of squared returns per (seed, state).
    samples : int
        Samples per seed, T x B (the loss is a mean over them).
    """

    returns: torch.Tensor
    state_id: torch.Tensor
    group_id: torch.Tensor
    count: torch.Tensor
    total: torch.Tensor
    squares: torch.Tensor
    samples: int


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
    ) -> None:
        self.nets = nets
        self.gamma, self.epochs, self.clip, self.entropy, self.eps = (
            gamma, epochs, clip, entropy, eps)
        self.optimizer = torch.optim.Adam(list(nets.params.values()), lr=lr)

    def standardised_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """Discounted returns of (T, S, B) rewards, standardised per seed over (T, B)."""
        returns = discounted_returns(rewards, self.gamma)
        mean = returns.mean(dim=(0, 2), keepdim=True)
        std = returns.std(dim=(0, 2), keepdim=True)
        return (returns - mean) / (std + self.eps)

    def group_sums(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> GroupSums:
        """Standardise the episode's returns and sum them per (seed, state, action)."""
        steps, seeds, batch = obs.shape
        returns = self.standardised_returns(rewards).to(torch.float64).reshape(-1)
        seed_offset = torch.arange(seeds).view(1, seeds, 1) * N_STATES
        state_id = (obs + seed_offset).reshape(-1)
        group_id = state_id * N_ACTIONS + actions.reshape(-1)
        n_groups = seeds * N_STATES * N_ACTIONS
        count = torch.bincount(group_id, minlength=n_groups).to(torch.float64)
        total = torch.bincount(group_id, weights=returns, minlength=n_groups)
        squares = torch.bincount(state_id, weights=returns * returns, minlength=seeds * N_STATES)
        return GroupSums(returns, state_id, group_id, count, total, squares, steps * batch)

    def loss(self, sums: GroupSums, old_log_pi: torch.Tensor) -> torch.Tensor:
        """The full-batch PPO loss, summed over seeds, from the current networks."""
        dtype = self.nets.inputs.dtype
        seeds = sums.count.numel() // (N_STATES * N_ACTIONS)
        shape = (seeds, N_STATES, N_ACTIONS)
        logits, values = self.nets.defect_logits(), self.nets.values()
        # advantages G - V(s), V held constant: their positive and negative sums per group
        v_held = values.detach().to(torch.float64)
        v_sample = v_held.reshape(-1)[sums.state_id]
        positive = torch.bincount(sums.group_id, weights=(sums.returns - v_sample).clamp_(min=0.0),
                                  minlength=sums.count.numel())
        negative = sums.total - sums.count * v_held.repeat_interleave(N_ACTIONS, dim=1).reshape(-1)
        negative -= positive
        log_pi = log_policy(logits)
        ratio = (log_pi - old_log_pi).exp()
        clipped = ratio.clamp(1.0 - self.clip, 1.0 + self.clip)
        surrogate = (torch.minimum(ratio, clipped) * positive.view(shape).to(dtype)
                     + torch.maximum(ratio, clipped) * negative.view(shape).to(dtype))
        count = sums.count.view(shape).sum(-1).to(dtype)  # per state
        total = sums.total.view(shape).sum(-1).to(dtype)
        squares = sums.squares.view(seeds, N_STATES).to(dtype)
        entropy = -(log_pi.exp() * log_pi).sum(-1)
        value_sq = count * values * values - 2 * values * total + squares
        return (-surrogate.sum() - self.entropy * (count * entropy).sum()
                + 0.5 * value_sq.sum()) / sums.samples

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
        with torch.no_grad():  # the policy that acted: theta_old = theta after each update
            old_log_pi = log_policy(self.nets.defect_logits())
        for _ in range(self.epochs):
            loss = self.loss(sums, old_log_pi)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
