"""The batched Coins PPO equals plain ``torch.nn`` modules trained with autograd and Adam."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional

from recip_tourney.agents.coins_ppo import CoinsPPO, ConvGRUNets
from recip_tourney.agents.returns import discounted_returns
from recip_tourney.agents.torus_conv import CirculantConv, torus_shift

CHANNELS, HIDDEN = 4, 32


def _nets(seeds: int, dtype: torch.dtype = torch.float64, first: int = 0) -> ConvGRUNets:
    gens = [torch.Generator().manual_seed(first + s) for s in range(seeds)]
    return ConvGRUNets(CHANNELS, HIDDEN, gens, dtype)


def _cells(steps: int, seeds: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 9, (steps, seeds, batch, CHANNELS), generator=gen)


def _one_hot(cells: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    planes = functional.one_hot(cells, 9).to(dtype)
    return planes.view(*cells.shape, 3, 3)


class _Encoder(nn.Module):
    def __init__(self, in_channels: int, hidden: int, grid: int) -> None:
        super().__init__()
        c, k = hidden // 4, grid + (grid % 2 == 0)
        self.conv1 = nn.Conv2d(in_channels, c, k, padding="same", padding_mode="circular")
        self.conv2 = nn.Conv2d(c, c, k, padding="same", padding_mode="circular")
        self.linear = nn.Linear(c * grid * grid, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.relu(self.linear(x.flatten(1)))


class _Net(nn.Module):
    """The reference's recurrent actor (outputs 5) or critic (outputs 1), one seed."""

    def __init__(self, outputs: int, channels: int = CHANNELS, grid: int = 3) -> None:
        super().__init__()
        self.encoder = _Encoder(channels, HIDDEN, grid)
        self.gru = nn.GRU(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, outputs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (T, B, C, 3, 3) -> outputs (T, B, outputs), from a zero hidden state."""
        steps, batch = obs.shape[:2]
        e = self.encoder(obs.flatten(0, 1)).view(steps, batch, -1)
        out, _ = self.gru(e)
        return self.head(torch.relu(out))


def _reference(nets: ConvGRUNets, seed: int, flat: torch.Tensor | None = None):
    """Actor and critic of ``seed`` as ``torch.nn`` modules holding the same weights."""
    named = nets.named(flat)
    out = []
    for net, outputs in (("actor", 5), ("critic", 1)):
        module = _Net(outputs, nets.in_channels, nets.grid).to(nets.dtype)
        module.load_state_dict({k[len(net) + 1 :]: v[seed].clone() for k, v in named.items()
                                if k.startswith(net + ".")})
        out.append(module)
    return out


# ---------------------------------------------------------------------- conv as a matrix


@pytest.mark.parametrize(("grid", "c_in", "c_out"), [(3, 4, 8), (3, 8, 8), (4, 2, 3), (5, 3, 2)])
def test_circulant_conv_is_circular_conv2d(grid: int, c_in: int, c_out: int) -> None:
    gen = torch.Generator().manual_seed(grid)
    kernel = 3 if grid == 3 else grid + (grid % 2 == 0)
    conv = CirculantConv(c_in, c_out, grid, kernel)
    for _ in range(3):
        k = torch.randn(c_out, c_in, kernel, kernel, generator=gen, dtype=torch.float64)
        b = torch.randn(c_out, generator=gen, dtype=torch.float64)
        x = torch.randn(5, c_in, grid, grid, generator=gen, dtype=torch.float64)
        pad = kernel // 2
        want = functional.conv2d(functional.pad(x, (pad,) * 4, mode="circular"), k, b)
        torch.testing.assert_close(conv.conv(k, b, x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grid", [3, 4])
def test_circulant_kernel_gradient_is_autograd(grid: int) -> None:
    gen = torch.Generator().manual_seed(1)
    kernel = 3 if grid == 3 else 5
    conv = CirculantConv(3, 2, grid, kernel)
    k = torch.randn(2, conv.kernel_numel, generator=gen, dtype=torch.float64, requires_grad=True)
    dense_grad = torch.randn(2, conv.in_features, conv.out_features, generator=gen,
                             dtype=torch.float64)
    (want,) = torch.autograd.grad((conv.dense(k) * dense_grad).sum(), k)
    torch.testing.assert_close(conv.kernel_grad(dense_grad), want, rtol=1e-12, atol=1e-12)


def test_torus_shift_is_a_translation() -> None:
    shift = torus_shift(3)
    assert torch.equal(shift[0], torch.arange(9))
    # moving by (1, 2) takes cell (2, 2) to (0, 1)
    assert int(shift[1 * 3 + 2, 2 * 3 + 2]) == 0 * 3 + 1
    for tau in range(9):
        assert sorted(shift[tau].tolist()) == list(range(9))


# ---------------------------------------------------------------------- initialisation


def test_initialisation_bounds_and_independence_of_seeds() -> None:
    alone = _nets(1, torch.float32, first=7)
    batched = ConvGRUNets(CHANNELS, HIDDEN, [torch.Generator().manual_seed(s) for s in (3, 7, 9)],
                          torch.float32)
    fan_in = {"conv1": CHANNELS * 9, "conv2": 8 * 9, "linear": 72, "gru": HIDDEN,
              "head": HIDDEN}
    for name, value in batched.named().items():
        assert torch.equal(value[1], alone.named()[name][0]), name
        bound = 1 / math.sqrt(next(v for k, v in fan_in.items() if k in name))
        assert float(value.abs().max()) <= bound
        assert float(value.abs().max()) > 0.5 * bound  # drawn over the whole range
    assert alone.flat.numel() == sum(p.numel() for net in _reference(_nets(1), 0)
                                     for p in net.parameters())


# ---------------------------------------------------------------------- forward


@pytest.mark.parametrize("table", [True, False])
def test_forward_equals_torch_modules(table: bool) -> None:
    seeds, steps, batch = 2, 5, 6
    gen = torch.Generator().manual_seed(2)
    nets = _nets(seeds)
    ppo = CoinsPPO(nets, table=table)
    obs = _one_hot(_cells(steps, seeds, batch, gen))
    probs, values = ppo.evaluate(obs)
    for s in range(seeds):
        actor, critic = _reference(nets, s)
        with torch.no_grad():
            torch.testing.assert_close(probs[:, s], torch.softmax(actor(obs[:, s]), -1),
                                       rtol=1e-12, atol=1e-13)
            torch.testing.assert_close(values[:, s], critic(obs[:, s])[..., 0],
                                       rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("grid", "channels", "table"),
                         [(4, 2, True), (4, 2, False), (5, 2, True), (3, 6, False)])
def test_forward_equals_torch_modules_on_other_grids(grid: int, channels: int,
                                                     table: bool) -> None:
    """Even grids take a kernel of g + 1 (two kernel entries per cell pair); 3 players have
    6 channels and, by default, no table."""
    steps, batch = 3, 5
    gen = torch.Generator().manual_seed(grid)
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    nets = ConvGRUNets(channels, HIDDEN, gens, torch.float64, grid=grid)
    ppo = CoinsPPO(nets, table=table)
    cells = torch.randint(0, grid * grid, (steps, 2, batch, channels), generator=gen)
    obs = functional.one_hot(cells, grid * grid).to(torch.float64)
    probs, values = ppo.evaluate(obs.view(*cells.shape, grid, grid))
    for s in range(2):
        actor, critic = _reference(nets, s)
        x = obs[:, s].view(steps, batch, channels, grid, grid)
        with torch.no_grad():
            torch.testing.assert_close(probs[:, s], torch.softmax(actor(x), -1),
                                       rtol=1e-12, atol=1e-13)
            torch.testing.assert_close(values[:, s], critic(x)[..., 0], rtol=1e-12, atol=1e-13)
    if not table:
        assert CoinsPPO(nets).table == (channels < 6)


@pytest.mark.parametrize("table", [True, False])
def test_acting_step_by_step_follows_the_sequence_probabilities(table: bool) -> None:
    seeds, steps, batch = 2, 6, 50
    gen = torch.Generator().manual_seed(3)
    ppo = CoinsPPO(_nets(seeds), table=table)
    cells = _cells(steps, seeds, batch, gen)
    obs = _one_hot(cells)
    noise = torch.rand(steps, seeds, batch, generator=gen, dtype=torch.float64)
    cdf = ppo.policy_probs(obs).cumsum(-1)
    want = (cdf[..., :-1] <= noise.unsqueeze(-1)).sum(-1)
    ppo.begin_episode(batch)
    got = torch.stack([ppo.act(obs[t], noise[t]) for t in range(steps)])
    assert torch.equal(got, want)
    ppo.begin_episode(batch)  # cells as long, the same actions
    assert torch.equal(torch.stack([ppo.act(cells[t], noise[t]) for t in range(steps)]), want)


def test_table_mode_rejects_observations_that_are_not_one_hot() -> None:
    ppo = CoinsPPO(_nets(1), table=True)
    obs = _one_hot(torch.zeros(2, 1, 3, CHANNELS, dtype=torch.long))
    obs[0, 0, 0, 1] *= 0.5
    with pytest.raises(ValueError, match="one-hot"):
        ppo.evaluate(obs)


# ---------------------------------------------------------------------- the update


def test_standardised_returns_per_seed_with_eps() -> None:
    gen = torch.Generator().manual_seed(4)
    ppo = CoinsPPO(_nets(3), gamma=0.9, eps=1e-5)
    rewards = torch.randn(7, 3, 11, generator=gen, dtype=torch.float64)
    rewards[:, 2] = 1.0  # equal returns at each step only: a nonzero std
    rewards[:, 1] *= 100
    got = ppo.standardised_returns(rewards)
    for s in range(3):
        g = discounted_returns(rewards[:, s], 0.9).reshape(-1)
        torch.testing.assert_close(got[s], (g - g.mean()) / (g.std() + 1e-5))
        assert abs(float(got[s].mean())) < 1e-12
    constant = torch.zeros(4, 1, 5, dtype=torch.float64)
    assert torch.equal(CoinsPPO(_nets(1)).standardised_returns(constant), torch.zeros(1, 20))


def _autograd_update(nets, seed, flat0, obs, actions, rewards, ppo, epochs):
    """The reference's update of one seed: per-sample loss, autograd, torch.optim.Adam."""
    actor, critic = _reference(nets, seed, flat0)
    adam = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=ppo.lr)
    g = discounted_returns(rewards[:, seed], ppo.gamma).reshape(-1)
    g = (g - g.mean()) / (g.std() + ppo.eps)
    x, a = obs[:, seed], actions[:, seed].reshape(-1)
    with torch.no_grad():
        old = torch.distributions.Categorical(logits=actor(x).reshape(-1, 5)).log_prob(a)
    losses = []
    for _ in range(epochs):
        dist = torch.distributions.Categorical(logits=actor(x).reshape(-1, 5))
        value = critic(x).reshape(-1)
        ratio = (dist.log_prob(a) - old).exp()
        adv = g - value.detach()
        surrogate = torch.min(ratio * adv, ratio.clamp(1 - ppo.clip, 1 + ppo.clip) * adv)
        loss = ((-surrogate - ppo.entropy * dist.entropy()).mean()
                + 0.5 * ((value - g) ** 2).mean())
        losses.append(float(loss.detach()))
        adam.zero_grad()
        loss.backward()
        adam.step()
    return actor, critic, losses


@pytest.mark.parametrize("table", [True, False])
def test_update_equals_autograd_and_torch_adam(table: bool) -> None:
    seeds, steps, batch, epochs = 2, 4, 8, 3
    gen = torch.Generator().manual_seed(5)
    nets = _nets(seeds)
    flat0 = nets.flat.clone()
    # a large step size so that ratios leave the clip range within the 3 epochs
    ppo = CoinsPPO(nets, lr=0.05, epochs=epochs, table=table)
    obs = _one_hot(_cells(steps, seeds, batch, gen))
    actions = torch.randint(0, 5, (steps, seeds, batch), generator=gen)
    rewards = torch.randn(steps, seeds, batch, generator=gen, dtype=torch.float64)
    diagnostics = ppo.update(obs, actions, rewards)
    named = nets.named()
    for s in range(seeds):
        actor, critic, losses = _autograd_update(nets, s, flat0, obs, actions, rewards, ppo,
                                                 epochs)
        for net, module in (("actor", actor), ("critic", critic)):
            for key, value in module.state_dict().items():
                torch.testing.assert_close(named[f"{net}.{key}"][s], value, rtol=1e-10,
                                           atol=1e-10, msg=f"{net}.{key}")
        first = (diagnostics["policy_loss"][s] - ppo.entropy * diagnostics["entropy"][s]
                 + diagnostics["value_loss"][s])
        assert float(first) == pytest.approx(losses[0], rel=1e-10, abs=1e-12)
    assert float(diagnostics["clip_fraction"].max()) > 0  # the clip was exercised


@pytest.fixture
def one_thread():
    """The tournament's numerics (``play_match`` runs on one torch thread): with more, MKL
    may split one product differently depending on how many share the batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("table", [True, False])
def test_a_seed_trains_bit_identically_alone_or_batched(table: bool) -> None:
    steps, batch = 6, 40
    gen = torch.Generator().manual_seed(6)
    cells = _cells(steps, 3, batch, gen)
    actions = torch.randint(0, 5, (steps, 3, batch), generator=gen)
    rewards = torch.randn(steps, 3, batch, generator=gen)
    noise = torch.rand(steps, 3, batch, generator=gen)
    runs = {}
    for seeds in ((1,), (0, 1, 2)):
        gens = [torch.Generator().manual_seed(10 + s) for s in seeds]
        nets = ConvGRUNets(CHANNELS, HIDDEN, gens, torch.float32)
        ppo = CoinsPPO(nets, epochs=4, table=table)
        idx = list(seeds)
        acted = []
        for _ in range(2):
            ppo.begin_episode(batch)
            acted.append(torch.stack([ppo.act(_one_hot(cells[t, idx], torch.float32), noise[t, idx])
                                      for t in range(steps)]))
            ppo.update(_one_hot(cells[:, idx], torch.float32), actions[:, idx],
                       rewards[:, idx])
        runs[seeds] = (nets.named(), acted, ppo)
    alone, batched = runs[(1,)], runs[(0, 1, 2)]
    for name, value in alone[0].items():
        assert torch.equal(value[0], batched[0][name][1]), name
    for a, b in zip(alone[1], batched[1], strict=True):
        assert torch.equal(a[:, 0], b[:, 1])
    for state in ("exp_avg", "exp_avg_sq"):
        mine = alone[2].nets.named(getattr(alone[2], state))
        theirs = batched[2].nets.named(getattr(batched[2], state))
        for name, value in mine.items():
            assert torch.equal(value[0], theirs[name][1]), (state, name)


def test_ppo_learns_a_rewarded_action() -> None:
    """Reward 1 for action 2 (DOWN) anywhere: on-policy updates make it likely."""
    seeds, steps, batch = 2, 8, 64
    gen = torch.Generator().manual_seed(7)
    ppo = CoinsPPO(_nets(seeds, torch.float32), epochs=10)
    cells = _cells(steps, seeds, batch, gen)
    obs = _one_hot(cells, torch.float32)
    before = ppo.policy_probs(obs)[..., 2].mean()
    for _ in range(6):
        ppo.begin_episode(batch)
        noise = torch.rand(steps, seeds, batch, generator=gen)
        actions = torch.stack([ppo.act(obs[t], noise[t]) for t in range(steps)])
        ppo.update(obs, actions, (actions == 2).float())
    after = ppo.policy_probs(obs)[..., 2].mean((0, 2))
    assert 0.1 < float(before) < 0.3
    assert float(after.min()) > 0.6, after
