"""The hand-written PPO gradient of M-FOS equals autograd on the plain formulation."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal

from recip_tourney.agents.gaussian_ppo import (
    GaussianActorCritic,
    GaussianPPO,
    Rollout,
    discounted_returns,
)


def reference_loss(
    params: dict[str, torch.Tensor],
    states: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    returns: torch.Tensor,
    clip: float,
    entropy: float,
) -> torch.Tensor:
    """The reference's ``ppo.py`` loss with nn-style Linear/tanh and a MultivariateNormal."""
    k = actions.shape[1]
    hidden = torch.tanh(states @ params["actor.0.weight"].T + params["actor.0.bias"])
    out = hidden @ params["actor.2.weight"].T + params["actor.2.bias"]
    mean, var = out[:, :k], torch.nn.functional.softplus(out[:, k:])
    dist = MultivariateNormal(mean, torch.diag_embed(var))
    log_probs = dist.log_prob(actions)
    hidden_c = torch.tanh(states @ params["critic.0.weight"].T + params["critic.0.bias"])
    values = (hidden_c @ params["critic.2.weight"].T + params["critic.2.bias"]).squeeze(1)
    ratios = torch.exp(log_probs - old_log_probs)
    advantages = returns - values.detach()
    surr1 = ratios * advantages
    surr2 = torch.clamp(ratios, 1 - clip, 1 + clip) * advantages
    loss = (
        -torch.min(surr1, surr2)
        + 0.5 * torch.nn.functional.mse_loss(values, returns)
        - entropy * dist.entropy()
    )
    return loss.mean()


def _problem(seed: int, n: int = 300, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    net = GaussianActorCritic(10, 5, 16, g, torch.float64)
    states = torch.rand(n, 10, generator=g, dtype=torch.float64)
    noise = torch.randn(n, 5, generator=g, dtype=torch.float64)
    actions, log_probs = net.act(states, noise)
    # move the policy away from the sampling one, so that some ratios leave the clip range
    old = log_probs + spread * torch.randn(n, generator=g, dtype=torch.float64)
    returns = torch.randn(n, generator=g, dtype=torch.float64)
    return net, states, actions, old, returns


@pytest.mark.parametrize("chunk", [7, 64, 1000])
@pytest.mark.parametrize("spread", [0.0, 0.5])
def test_hand_written_gradient_equals_autograd(chunk: int, spread: float) -> None:
    net, states, actions, old, returns = _problem(1, spread=spread)
    ppo = GaussianPPO(net, chunk=chunk)
    inputs = torch.cat((states, torch.ones(len(states), 1, dtype=states.dtype)), 1)
    grads, stats = ppo.gradient(inputs, actions, old, returns)
    leaves = {name: t.detach().clone().requires_grad_() for name, t in net.params.items()}
    loss = reference_loss(leaves, states, actions, old, returns, 0.2, 0.01)
    loss.backward()
    for name, leaf in leaves.items():
        torch.testing.assert_close(grads[name], leaf.grad, rtol=1e-9, atol=1e-11, msg=name)
    assert stats["policy_loss"] + stats["value_loss"] - 0.01 * stats["entropy"] == pytest.approx(
        loss.item(), abs=1e-9
    )


def test_log_prob_of_sampled_action_matches_torch_distribution() -> None:
    net, states, actions, _, _ = _problem(2, spread=0.0)
    mean, var = net.actor_head(states)
    expected = MultivariateNormal(mean, torch.diag_embed(var)).log_prob(actions)
    torch.testing.assert_close(net.log_prob(states, actions), expected)


def test_discounted_returns_closed_form() -> None:
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    expected = torch.tensor([[1 + 0.5**2 * 2], [0.5 * 2], [2.0]])
    torch.testing.assert_close(discounted_returns(rewards, 0.5), expected)


def test_update_improves_the_surrogate_and_is_deterministic() -> None:
    def run() -> dict[str, torch.Tensor]:
        net, states, actions, old, _ = _problem(3, spread=0.0)
        # reward actions whose first component is large: the mean of that component must rise
        rewards = actions[:, :1].T.clone()  # (T=1, N)
        ppo = GaussianPPO(net, lr=0.01, epochs=4, chunk=50)
        before = net.actor_head(states)[0][:, 0].mean()
        for _ in range(10):
            ppo.update(Rollout(states, actions, old, rewards))
        assert net.actor_head(states)[0][:, 0].mean() > before
        return net.state_dict()

    a, b = run(), run()
    for name in a:
        assert torch.equal(a[name], b[name])
