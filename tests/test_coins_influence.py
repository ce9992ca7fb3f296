"""The Coins value-influence estimator (``agents/coins_influence.py``, rollout spec 5.3.3-5.3.4).

Oracles: plain ``nn.Sequential`` modules (``Conv2d`` with circular padding, ``Linear``)
loaded with the estimator's weights, and trained by ``torch.optim.Adam`` on the same
minibatches; a brute-force sum over the 6561 next states; synthetic games whose true
influence is known.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional

from recip_tourney.agents.coins_influence import CoinsVoI, fit_due
from recip_tourney.agents.influence_features import (
    FEATURES,
    all_states,
    one_hot_states,
    state_labels,
)
from recip_tourney.agents.influence_models import DROPPED_ACTION, MLP_MODELS, MODELS
from recip_tourney.agents.torus_conv import dense_circular_conv
from recip_tourney.tournament.match import worker_numerics

GAMMA = 0.99


def critic_module(value_time: bool = False) -> nn.Sequential:
    """The reference conv critic (spec 5.3.3) as plain modules."""
    conv = {"kernel_size": 3, "padding": 1, "padding_mode": "circular"}
    return nn.Sequential(nn.Conv2d(4, 16, **conv), nn.ReLU(), nn.Conv2d(16, 16, **conv),
                         nn.ReLU(), nn.Flatten(), nn.Linear(144 + value_time, 64), nn.ReLU(),
                         nn.Linear(64, 2))


def mlp_module(model: str) -> nn.Sequential:
    """The reference MLP of ``model`` (39 or 38 inputs; 2 or 36 outputs)."""
    fan_in = FEATURES - (DROPPED_ACTION[MLP_MODELS.index(model)] is not None)
    out = 2 if model.startswith("R") else 36
    return nn.Sequential(nn.Linear(fan_in, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, out))


def loaded(est: CoinsVoI, model: str, seed: int) -> nn.Sequential:
    """A plain module holding (a copy of) one model of one seed."""
    module = critic_module(est.value_time) if model == "V" else mlp_module(model)
    module.to(est.dtype)
    module.load_state_dict({k: v.clone() for k, v in est.parameters(model, seed).items()})
    return module


def critic_forward(module: nn.Sequential, states: torch.Tensor,
                   tau: torch.Tensor | None = None) -> torch.Tensor:
    """The plain critic on one-hot states (n, 36), with ``tau`` (n,) after the Flatten."""
    h = module[:5](states.view(-1, 4, 3, 3))
    if tau is not None:
        h = torch.cat((h, tau.view(-1, 1)), dim=1)
    return module[5:](h)


def mlp_inputs(x: torch.Tensor, model: str) -> torch.Tensor:
    """The plain MLP's inputs: ``x`` (.., 39) without the model's dropped action."""
    dropped = DROPPED_ACTION[MLP_MODELS.index(model)]
    return x if dropped is None else torch.cat((x[..., :dropped], x[..., dropped + 1:]), -1)


def random_episode(steps: int, seeds: int, batch: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random labels, actions and rewards of shapes (T, S, B, 4 | 2 | 2)."""
    labels = torch.randint(0, 9, (steps, seeds, batch, 4), generator=generator)
    actions = torch.randint(0, 5, (steps, seeds, batch, 2), generator=generator)
    rewards = torch.randn(steps, seeds, batch, 2, generator=generator)
    return labels, actions, rewards


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_labels_and_one_hot_round_trip() -> None:
    labels = torch.randint(0, 9, (5, 4))
    flat = one_hot_states(labels)
    assert flat.shape == (5, 36) and torch.equal(flat.sum(-1), torch.full((5,), 4.0))
    assert torch.equal(state_labels(flat), labels)
    assert torch.equal(state_labels(flat.view(5, 4, 3, 3)), labels)
    assert torch.equal(state_labels(labels), labels)
    table = all_states()
    assert torch.equal(state_labels(table[729 * 2 + 81 * 7 + 9 * 0 + 5]),
                       torch.tensor([2, 7, 0, 5]))


def test_dense_conv_equals_circular_conv2d() -> None:
    g = torch.Generator().manual_seed(0)
    kernel = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(7, 3, 3, 3, generator=g, dtype=torch.float64)
    expected = functional.conv2d(functional.pad(x, (1, 1, 1, 1), mode="circular"), kernel)
    dense = dense_circular_conv(kernel)  # (5 * 9, 3 * 9)
    got = (x.view(7, 27) @ dense.T).view(7, 5, 3, 3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_initialisation_is_pytorch_default_draws() -> None:
    """Seed s's weights are nn.Conv2d / nn.Linear's own draws from its generator, model by
    model (V, R, R-0, R-1, P, P-0, P-1); the counterfactual models are 38-input Linears."""
    est = CoinsVoI(generators([3, 11]))
    for seed, number in enumerate((3, 11)):
        torch.manual_seed(number)  # nn modules draw from the global generator
        for model in MODELS:
            module = critic_module() if model == "V" else mlp_module(model)
            for key, value in module.state_dict().items():
                assert torch.equal(est.parameters(model, seed)[key], value), (model, key)
    w1 = est.view("mlp.w1")
    for m, dropped in enumerate(DROPPED_ACTION):
        if dropped is not None:
            assert torch.equal(w1[m, :, :, dropped], torch.zeros_like(w1[m, :, :, dropped]))
            # 64 x 38 draws, bound 1/sqrt(38): some exceed the 39-input bound 1/sqrt(39)
            assert w1[m].abs().max() <= 1 / math.sqrt(38)
            assert w1[m].abs().max() > 1 / math.sqrt(39)


@pytest.mark.parametrize("value_time", [False, True])
def test_stacked_models_equal_plain_modules(value_time: bool) -> None:
    """After a fit (weights away from their draws), the fused MLP stack and the Fourier-
    domain critic compute what plain Linear / circular Conv2d modules compute."""
    g = torch.Generator().manual_seed(1)
    est = CoinsVoI(generators([0, 1]), samples=128, minibatch=64, epochs=2,
                   value_time=value_time)
    episode = random_episode(6, 2, 16, g)
    est.store(*episode)
    est.fit()
    labels, actions, _ = episode
    rewards, probs = est.predict(labels, actions)  # (3, T, S, B, 2), (3, T, S, B, 4, 9)
    tau = (5 - torch.arange(6.0)).view(6, 1).expand(6, 16)
    table = est.value_table(torch.tensor([3.0, 0.0, -1.0]) if value_time else None)
    for seed in range(2):
        x = torch.cat((actions[:, seed].float(), one_hot_states(labels[:, seed]),
                       tau.unsqueeze(-1)), dim=-1)  # (T, B, 39)
        for m, model in enumerate(MLP_MODELS):
            out = loaded(est, model, seed)(mlp_inputs(x, model))
            if m < 3:
                torch.testing.assert_close(rewards[m, :, seed], out, rtol=1e-5, atol=1e-5)
            else:
                expected = out.view(6, 16, 4, 9).softmax(-1)
                torch.testing.assert_close(probs[m - 3, :, seed], expected, rtol=1e-5,
                                           atol=1e-6)
        critic = critic_module(value_time)
        critic.load_state_dict({k: v.clone() for k, v in est.parameters("V", seed).items()})
        if value_time:
            for k, t in enumerate((3.0, 0.0)):
                expected = critic_forward(critic, all_states(), torch.full((6561,), t))
                torch.testing.assert_close(table[seed, k], expected, rtol=1e-5, atol=1e-5)
            assert torch.equal(table[seed, 2], torch.zeros(6561, 2))  # after the last step
        else:
            expected = critic_forward(critic, all_states())
            torch.testing.assert_close(table[seed], expected, rtol=1e-5, atol=1e-5)


def test_expected_values_equal_a_loop_over_all_next_states() -> None:
    g = torch.Generator().manual_seed(2)
    probs = torch.rand(2, 4, 9, 3, generator=g, dtype=torch.float64)
    probs /= probs.sum(2, keepdim=True)
    table = torch.randn(2, 6561, 2, generator=g, dtype=torch.float64)
    got = CoinsVoI.expected_values(probs, table)  # (2, 2, 3)
    p, v = probs.tolist(), table.tolist()
    for group, row in itertools.product(range(2), range(3)):
        total = [0.0, 0.0]
        for index, cells in enumerate(itertools.product(range(9), repeat=4)):
            weight = math.prod(p[group][k][cells[k]][row] for k in range(4))
            total = [total[j] + weight * v[group][index][j] for j in range(2)]
        assert got[group, :, row].tolist() == pytest.approx(total, rel=1e-12, abs=1e-12)


def reference_fit(est: CoinsVoI, gens: list[torch.Generator], episodes: list,
                  modules: dict) -> None:
    """Train plain modules (``modules[(model, seed)]``) as the spec says, with
    ``torch.optim.Adam``, on the minibatches the estimator draws from ``gens``; the
    datasets are built here from the raw ``episodes``."""
    labels = torch.cat([e[0] for e in episodes], dim=2)
    actions = torch.cat([e[1] for e in episodes], dim=2)
    rewards = torch.cat([e[2] for e in episodes], dim=2).to(est.dtype)
    steps, seeds, games = labels.shape[:3]
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(steps - 1, -1, -1):
        running = rewards[t] + GAMMA * running
        returns[t] = running
    n, n_p = steps * games, (steps - 1) * games
    sizes = [min(est.samples, n if m[0] in "VR" else n_p) for m in MODELS]
    for seed, g in enumerate(gens):
        subsamples = CoinsVoI.draw_subsamples(g, n, n_p, sizes)
        orders = [CoinsVoI.draw_epoch(g, subsamples) for _ in range(est.epochs)]
        tau = (steps - 1 - torch.arange(steps, dtype=est.dtype)).view(-1, 1).expand(steps, games)
        x = torch.cat((actions[:, seed].to(est.dtype), one_hot_states(labels[:, seed], est.dtype),
                       tau.unsqueeze(-1)), dim=-1).reshape(n, FEATURES)
        x_p = x[:n_p].clone()
        if est.time_feature == "faithful":
            x_p[:, -1] -= 1
        data = {
            "V": (x[:, 2:], returns[:, seed].reshape(n, 2)),
            "R": (x, rewards[:, seed].reshape(n, 2)),
            "P": (x_p, labels[1:, seed].reshape(n_p, 4)),
        }
        for m, model in enumerate(MODELS):
            module = modules[(model, seed)]
            inputs, targets = data[model[0]]
            if model != "V":
                inputs = mlp_inputs(inputs, model)
            optimiser = torch.optim.Adam(module.parameters(), lr=est.lr)
            for epoch in range(est.epochs):
                order = orders[epoch][m]
                for lo in range(0, len(order), est.minibatch):
                    rows = order[lo: lo + est.minibatch]
                    if model == "V":
                        tau = inputs[rows, -1] if est.value_time else None
                        out = critic_forward(module, inputs[rows, :36], tau)
                    else:
                        out = module(inputs[rows])
                    if model[0] == "P":
                        log_p = out.view(-1, 4, 9).log_softmax(-1)
                        loss = functional.nll_loss(log_p.reshape(-1, 9),
                                                   targets[rows].reshape(-1))
                    else:
                        loss = functional.mse_loss(out, targets[rows])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()


@pytest.mark.parametrize(("steps", "games", "samples", "time_feature", "value_time"), [
    (6, 16, 128, "faithful", False),  # subsample, P's last minibatch partial
    (3, 16, 4096, "consistent", False),  # whole buffer; P has 2 minibatches per epoch, V/R 3
    (4, 8, 48, "faithful", True),  # the time-aware critic
])
def test_fit_equals_torch_adam_on_plain_modules(steps: int, games: int, samples: int,
                                                time_feature: str, value_time: bool) -> None:
    """In float64: Adam turns a gradient's sign into a full step, so a float32 rounding
    that flips a near-zero gradient (a ReLU at its kink) moves a weight by the step size."""
    g = torch.Generator().manual_seed(4)
    gens = generators([5, 6])
    est = CoinsVoI(gens, samples=samples, minibatch=32, epochs=3, time_feature=time_feature,
                   value_time=value_time, dtype=torch.float64)
    modules = {(model, s): loaded(est, model, s) for model in MODELS for s in range(2)}
    episodes = [random_episode(steps, 2, games, g) for _ in range(2)]
    for episode in episodes:
        est.store(*episode)
    copies = [torch.Generator().set_state(gen.get_state()) for gen in gens]
    est.fit()
    reference_fit(est, copies, episodes, modules)
    if steps == 3:
        assert est.adam_steps == [9, 9, 9, 9, 6, 6, 6]
    for (model, s), module in modules.items():
        for key, value in module.state_dict().items():
            torch.testing.assert_close(est.parameters(model, s)[key], value, rtol=1e-9,
                                       atol=1e-9, msg=f"{model} seed {s} {key}")


@pytest.mark.parametrize("value_time", [False, True])
def test_each_seed_is_bit_identical_alone_or_batched(value_time: bool) -> None:
    """Under the matches' numerics (one torch thread), whatever the test runner's threads."""
    with worker_numerics():
        run_alone_and_batched(value_time)


def run_alone_and_batched(value_time: bool) -> None:
    g = torch.Generator().manual_seed(7)
    batched = CoinsVoI(generators([10, 20, 30]), samples=256, minibatch=64, epochs=2,
                       value_time=value_time)
    alone = CoinsVoI(generators([20]), samples=256, minibatch=64, epochs=2,
                     value_time=value_time)
    for _ in range(2):
        labels, actions, rewards = random_episode(8, 3, 24, g)
        batched.store(labels, actions, rewards)
        alone.store(labels[:, 1:2], actions[:, 1:2], rewards[:, 1:2])
        batched.fit()
        alone.fit()
    for model in MODELS:
        for key, value in batched.parameters(model, 1).items():
            assert torch.equal(value, alone.parameters(model, 0)[key]), (model, key)
    vi_batched = batched.influence(labels, actions)
    vi_alone = alone.influence(labels[:, 1:2], actions[:, 1:2])
    assert torch.equal(vi_batched[:, 1:2], vi_alone)
    assert torch.equal(batched.losses()[1], alone.losses()[0])


def test_fit_schedule() -> None:
    assert [fit_due(e) for e in range(1, 10)] == [True, True, False, True, False, True,
                                                  False, True, False]
    est = CoinsVoI(generators([0]), init_episodes=3, period=4)
    assert [e for e in range(1, 14) if est.due(e)] == [1, 2, 3, 4, 8, 12]


@pytest.mark.parametrize("time_feature", ["faithful", "consistent"])
def test_time_feature_switch(time_feature: str) -> None:
    """faithful: the transition models see tau = T - 2 - t in training; consistent and the
    reward models: T - 1 - t; queries always T - 1 - t."""
    est = CoinsVoI(generators([0]), time_feature=time_feature)
    steps, games = 5, 4
    est.store(*random_episode(steps, 1, games, torch.Generator().manual_seed(0)))
    t = torch.arange(steps).repeat_interleave(games).float()
    shift = 1.0 if time_feature == "faithful" else 0.0
    for model in MLP_MODELS:
        tau = est.training_inputs(model)[0, :, -1]
        if model.startswith("P"):
            assert torch.equal(tau, (steps - 1 - t - shift)[: (steps - 1) * games])
        else:
            assert torch.equal(tau, steps - 1 - t)
    with pytest.raises(ValueError, match="time_feature"):
        CoinsVoI(generators([0]), time_feature="other")  # type: ignore[arg-type]


def synthetic_episode(steps: int, games: int, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Known influence: actions uniform and independent of everything; agent 0 moves to
    cell a^0_t; the other cells are uniform. Rewards: r^0_t = 1[agent 0 on cell 2],
    r^1_t = 1[a^0_t = 4].

    So VI^{0->1} = 1[a^0 = 4] - 0.2 (immediate only: V^1 does not depend on the state);
    VI^{0->0} = gamma (1[a^0 = 2] - 0.2) (future only: V^0 is 1 higher on cell 2); player
    1's action changes nothing: VI^{1->v} = 0.
    """
    labels, actions, _ = random_episode(steps, 1, games, generator)
    labels[1:, ..., 0] = actions[:-1, ..., 0]
    rewards = torch.stack(((labels[..., 0] == 2).float(), (actions[..., 0] == 4).float()), -1)
    return labels, actions, rewards


def test_influence_identifies_a_known_influence() -> None:
    """Averages over rows (a single row's estimate is off by ~0.2 at these small sizes)."""
    g = torch.Generator().manual_seed(8)
    est = CoinsVoI(generators([0]), samples=2048, minibatch=256, epochs=20)
    for _ in range(2):
        est.store(*synthetic_episode(8, 128, g))
        est.fit()
    labels, actions, _ = synthetic_episode(8, 256, g)
    rewards, probs = est.predict(labels, actions)
    assert rewards.shape == (3, 8, 1, 256, 2) and probs.shape == (3, 8, 1, 256, 4, 9)
    a0 = actions[..., 0]
    # agent 0's next cell: P and P^{-1} know it, P^{-0} spreads it over cells 0..4
    on_target = probs[..., 0, :].gather(-1, a0.expand(3, -1, -1, -1).unsqueeze(-1))
    assert on_target[0].mean() > 0.9 and on_target[2].mean() > 0.9
    assert on_target[1].mean().item() == pytest.approx(0.2, abs=0.03)
    spread = probs[1, ..., 0, :].mean((0, 1, 2))
    torch.testing.assert_close(spread[:5], torch.full((5,), 0.2), atol=0.07, rtol=0)

    immediate, future = est.influence_parts(labels, actions)
    vi = est.influence(labels, actions)
    torch.testing.assert_close(vi, immediate + GAMMA * future)
    four, two = a0 == 4, a0 == 2
    # 0 -> 1: immediate, 1[a0 = 4] - 0.2
    assert immediate[..., 0, 1][four].mean().item() == pytest.approx(0.8, abs=0.1)
    assert immediate[..., 0, 1][~four].mean().item() == pytest.approx(-0.2, abs=0.06)
    assert future[..., 0, 1].abs().mean() < 0.2
    # 0 -> 0: future, 1[a0 = 2] - 0.2 (V^0 one higher on cell 2)
    assert future[..., 0, 0][two].mean().item() == pytest.approx(0.8, abs=0.12)
    assert future[..., 0, 0][~two].mean().item() == pytest.approx(-0.2, abs=0.1)
    assert immediate[..., 0, 0].abs().mean() < 0.05
    # 1 -> v: nothing
    assert vi[..., 1, :].abs().mean() < 0.1


def test_value_time_has_no_future_after_the_last_step() -> None:
    g = torch.Generator().manual_seed(9)
    est = CoinsVoI(generators([0, 1]), samples=128, minibatch=64, epochs=1, value_time=True)
    episode = random_episode(5, 2, 8, g)
    est.store(*episode)
    est.fit()
    _, future = est.influence_parts(episode[0], episode[1])
    assert torch.equal(future[-1], torch.zeros_like(future[-1]))
    assert future[:-1].abs().sum() > 0
    assert est.losses().shape == (2, 7)


def test_states_as_labels_or_one_hot() -> None:
    labels, actions, rewards = random_episode(4, 2, 8, torch.Generator().manual_seed(10))
    flat = one_hot_states(labels)
    est = CoinsVoI(generators([0, 1]))
    est.store(flat.view(4, 2, 8, 4, 3, 3), actions, rewards)
    assert torch.equal(est.buffer[0]["labels"].long(), labels)
    vi = est.influence(labels, actions)
    assert vi.shape == (4, 2, 8, 2, 2)
    assert torch.equal(est.influence(flat, actions), vi)
    assert torch.equal(est.influence(flat.view(4, 2, 8, 4, 3, 3), actions), vi)
