"""The replayed PPO epoch (CUDA graphs on a GPU) computes exactly the eager epochs.

On the CPU the static-buffer path runs the same function without capture: these tests
check that every input an epoch reads is taken from the buffers each update (a missed one
would train on the first episode's data from the second update on). The GPU test checks
that the captured graph gives the eager numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from recip_tourney.agents.coins_ppo import CoinsPPO, ConvGRUNets
from recip_tourney.agents.coins_ppo_graph import EpochGradient

CHANNELS, HIDDEN = 4, 8


def _episode(steps: int, seeds: int, batch: int, gen: torch.Generator, dtype, device):
    cells = torch.randint(0, 9, (steps, seeds, batch, CHANNELS), generator=gen)
    obs = functional.one_hot(cells, 9).to(dtype).view(*cells.shape, 3, 3)
    actions = torch.randint(0, 5, (steps, seeds, batch), generator=gen)
    rewards = torch.randn(steps, seeds, batch, generator=gen, dtype=dtype)
    return obs.to(device), actions.to(device), rewards.to(device)


def _train(mode: str, table: bool, device: str = "cpu", dtype=torch.float64, updates: int = 3):
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    nets = ConvGRUNets(CHANNELS, HIDDEN, gens, dtype, device=device)
    ppo = CoinsPPO(nets, epochs=5, table=table)
    ppo.graph_mode = mode
    data = torch.Generator().manual_seed(99)
    logs = []
    for _ in range(updates):  # several updates: the buffers must take each episode's data
        logs.append(ppo.update(*_episode(6, 2, 8, data, dtype, device)))
    return ppo.nets.flat.cpu(), logs


@pytest.mark.parametrize("table", [True, False])
def test_static_buffers_train_bit_identically_to_the_eager_epochs(table: bool) -> None:
    eager, eager_logs = _train("off", table)
    static, static_logs = _train("static", table)
    assert torch.equal(eager, static)
    for a, b in zip(eager_logs, static_logs, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_buffers_are_reused_and_rebuilt_when_the_shape_changes() -> None:
    gens = [torch.Generator().manual_seed(3)]
    ppo = CoinsPPO(ConvGRUNets(CHANNELS, HIDDEN, gens, torch.float64), epochs=3)
    ppo.graph_mode = "static"
    data = torch.Generator().manual_seed(5)
    ppo.update(*_episode(4, 1, 8, data, torch.float64, "cpu"))
    first = ppo._epoch
    ppo.update(*_episode(4, 1, 8, data, torch.float64, "cpu"))
    assert ppo._epoch is first
    ppo.update(*_episode(5, 1, 8, data, torch.float64, "cpu"))
    assert ppo._epoch is not first and isinstance(ppo._epoch, EpochGradient)


def test_a_checkpoint_leaves_the_buffers_behind() -> None:
    gens = [torch.Generator().manual_seed(3)]
    ppo = CoinsPPO(ConvGRUNets(CHANNELS, HIDDEN, gens, torch.float64), epochs=3)
    ppo.graph_mode = "static"
    ppo.update(*_episode(4, 1, 8, torch.Generator().manual_seed(5), torch.float64, "cpu"))
    assert ppo.__getstate__()["_epoch"] is None


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_graph_replays_give_the_eager_numbers(dtype) -> None:
    eager, _ = _train("off", True, "cuda", dtype)
    graphed, _ = _train("graph", True, "cuda", dtype)
    torch.testing.assert_close(graphed, eager, rtol=0, atol=1e-6 if dtype == torch.float32
                               else 1e-12)
