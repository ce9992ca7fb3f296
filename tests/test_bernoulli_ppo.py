"""The grouped PPO of the rollout IPD equals the per-sample formulation of the reference."""

from __future__ import annotations

import pytest
import torch

from recip_tourney.agents.bernoulli_ppo import (
    GroupedPPO,
    MemoryOneNets,
    discounted_returns,
    log_policy,
)
from recip_tourney.envs.ipd_rollout import OBSERVATION_FEATURES


def _nets(seeds: int, hidden: int = 2) -> MemoryOneNets:
    gens = [torch.Generator().manual_seed(10 + s) for s in range(seeds)]
    return MemoryOneNets(hidden, gens, torch.float64)


def _mlp(params: dict[str, torch.Tensor], net: str, seed: int, x: torch.Tensor) -> torch.Tensor:
    """Plain per-sample MLP (Linear, ReLU, Linear, ReLU, Linear) of one seed."""
    h = x @ params[f"{net}.0.weight"][seed].T + params[f"{net}.0.bias"][seed]
    h = h.relu() @ params[f"{net}.1.weight"][seed].T + params[f"{net}.1.bias"][seed]
    return (h.relu() @ params[f"{net}.2.weight"][seed].T + params[f"{net}.2.bias"][seed])[:, 0]


def _per_sample_loss(ppo: GroupedPPO, flat, obs, actions, rewards, old_logits) -> torch.Tensor:
    """The reference's loss: per-sample Bernoulli log-probs, min(rho A, clip(rho) A)..."""
    params = ppo.nets.named(flat)
    steps, seeds, batch = obs.shape
    returns = ppo.standardised_returns(rewards)
    features = torch.tensor(OBSERVATION_FEATURES, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for s in range(seeds):
        x = features[obs[:, s].reshape(-1)]
        a = actions[:, s].reshape(-1).to(torch.float64)
        g = returns[:, s].reshape(-1)
        p_defect = torch.sigmoid(_mlp(params, "actor", s, x))
        dist = torch.distributions.Bernoulli(probs=p_defect)
        old = torch.distributions.Bernoulli(logits=old_logits[s][obs[:, s].reshape(-1)])
        value = _mlp(params, "critic", s, x)
        ratio = (dist.log_prob(a) - old.log_prob(a)).exp()
        adv = g - value.detach()
        surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - ppo.clip, 1 + ppo.clip) * adv)
        loss = (-surrogate - ppo.entropy * dist.entropy()).mean() + 0.5 * ((value - g) ** 2).mean()
        total = total + loss
    return total


@pytest.mark.parametrize("drift", [0.0, 0.05, 0.5])
def test_grouped_loss_and_gradient_equal_the_per_sample_ones(drift: float) -> None:
    seeds, steps, batch = 3, 6, 40
    gen = torch.Generator().manual_seed(0)
    ppo = GroupedPPO(_nets(seeds), lr=0.01, gamma=0.9, epochs=1, clip=0.1, entropy=0.02)
    obs = torch.randint(0, 5, (steps, seeds, batch), generator=gen)
    actions = torch.randint(0, 2, (steps, seeds, batch), generator=gen)
    rewards = -3 * torch.rand(steps, seeds, batch, generator=gen, dtype=torch.float64)
    old_logits = ppo.nets.forward()[0].clone()
    # move the policy away from the acting one, so that some ratios leave the clip range
    ppo.nets.flat += drift * torch.randn(ppo.nets.flat.shape, generator=gen, dtype=torch.float64)
    loss, grad = ppo.loss_and_gradient(ppo.group_sums(obs, actions, rewards),
                                       log_policy(old_logits))
    flat = ppo.nets.flat.clone().requires_grad_()
    want = _per_sample_loss(ppo, flat, obs, actions, rewards, old_logits)
    torch.testing.assert_close(loss.sum(), want, rtol=1e-10, atol=1e-12)
    (want_grad,) = torch.autograd.grad(want, flat)
    torch.testing.assert_close(grad, want_grad, rtol=1e-8, atol=1e-12)


def test_adam_step_is_torch_adam() -> None:
    ppo = GroupedPPO(_nets(2), lr=0.01, gamma=0.96, epochs=1, clip=0.1, entropy=0.02)
    leaf = ppo.nets.flat.clone().requires_grad_()
    adam = torch.optim.Adam([leaf], lr=0.01)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        grad = torch.randn(leaf.shape, generator=gen, dtype=torch.float64)
        leaf.grad = grad.clone()
        adam.step()
        ppo.adam_step(grad)
    torch.testing.assert_close(ppo.nets.flat, leaf.detach(), rtol=1e-12, atol=1e-14)


def test_discounted_returns_match_the_backward_recursion() -> None:
    rewards = torch.randn(7, 3, dtype=torch.float64)
    want = torch.empty_like(rewards)
    running = torch.zeros(3, dtype=torch.float64)
    for t in range(6, -1, -1):
        running = rewards[t] + 0.96 * running
        want[t] = running
    torch.testing.assert_close(discounted_returns(rewards, 0.96), want)


def test_seeds_do_not_mix() -> None:
    """A seed's update is the same whether or not other seeds share the batch."""
    steps, batch = 8, 32
    gen = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 5, (steps, 2, batch), generator=gen)
    actions = torch.randint(0, 2, (steps, 2, batch), generator=gen)
    rewards = -3 * torch.rand(steps, 2, batch, generator=gen, dtype=torch.float64)
    both = GroupedPPO(_nets(2), lr=0.01, gamma=0.96, epochs=3, clip=0.1, entropy=0.02)
    both.update(obs, actions, rewards)
    alone = GroupedPPO(_nets(1), lr=0.01, gamma=0.96, epochs=3, clip=0.1, entropy=0.02)
    alone.update(obs[:, :1], actions[:, :1], rewards[:, :1])
    torch.testing.assert_close(both.nets.flat[:1], alone.nets.flat)


def test_ppo_learns_to_defect_against_a_fixed_cooperator() -> None:
    """Against ALLC, defecting pays 0 instead of -1 in every state: P(C) must fall."""
    gen = torch.Generator().manual_seed(2)
    ppo = GroupedPPO(_nets(1), lr=0.005, gamma=0.96, epochs=10, clip=0.1, entropy=0.02)
    start = ppo.nets.p_cooperate()[0, 0].item()
    obs = torch.zeros(32, 1, 256, dtype=torch.long)
    for _ in range(60):
        p_c = ppo.nets.p_cooperate()
        u = torch.rand(32, 1, 256, generator=gen, dtype=torch.float64)
        actions = torch.empty(32, 1, 256, dtype=torch.long)
        state = torch.zeros(1, 256, dtype=torch.long)
        for t in range(32):
            obs[t] = state
            actions[t] = (u[t] >= p_c.gather(1, state)).long()
            state = 1 + 2 * actions[t]  # the opponent always cooperates
        ppo.update(obs, actions, actions.to(torch.float64) - 1.0)
    assert ppo.nets.p_cooperate()[0].max().item() < min(start, 0.5) - 0.1
