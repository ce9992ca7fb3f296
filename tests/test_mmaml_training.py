"""M-MAML: the published initialisations and the exact meta-training (spec, section 4)."""

from __future__ import annotations

import oracles
import torch

from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.pretrain.mmaml import (
    MetaTrainResult,
    initial_meta_parameters,
    meta_train,
    published_initialisations,
    sample_opponents,
    unroll_outer_loss,
)

TINY = {"n_inits": 2, "iterations": 3, "unroll": 5, "batch": 8, "dtype": torch.float64}


def test_published_initialisations():
    phi = published_initialisations()
    assert phi.shape == (10, 5) and phi.dtype == torch.float64
    torch.testing.assert_close(
        phi[0], torch.tensor([4.327, 4.493, -4.732, 0.075, -3.233], dtype=torch.float64)
    )
    torch.testing.assert_close(
        phi[9], torch.tensor([4.033, 4.174, -3.215, -1.344, -1.065], dtype=torch.float64)
    )
    assert published_initialisations(torch.float32).dtype == torch.float32


def _reference_meta_gradient(phi, alpha, opponents, steps, opponent_lr=1.0):
    """Nested-autograd unroll on the dense LAPACK oracle, agent in the player-1 slot."""
    phi = phi.clone().requires_grad_(True)
    alpha = alpha.clone().requires_grad_(True)
    n, batch = phi.shape[0], opponents.shape[1] // phi.shape[0]
    agent = phi.repeat_interleave(batch, dim=0)  # game-major (n * batch, 5)
    agent_lr = alpha.repeat_interleave(batch).unsqueeze(1)
    other = opponents.T.clone().requires_grad_(True)
    loss = torch.zeros(n, dtype=phi.dtype)
    for _ in range(steps):
        v_other, v_agent = oracles.values(other, agent)
        loss = loss - v_agent.view(n, batch).sum(1)
        (g_agent,) = torch.autograd.grad(v_agent.sum(), agent, create_graph=True)
        (g_other,) = torch.autograd.grad(v_other.sum(), other, create_graph=True)
        agent, other = agent + agent_lr * g_agent, other + opponent_lr * g_other
    return loss.detach(), torch.autograd.grad(loss.sum(), (phi, alpha))


def test_meta_gradient_matches_nested_autograd():
    generator = torch.Generator().manual_seed(3)
    phi, alpha = initial_meta_parameters(generator, 3)
    opponents = sample_opponents(generator, 3, 4, init_std=1.5)
    steps, opponent_lr = 6, 0.7

    leaves = (phi.clone().requires_grad_(True), alpha.clone().requires_grad_(True))
    out = unroll_outer_loss(
        AnalyticIPD(0.96, torch.float64), *leaves, opponents, steps=steps, opponent_lr=opponent_lr
    )
    grads = torch.autograd.grad(out.loss.sum(), leaves)

    ref_loss, ref_grads = _reference_meta_gradient(phi, alpha, opponents, steps, opponent_lr)
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-10, atol=1e-8)
    for got, want in zip(grads, ref_grads, strict=True):
        assert want.abs().max() > 1e-2  # a non-trivial gradient
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-8)


def test_peer_learning_term_is_present():
    """The meta-gradient differs from one that treats the opponents' path as constant."""
    generator = torch.Generator().manual_seed(5)
    phi, alpha = initial_meta_parameters(generator, 1)
    opponents = sample_opponents(generator, 1, 4)
    env = AnalyticIPD(0.96, torch.float64)
    leaf = phi.clone().requires_grad_(True)
    full = torch.autograd.grad(unroll_outer_loss(env, leaf, alpha, opponents, steps=4).loss, leaf)
    frozen = unroll_outer_loss(env, leaf, alpha, opponents, steps=4, opponent_lr=0.0)
    assert not torch.allclose(full[0], torch.autograd.grad(frozen.loss, leaf)[0])


def test_deterministic_and_seeded():
    threads = torch.get_num_threads()
    first, second = meta_train(**TINY), meta_train(**TINY)
    assert torch.get_num_threads() == threads  # the single-threaded run restores the setting
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.own_lr, second.own_lr)
    assert first.log == second.log
    other = meta_train(**TINY, seed=1)
    assert not torch.equal(first.logits, other.logits)


def test_result_shapes_and_first_step():
    result = meta_train(**TINY)
    assert isinstance(result, MetaTrainResult)
    assert result.logits.shape == (2, 5) and result.logits.dtype == torch.float64
    assert result.own_lr.shape == (2,) and result.own_lr.dtype == torch.float64
    # float32 starts from the same draws, and the first Adam step moves each entry by lr.
    phi0, alpha0 = initial_meta_parameters(torch.Generator().manual_seed(0), 2)
    one = meta_train(**{**TINY, "iterations": 1, "dtype": torch.float32})
    torch.testing.assert_close(
        (one.logits - phi0).abs(), torch.full((2, 5), 0.01, dtype=float), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        (one.own_lr - alpha0).abs(), torch.full((2,), 0.01, dtype=float), atol=1e-6, rtol=0
    )


def test_learning_reduces_outer_loss():
    # outer lr 0.05 (not 0.01) so that 30 iterations clearly beat the opponent-sampling noise
    log = meta_train(
        n_inits=2, iterations=30, unroll=10, batch=16, outer_lr=0.05, dtype=torch.float64
    ).log
    losses = [entry["loss"] for entry in log]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_callback_once_per_iteration():
    entries: list[dict] = []
    result = meta_train(**TINY, callback=entries.append)
    assert entries == result.log
    assert [e["iteration"] for e in entries] == [0, 1, 2]
    for entry in entries:
        assert set(entry) == {"iteration", "loss", "reward", "opponent_reward"}
        assert -3.0 <= entry["reward"] <= 0.0 and -3.0 <= entry["opponent_reward"] <= 0.0
        # the loss is minus the summed unnormalised return: 5 steps x 8 games per init
        expected = -entry["reward"] / (1 - 0.96) * 5 * 8
        assert abs(entry["loss"] - expected) < 1e-9 * abs(expected)
