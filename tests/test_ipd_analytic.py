"""The analytic IPD engine against closed forms, Monte-Carlo rollouts and finite differences."""

from __future__ import annotations

import math

import oracles
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recip_tourney.agents.base import NoParams
from recip_tourney.agents.fixed import (
    AlwaysCooperate,
    AlwaysDefect,
    RandomParams,
    RandomStrategy,
    TitForTat,
)
from recip_tourney.envs.ipd import PAYOFF, SWAP_OUTCOME
from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.envs.linalg4 import lu_factor, lu_solve, lu_solve_transposed

GAMMA = 0.96
F64 = torch.float64


@pytest.fixture
def game() -> AnalyticIPD:
    return AnalyticIPD(GAMMA, F64)


def strategy_logits(cls: type, game: AnalyticIPD, params: object = NoParams()) -> torch.Tensor:
    return cls(params, game).initial_logits(1, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- closed forms, per step
CLOSED_FORMS = [
    (AlwaysCooperate, AlwaysCooperate, -1.0, -1.0),
    (AlwaysDefect, AlwaysDefect, -2.0, -2.0),
    (AlwaysDefect, AlwaysCooperate, 0.0, -3.0),
    (AlwaysCooperate, AlwaysDefect, -3.0, 0.0),
    (TitForTat, TitForTat, -1.0, -1.0),
    (TitForTat, AlwaysCooperate, -1.0, -1.0),
    # TFT is exploited once (-3 at weight 1 - gamma), then mutual defection (-2) forever
    (TitForTat, AlwaysDefect, (1 - GAMMA) * -3 + GAMMA * -2, GAMMA * -2),
]


@pytest.mark.parametrize(("a", "b", "reward_a", "reward_b"), CLOSED_FORMS)
def test_fixed_strategies_match_closed_forms(game, a, b, reward_a, reward_b):
    view = game.evaluate(strategy_logits(a, game), strategy_logits(b, game))
    assert view.reward_own.item() == pytest.approx(reward_a, abs=1e-6)
    assert view.reward_other.item() == pytest.approx(reward_b, abs=1e-6)


def test_random_vs_random_is_the_mean_payoff(game):
    random = strategy_logits(RandomStrategy, game, RandomParams(p_cooperate=0.5))
    view = game.evaluate(random, random)
    assert view.reward_own.item() == pytest.approx(-1.5, abs=1e-12)
    assert view.p_cooperate.item() == pytest.approx(0.5, abs=1e-12)


def test_cooperation_share_of_tft_against_alld(game):
    view = game.evaluate(strategy_logits(TitForTat, game), strategy_logits(AlwaysDefect, game))
    assert view.p_cooperate.item() == pytest.approx(1 - GAMMA, abs=1e-6)  # only the first move
    assert view.flip().p_cooperate.item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------ the exact engine, generally
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 6.0))
def test_engine_equals_dense_solve_and_is_symmetric(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    own = torch.randn(16, 5, generator=gen, dtype=F64) * scale
    other = torch.randn(16, 5, generator=gen, dtype=F64) * scale
    game = AnalyticIPD(GAMMA, F64)
    view = game.evaluate(own.T, other.T)
    v_own, v_other = oracles.values(own, other)
    torch.testing.assert_close(view.value_own, v_own, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(view.value_other, v_other, rtol=1e-10, atol=1e-9)
    # the visitation is a discounted distribution
    torch.testing.assert_close(
        view.visitation.sum(0), torch.full((16,), 1 / (1 - GAMMA), dtype=F64)
    )
    # seen from the other side, the same games
    swapped = game.evaluate(other.T, own.T)
    torch.testing.assert_close(swapped.value_own, view.value_other, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(swapped.visitation, view.flip().visitation)


def test_small_solver_matches_lapack():
    gen = torch.Generator().manual_seed(1)
    transition = torch.softmax(torch.randn(32, 4, 4, generator=gen, dtype=F64), -1)
    a = torch.eye(4, dtype=F64) - GAMMA * transition
    b = torch.randn(32, 4, generator=gen, dtype=F64)
    lu = lu_factor(a.permute(1, 2, 0))  # batch-last
    x = torch.stack(lu_solve(lu, list(b.T)), -1)
    xt = torch.stack(lu_solve_transposed(lu, list(b.T)), -1)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    torch.testing.assert_close(xt, torch.linalg.solve(a.mT, b))


def monte_carlo(own, other, n_games=40_000, horizon=400, seed=0):
    """Discounted returns of sampled games of two memory-one policies (independent oracle)."""
    gen = torch.Generator().manual_seed(seed)
    p_own, p_other = torch.sigmoid(own), torch.sigmoid(other)
    state_own = torch.zeros(n_games, dtype=torch.long)  # 0 = start
    state_other = torch.zeros(n_games, dtype=torch.long)
    total_own = torch.zeros(n_games, dtype=F64)
    total_other = torch.zeros(n_games, dtype=F64)
    payoff = torch.tensor(PAYOFF, dtype=F64)
    for t in range(horizon):
        defect_own = (torch.rand(n_games, generator=gen, dtype=F64) >= p_own[state_own]).long()
        defect_other = (
            torch.rand(n_games, generator=gen, dtype=F64) >= p_other[state_other]
        ).long()
        total_own += GAMMA**t * payoff[defect_own, defect_other]
        total_other += GAMMA**t * payoff[defect_other, defect_own]
        state_own = 1 + 2 * defect_own + defect_other  # egocentric: own action first
        state_other = 1 + 2 * defect_other + defect_own
    return total_own, total_other


@pytest.mark.parametrize("seed", [3, 4])
def test_exact_value_equals_monte_carlo_rollouts(game, seed):
    gen = torch.Generator().manual_seed(seed)
    own, other = torch.randn(2, 5, generator=gen, dtype=F64) * 1.5
    sampled_own, sampled_other = monte_carlo(own, other, seed=seed)
    view = game.evaluate(own.unsqueeze(-1), other.unsqueeze(-1))
    for sampled, exact in ((sampled_own, view.value_own), (sampled_other, view.value_other)):
        stderr = sampled.std().item() / math.sqrt(sampled.numel())
        truncation = GAMMA**400 * 3 / (1 - GAMMA)
        assert abs(sampled.mean().item() - exact.item()) < 4 * stderr + truncation


# ---------------------------------------------------------------------- gradients
def finite_difference(fn, theta: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(theta)
    for state in range(theta.shape[0]):
        step = torch.zeros_like(theta)
        step[state] = eps
        grad[state] = (fn(theta + step) - fn(theta - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_gradients_agree_with_finite_differences(game, seed):
    gen = torch.Generator().manual_seed(seed)
    own = torch.randn(5, 8, generator=gen, dtype=F64) * 2
    other = torch.randn(5, 8, generator=gen, dtype=F64) * 2
    view = game.evaluate(own, other)
    seen_by_other = view.flip()
    cases = {
        "dV_own/d own": (view.gradient(), lambda t: game.values(t, other)[0], own),
        "dV_other/d own": (view.gradient(view.u_other), lambda t: game.values(t, other)[1], own),
        "dV_other/d other": (seen_by_other.gradient(), lambda t: game.values(own, t)[1], other),
        "dV_own/d other": (
            seen_by_other.gradient(seen_by_other.u_other),
            lambda t: game.values(own, t)[0],
            other,
        ),
    }
    for name, (closed, fn, theta) in cases.items():
        torch.testing.assert_close(
            closed, finite_difference(fn, theta), rtol=1e-6, atol=1e-6, msg=name
        )


def test_autograd_through_the_engine_matches_closed_form(game):
    gen = torch.Generator().manual_seed(5)
    own = torch.randn(5, 8, generator=gen, dtype=F64).requires_grad_(True)
    other = torch.randn(5, 8, generator=gen, dtype=F64)
    view = game.evaluate(own, other)
    (auto,) = torch.autograd.grad(view.value_own.sum(), own)
    torch.testing.assert_close(auto, view.gradient().detach())


def test_swap_tables_are_involutions():
    assert [SWAP_OUTCOME[j] for j in SWAP_OUTCOME] == [0, 1, 2, 3]


def test_float32_stays_close_to_float64():
    gen = torch.Generator().manual_seed(9)
    own, other = torch.randn(2, 5, 64, generator=gen, dtype=F64)
    exact = AnalyticIPD(GAMMA, F64).evaluate(own, other).reward_own
    single = AnalyticIPD(GAMMA, torch.float32).evaluate(own.float(), other.float()).reward_own
    torch.testing.assert_close(single.double(), exact, atol=2e-5, rtol=0)
