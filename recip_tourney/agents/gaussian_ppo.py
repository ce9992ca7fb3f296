"""PPO for a diagonal-Gaussian MLP policy, as M-FOS uses it (Lu et al. 2022, ``ppo.py``).

The actor is ``state -> Linear(d, H) -> tanh -> Linear(H, 2 * k)``; the first ``k`` outputs are
the action mean and the last ``k`` pass through softplus to give the **variance** of each
action component (the reference uses softplus as a variance, not a standard deviation). The
critic is a separate ``Linear(d, H) -> tanh -> Linear(H, 1)``. One update is ``epochs``
full-batch passes over every sample of a meta-episode with the clipped surrogate, half the
value MSE and an entropy bonus, on returns normalised over the whole batch.

A meta-episode holds 100 x 4096 samples, and the update is most of M-FOS's cost, so it is
written out by hand instead of taped by autograd:

* the batch is processed in cache-sized chunks and the gradients summed, which is exactly the
  full-batch gradient (up to the order of float additions) with a small working set;
* actor and critic share one input product (their first layers are stacked), and all
  products run feature-major (hidden units x samples), the orientation in which these thin
  products are fastest on the CPU's BLAS;
* ``tanh(z) = 2 sigmoid(2 z) - 1``, with the factors folded into the weights: the same
  network, but sigmoid is several times faster than tanh on the CPU.

On a GPU the chunks are large (:data:`GPU_CHUNK` rows: a few big products instead of hundreds
of small launches) and the update reads nothing back to the host: its losses stay tensors.

``tests/test_gaussian_ppo.py`` checks the hand-written gradient against autograd on the plain
``nn.Linear``/``tanh``/``MultivariateNormal`` formulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from recip_tourney.agents.returns import discounted_returns
from recip_tourney.device import upload

_LOG_2PI = math.log(2 * math.pi)
#: Rows per chunk of :meth:`GaussianPPO.gradient` on the CPU (cache-sized) and on a GPU.
CPU_CHUNK, GPU_CHUNK = 512, 1 << 16


def _linear_init(fan_in: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``nn.Linear``'s default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn on
    the generator's device (the CPU)."""
    bound = 1.0 / math.sqrt(fan_in)
    draw = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return (draw * 2 - 1) * bound


@dataclass
class Rollout:
    """The samples of one meta-episode, time-major and flattened to ``T * B`` rows.

    Attributes
    ----------
    states : Tensor, shape (N, d)
    actions : Tensor, shape (N, k)
    log_probs : Tensor, shape (N,)
        Log-probability of each action under the policy that sampled it.
    rewards : Tensor, shape (T, B)
        Meta-rewards, kept time-major to compute the discounted returns.
    """

    states: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor


class GaussianActorCritic:
    """Actor and critic MLPs of M-FOS, with parameters named like ``nn.Linear``'s.

    Parameters
    ----------
    state_dim, action_dim, hidden : int
        Input size, action size ``k`` (the actor emits ``2 k`` numbers) and hidden width.
    generator : torch.Generator
        Draws the initial weights (``nn.Linear``'s default scheme), on the CPU.
    dtype : torch.dtype
    device : torch.device or str
        Where the parameters live (the initial draws are moved there).
    """

    NAMES = (
        "actor.0.weight", "actor.0.bias", "actor.2.weight", "actor.2.bias",
        "critic.0.weight", "critic.0.bias", "critic.2.weight", "critic.2.bias",
    )  # fmt: skip

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        hidden: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.state_dim, self.action_dim, self.hidden = state_dim, action_dim, hidden
        shapes = {
            "actor.0.weight": ((hidden, state_dim), state_dim),
            "actor.0.bias": ((hidden,), state_dim),
            "actor.2.weight": ((2 * action_dim, hidden), hidden),
            "actor.2.bias": ((2 * action_dim,), hidden),
            "critic.0.weight": ((hidden, state_dim), state_dim),
            "critic.0.bias": ((hidden,), state_dim),
            "critic.2.weight": ((1, hidden), hidden),
            "critic.2.bias": ((1,), hidden),
        }
        self.params = {
            name: upload(_linear_init(fan_in, shape, generator).to(dtype), device)
            for name, (shape, fan_in) in shapes.items()
        }

    @property
    def dtype(self) -> torch.dtype:
        """Floating type of the parameters."""
        return self.params["actor.0.weight"].dtype

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.params["actor.0.weight"].device

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the parameters, by ``nn.Module``-style name (on their device)."""
        return {name: t.clone() for name, t in self.params.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load parameters (from any device, onto this network's); shapes and names must
        match exactly."""
        if set(state) != set(self.NAMES):
            raise ValueError(f"expected parameters {sorted(self.NAMES)}, got {sorted(state)}")
        for name, value in state.items():
            if value.shape != self.params[name].shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)}, expected "
                                 f"{tuple(self.params[name].shape)}")
            self.params[name] = value.to(device=self.device, dtype=self.dtype).clone()

    # --- the folded form used for computing -------------------------------------------
    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights of the sigmoid form of both networks.

        Returns
        -------
        first : Tensor, shape (d + 1, 2H)
            ``[x, 1] @ first`` = ``2 z`` for the stacked actor and critic pre-activations.
        second : Tensor, shape (2H + 1, 2k + 1)
            ``[s, 1] @ second`` = actor outputs and critic value, ``s = sigmoid(2 z)``;
            block-diagonal in the hidden rows, with the biases in the last row.
        """
        p, h, k = self.params, self.hidden, self.action_dim
        w1 = torch.cat((p["actor.0.weight"], p["critic.0.weight"]))  # (2H, d)
        b1 = torch.cat((p["actor.0.bias"], p["critic.0.bias"]))
        first = torch.cat((w1.T, b1.unsqueeze(0))) * 2
        second = torch.zeros(2 * h + 1, 2 * k + 1, dtype=self.dtype, device=self.device)
        wa, wc = p["actor.2.weight"], p["critic.2.weight"]
        second[:h, : 2 * k] = 2 * wa.T
        second[h : 2 * h, 2 * k :] = 2 * wc.T
        # tanh = 2 s - 1: the "- 1" moves into the bias
        second[-1, : 2 * k] = p["actor.2.bias"] - wa.sum(1)
        second[-1, 2 * k :] = p["critic.2.bias"] - wc.sum(1)
        return first, second

    def actor_head(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the action distribution, each (N, k); no critic work."""
        p, k = self.params, self.action_dim
        s = torch.sigmoid(torch.addmm(p["actor.0.bias"] * 2, states, p["actor.0.weight"].T * 2))
        out = torch.addmm(p["actor.2.bias"] - p["actor.2.weight"].sum(1), s,
                          p["actor.2.weight"].T * 2)
        return out[:, :k], torch.nn.functional.softplus(out[:, k:])

    def act(
        self, states: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample actions ``mean + sqrt(var) * noise`` and their log-probabilities.

        Parameters
        ----------
        states : Tensor, shape (N, d)
        noise : Tensor, shape (N, k)
            Standard normal draws (the caller owns the generators, so seeds stay separate).
        """
        mean, var = self.actor_head(states)
        actions = torch.addcmul(mean, var.sqrt(), noise)
        log_prob = -0.5 * ((noise * noise + var.log()).sum(1) + self.action_dim * _LOG_2PI)
        return actions, log_prob

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of ``actions`` under the current policy, (N,)."""
        mean, var = self.actor_head(states)
        diff = actions - mean
        return -0.5 * ((diff * diff / var + var.log()).sum(1) + self.action_dim * _LOG_2PI)

    def value(self, states: torch.Tensor) -> torch.Tensor:
        """Critic's value of each state, (N,)."""
        p = self.params
        s = torch.sigmoid(torch.addmm(p["critic.0.bias"] * 2, states, p["critic.0.weight"].T * 2))
        out = s @ (p["critic.2.weight"].T * 2) + (p["critic.2.bias"] - p["critic.2.weight"].sum(1))
        return out.squeeze(1)


class GaussianPPO:
    """The PPO learner of M-FOS around a :class:`GaussianActorCritic`.

    Parameters
    ----------
    net : GaussianActorCritic
    lr : float
        Adam step size (0.002 against learners, 0.0002 in self-play).
    betas : tuple of float
    gamma : float
        Meta-discount of the Monte-Carlo returns (0.99).
    epochs : int
        Full-batch passes per update (4).
    clip : float
        PPO ratio clip (0.2).
    entropy : float
        Entropy bonus coefficient (0.01).
    chunk : int, optional
        Rows per chunk of the hand-written pass; changes only the float summation order.
        Default: :data:`CPU_CHUNK` on the CPU, :data:`GPU_CHUNK` on a GPU.
    """

    def __init__(
        self,
        net: GaussianActorCritic,
        *,
        lr: float = 0.002,
        betas: tuple[float, float] = (0.9, 0.999),
        gamma: float = 0.99,
        epochs: int = 4,
        clip: float = 0.2,
        entropy: float = 0.01,
        chunk: int | None = None,
    ) -> None:
        self.net = net
        self.gamma, self.epochs, self.clip, self.entropy = gamma, epochs, clip, entropy
        if chunk is None:
            chunk = CPU_CHUNK if net.device.type == "cpu" else GPU_CHUNK
        self.chunk = chunk
        self._leaves = [net.params[name].requires_grad_(False) for name in net.NAMES]
        self.optimizer = torch.optim.Adam(self._leaves, lr=lr, betas=betas)

    def state_dict(self) -> dict[str, object]:
        """Network and optimiser state (for checkpoints; tensors on the network's device)."""
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a :meth:`state_dict` saved on any device (network parameters are updated
        in place; the optimiser moves its state to the parameters' device)."""
        for name, value in state["net"].items():  # type: ignore[union-attr]
            self.net.params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]

    def normalised_returns(self, rewards: torch.Tensor) -> torch.Tensor:
        """Discounted returns, standardised over all ``T * B`` values, flattened (N,)."""
        returns = discounted_returns(rewards, self.gamma).reshape(-1)
        return (returns - returns.mean()) / (returns.std() + 1e-5)

    def update(self, batch: Rollout) -> dict[str, torch.Tensor]:
        """``epochs`` full-batch PPO steps on one meta-episode; returns the last losses.

        The losses are 0-dim tensors on the network's device: nothing is read back to the
        host (``float()`` them when needed).
        """
        returns = self.normalised_returns(batch.rewards).to(self.net.dtype)
        ones = torch.ones(batch.states.shape[0], 1, dtype=self.net.dtype, device=self.net.device)
        inputs = torch.cat((batch.states, ones), dim=1)
        stats: dict[str, torch.Tensor] = {}
        for _ in range(self.epochs):
            grads, stats = self.gradient(inputs, batch.actions, batch.log_probs, returns,
                                         read_back=False)
            for leaf, name in zip(self._leaves, self.net.NAMES, strict=True):
                leaf.grad = grads[name]
            self.optimizer.step()
        return stats

    def gradient(
        self,
        inputs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        returns: torch.Tensor,
        read_back: bool = True,
    ) -> tuple[dict[str, torch.Tensor], dict[str, float] | dict[str, torch.Tensor]]:
        """Full-batch gradient of the PPO loss, by hand, chunk by chunk.

        The loss is ``mean(-min(ratio A, clip(ratio) A)) + 0.5 mean((V - G)^2) -
        entropy * mean(H)``, ``A = G - V`` with ``V`` held constant, as in the reference.

        Parameters
        ----------
        inputs : Tensor, shape (N, d + 1)
            States with a trailing column of ones.
        actions : Tensor, shape (N, k)
        old_log_probs, returns : Tensor, shape (N,)

        Returns
        -------
        grads : dict
            Gradient of every parameter, by name.
        stats : dict
            ``policy_loss``, ``value_loss``, ``entropy`` of this pass: floats, or with
            ``read_back`` False 0-dim tensors left on the device (no wait for it).
        """
        net, k = self.net, self.net.action_dim
        device = inputs.device
        n = inputs.shape[0]
        first, second = net.folded()
        # Feature-major throughout ((2H, c) hidden units): these thin products run several
        # times faster on the CPU's BLAS in this orientation than batch-major.
        h = net.hidden
        first_t = first.T.contiguous()  # (2H, d + 1)
        second_t = second[:-1].T.contiguous()  # (2k + 1, 2H), block-diagonal
        head_a = second_t[: 2 * k, :h].contiguous()  # (2k, H): actor outputs
        head_a_t = head_a.T.contiguous()
        head_c = second_t[2 * k :, h:].contiguous()  # (1, H): critic value
        head_c_t = head_c.T.contiguous()
        bias_out = second[-1].unsqueeze(1)
        # the first layer's gradient is summed as x^T dz^T, (d + 1, 2H): the long reduction
        # over samples is several times faster in this orientation than dz x
        g_first = torch.zeros_like(first)
        g_head_a, g_head_c = torch.zeros_like(head_a), torch.zeros_like(head_c)
        g_bias_out = torch.zeros_like(second[-1])
        lo, hi = 1 - self.clip, 1 + self.clip
        totals = torch.zeros(3, dtype=torch.float64, device=device)
        # chunk-sized work buffers, reused: fresh megabyte-sized tensors cost page faults
        buffers = torch.empty(3, 2 * h, min(self.chunk, n), dtype=first.dtype, device=device)
        for start in range(0, n, self.chunk):
            x = inputs[start : start + self.chunk]  # (c, d + 1)
            c = x.shape[0]
            s, d_s, slope = buffers[0, :, :c], buffers[1, :, :c], buffers[2, :, :c]
            a = actions[start : start + self.chunk].T  # (k, c)
            g = returns[start : start + self.chunk]
            torch.mm(first_t, x.T, out=s).sigmoid_()  # (2H, c): actor then critic units
            s_a, s_c = s[:h], s[h:]  # contiguous row blocks
            out = torch.empty(2 * k + 1, c, dtype=s.dtype, device=device)
            torch.addmm(bias_out[: 2 * k], head_a, s_a, out=out[: 2 * k])
            torch.addmm(bias_out[2 * k :], head_c, s_c, out=out[2 * k :])
            mean, raw, v = out[:k], out[k : 2 * k], out[2 * k]
            var = torch.nn.functional.softplus(raw)
            diff = a - mean
            inv_var = var.reciprocal()
            log_var = var.log()
            log_prob = -0.5 * ((diff * diff * inv_var + log_var).sum(0) + k * _LOG_2PI)
            ratio = (log_prob - old_log_probs[start : start + self.chunk]).exp()
            adv = g - v
            clipped = ratio.clamp(lo, hi)
            surrogate = torch.minimum(ratio * adv, clipped * adv)
            # d(-surrogate)/d ratio: the unclipped branch when it is the smaller one, or
            # when ratio lies inside the clip range (autograd's tie rule gives the same)
            live = (ratio * adv < clipped * adv) | ((ratio >= lo) & (ratio <= hi))
            d_log_prob = -(adv * ratio * live) / n
            # d log_prob / d mean = diff / var;  d log_prob / d var = (diff^2 / var - 1) / (2 var)
            d_out = torch.empty_like(out)
            torch.mul(d_log_prob, diff * inv_var, out=d_out[:k])
            d_var = d_log_prob * 0.5 * (diff * diff * inv_var - 1) * inv_var
            d_var -= (0.5 * self.entropy / n) * inv_var  # from -entropy * 0.5 log var
            torch.mul(d_var, torch.sigmoid(raw), out=d_out[k : 2 * k])
            torch.sub(v, g, out=d_out[2 * k]).div_(n)  # 0.5 * mean((V - G)^2)
            d_a, d_c = d_out[: 2 * k], d_out[2 * k :]
            g_head_a.addmm_(d_a, s_a.T)
            g_head_c.addmm_(d_c, s_c.T)
            g_bias_out += d_out.sum(1)
            torch.mm(head_a_t, d_a, out=d_s[:h])
            torch.mul(head_c_t, d_c, out=d_s[h:])
            torch.addcmul(s, s, s, value=-1.0, out=slope)  # s (1 - s)
            d_z = d_s.mul_(slope)
            g_first.addmm_(x.T, d_z.T)
            with torch.no_grad():
                totals += torch.stack(
                    (-surrogate.sum(), 0.5 * (adv * adv).sum(), 0.5 * log_var.sum())
                ).to(torch.float64)
        g_second_t = torch.zeros_like(second_t)
        g_second_t[: 2 * k, :h] = g_head_a
        g_second_t[2 * k :, h:] = g_head_c
        g_second = torch.cat((g_second_t.T, g_bias_out.unsqueeze(0)))
        entropy = totals[2] / n + 0.5 * k * (1 + _LOG_2PI)
        stats = {"policy_loss": totals[0] / n, "value_loss": totals[1] / n, "entropy": entropy}
        if read_back:
            stats = {key: value.item() for key, value in stats.items()}
        return self._unfold(g_first, g_second), stats

    def _unfold(self, g_first: torch.Tensor, g_second: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients of the folded weights -> gradients of the named parameters."""
        h, k = self.net.hidden, self.net.action_dim
        g_w1 = 2 * g_first[:-1].T  # (2H, d)
        g_b1 = 2 * g_first[-1]
        g_bias_a, g_bias_c = g_second[-1, : 2 * k], g_second[-1, 2 * k :]
        # second = 2 W^T with bias (b - row sums of W): dW = 2 g^T - g_bias per output row
        g_wa = 2 * g_second[:h, : 2 * k].T - g_bias_a.unsqueeze(1)
        g_wc = 2 * g_second[h : 2 * h, 2 * k :].T - g_bias_c.unsqueeze(1)
        return {
            "actor.0.weight": g_w1[:h].contiguous(),
            "actor.0.bias": g_b1[:h].contiguous(),
            "actor.2.weight": g_wa.contiguous(),
            "actor.2.bias": g_bias_a.contiguous(),
            "critic.0.weight": g_w1[h:].contiguous(),
            "critic.0.bias": g_b1[h:].contiguous(),
            "critic.2.weight": g_wc.contiguous(),
            "critic.2.bias": g_bias_c.contiguous(),
        }
