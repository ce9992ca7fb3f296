"""The future-value influence estimator (``agents/coins_influence_q.py``, rollout spec 5.3.2,
the reference's ``ValueOfInfluence``) used on tori other than 3 x 3.

Oracles: plain ``nn.Linear`` MLPs trained one after the other by ``torch.optim.Adam`` on the
same minibatches; synthetic games whose true influence is known; the switch of spec 8 item 13
as a closed form.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recip_tourney.agents.coins_influence_q import (
    FutureQInfluence,
    joint_features,
    model_names,
)
from recip_tourney.agents.returns import discounted_returns
from recip_tourney.config import load_config
from recip_tourney.errors import UserError
from recip_tourney.tournament.coins import CoinsSettings
from recip_tourney.tournament.match import worker_numerics

GAMMA = 0.99  # the agents' discount, the estimator's default


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def random_episode(steps: int, seeds: int, batch: int, cells: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random labels, actions and rewards of shapes (T, S, B, 4 | 2 | 2)."""
    labels = torch.randint(0, cells, (steps, seeds, batch, 4), generator=generator)
    actions = torch.randint(0, 5, (steps, seeds, batch, 2), generator=generator)
    rewards = torch.randn(steps, seeds, batch, 2, generator=generator, dtype=torch.float64)
    return labels, actions, rewards


def plain_mlp(est: FutureQInfluence, m: int, seed: int) -> nn.Sequential:
    """Model ``m`` of seed ``seed`` as plain modules (its dropped action's column removed)."""
    kept = est.mask[m].nonzero().squeeze(1)
    sizes = [len(kept), est.weights[1].shape[-1], est.weights[2].shape[-1]]
    with torch.random.fork_rng():  # building modules draws from the global generator
        module = nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(),
                               nn.Linear(sizes[1], sizes[1]), nn.ReLU(),
                               nn.Linear(sizes[1], est.players)).to(est.dtype)
    with torch.no_grad():
        for layer, linear in enumerate(module[::2]):
            w = est.weights[layer][m, seed]
            linear.weight.copy_((w[kept] if layer == 0 else w).T)
            linear.bias.copy_(est.biases[layer][m, seed, 0])
    return module


def test_model_names_and_feature_layout() -> None:
    assert model_names(2) == ["R", "R-0", "R-1", "Q", "Q-0", "Q-1"]
    labels = torch.tensor([[[[0, 15, 3, 7]]], [[[1, 2, 3, 4]]]])  # (T 2, S 1, B 1, 4), 4x4
    actions = torch.tensor([[[[4, 1]]], [[[0, 2]]]])
    x = joint_features(labels, actions, 16, torch.float64)
    assert x.shape == (2, 1, 1, 2 + 64 + 1)
    assert x[0, 0, 0, :2].tolist() == [4.0, 1.0] and x[1, 0, 0, :2].tolist() == [0.0, 2.0]
    hot = x[0, 0, 0, 2:-1].nonzero().squeeze(1).tolist()
    assert hot == [0, 16 + 15, 32 + 3, 48 + 7]  # channel k at 16 k + label_k
    assert x[:, 0, 0, -1].tolist() == [1.0, 0.0]  # tau = T - 1 - t


def test_initialisation_is_pytorch_default_draws() -> None:
    """Model by model, nn.Linear's own draws for the model's input width (the
    counterfactual models: one input fewer, a zero row where the dropped action was)."""
    est = FutureQInfluence(generators([5]), grid=4, hidden=8)
    torch.manual_seed(5)  # nn modules draw from the global generator
    width = 2 + 4 * 16 + 1
    for m, name in enumerate(est.names):
        fan_in = width - ("-" in name)
        module = nn.Sequential(nn.Linear(fan_in, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                               nn.Linear(8, 2))
        plain = plain_mlp(est, m, 0)
        for key, value in module.state_dict().items():
            assert torch.equal(plain.state_dict()[key], value), (name, key)
        if "-" in name:
            dropped = int(name.split("-")[1])
            assert torch.equal(est.weights[0][m, 0, dropped], torch.zeros(8))


def test_fit_equals_torch_adam_on_plain_modules() -> None:
    """Each model trained alone with its own Adam on the same minibatches (float64)."""
    gens = generators([3])
    est = FutureQInfluence(gens, grid=3, hidden=16, samples=100, minibatch=32, epochs=3,
                           dtype=torch.float64)
    data = torch.Generator().manual_seed(0)
    episodes = [random_episode(6, 1, 10, 9, data) for _ in range(2)]
    plains = [plain_mlp(est, m, 0) for m in range(len(est.names))]
    replay = torch.Generator().set_state(gens[0].get_state())  # the fit's draws, replayed
    for episode in episodes:
        est.store(*episode)
    est.fit()

    x = torch.cat([joint_features(lab, act, 9, torch.float64) for lab, act, _ in episodes],
                  dim=2)[:, 0].reshape(-1, est.features)
    rewards = torch.cat([r for *_, r in episodes], dim=2)[:, 0]
    future = (discounted_returns(rewards, GAMMA) - rewards).reshape(-1, 2)
    rewards = rewards.reshape(-1, 2)
    rows, size = x.shape[0], 100
    subsamples = [torch.randperm(rows, generator=replay)[:size] for _ in plains]
    orders = [[sub[torch.randperm(size, generator=replay)] for sub in subsamples]
              for _ in range(3)]
    for m, module in enumerate(plains):
        kept = est.mask[m].nonzero().squeeze(1)
        target = rewards if est.names[m].startswith("R") else future
        optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
        for epoch in range(3):
            for lo in range(0, size, 32):
                index = orders[epoch][m][lo: lo + 32]
                loss = nn.functional.mse_loss(module(x[index][:, kept]), target[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        trained = plain_mlp(est, m, 0)
        for key, value in module.state_dict().items():
            torch.testing.assert_close(trained.state_dict()[key], value, rtol=1e-10,
                                       atol=1e-12, msg=f"{est.names[m]} {key}")


def test_each_seed_is_bit_identical_alone_or_batched() -> None:
    with worker_numerics():
        g = torch.Generator().manual_seed(7)
        batched = FutureQInfluence(generators([10, 20, 30]), grid=4, samples=200,
                                   minibatch=64, epochs=2)
        alone = FutureQInfluence(generators([20]), grid=4, samples=200, minibatch=64, epochs=2)
        for _ in range(2):
            labels, actions, rewards = random_episode(8, 3, 24, 16, g)
            batched.store(labels, actions, rewards)
            alone.store(labels[:, 1:2], actions[:, 1:2], rewards[:, 1:2])
            batched.fit()
            alone.fit()
        for w_batched, w_alone in zip(batched.weights, alone.weights, strict=True):
            assert torch.equal(w_batched[:, 1:2], w_alone)
        assert torch.equal(batched.influence(labels, actions)[:, 1:2],
                           alone.influence(labels[:, 1:2], actions[:, 1:2]))


def synthetic_episode(steps: int, games: int, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Known influence on a 4 x 4 torus: actions uniform and independent of everything;
    agent 0 moves to cell a^0_t; the other cells are uniform. Rewards: r^0_t = 1[agent 0 on
    cell 4], r^1_t = 1[a^0_t = 4].

    So VI^{0->1} = 1[a^0 = 4] - 0.2 (immediate only); the future of player 0 is
    Q_0 - Q^{-0}_0 = gamma (1[a^0 = 4] - 0.2) (its next reward); player 1's action changes
    nothing.
    """
    labels, actions, _ = random_episode(steps, 1, games, 16, generator)
    labels[1:, ..., 0] = actions[:-1, ..., 0]
    rewards = torch.stack(((labels[..., 0] == 4).float(), (actions[..., 0] == 4).float()), -1)
    return labels, actions, rewards


@pytest.mark.parametrize("double_discount", [True, False])
def test_influence_identifies_a_known_influence(double_discount: bool) -> None:
    """gamma 0.5 keeps the far future's coin flips from drowning the one-step effect."""
    gamma = 0.5
    g = torch.Generator().manual_seed(1)
    est = FutureQInfluence(generators([1]), grid=4, gamma=gamma, samples=100_000,
                           minibatch=512, epochs=20, double_discount=double_discount)
    for _ in range(3):
        est.store(*synthetic_episode(8, 512, g))
        est.fit()
    labels, actions, _ = synthetic_episode(8, 512, g)
    immediate, future = est.influence_parts(labels, actions)
    vi = est.influence(labels, actions)
    c = gamma if double_discount else 1.0  # spec 8 item 13
    torch.testing.assert_close(vi, immediate + c * future)
    four = actions[..., 0] == 4
    # single rows are noisy (the future targets are sums of coin flips); group means are not
    assert immediate[..., 0, 1][four].mean().item() == pytest.approx(0.8, abs=0.06)
    assert immediate[..., 0, 1][~four].mean().item() == pytest.approx(-0.2, abs=0.06)
    last = torch.arange(8) == 7  # no step after the last one: no future influence
    early, early_four = future[~last][..., 0, 0], four[~last]
    assert early[early_four].mean().item() == pytest.approx(0.8 * gamma, abs=0.08)
    assert early[~early_four].mean().item() == pytest.approx(-0.2 * gamma, abs=0.08)
    assert abs(future[last][..., 0, 0].mean().item()) < 0.08
    for group in (four, ~four):
        assert abs(future[..., 0, 1][group].mean().item()) < 0.08
        assert abs(immediate[..., 0, 0][group].mean().item()) < 0.08
    for b in range(5):  # player 1's action changes nothing
        for v in (0, 1):
            assert abs(vi[..., 1, v][actions[..., 1] == b].mean().item()) < 0.08


def test_the_game_picks_the_estimator_of_the_reference_trainer() -> None:
    assert CoinsSettings().estimator == "transition"
    assert CoinsSettings(grid=4).estimator == "future_q"
    assert CoinsSettings(influence={"model": "future_q"}).estimator == "future_q"
    with pytest.raises(UserError, match="transition enumerates the next states of a 3x3"):
        load_config("coins", "ci", None, ["settings.grid=5", "settings.influence.model=transition"])
