"""Spec of the IPD-Rollout learners: the naive learner (PPO) and the Reciprocator.

Notation (rollout spec 5.2): ``i`` is the Reciprocator, ``j`` its opponent, ``s_t`` the
Reciprocator's observation at step t, ``p_hat_k(C | s)`` the empirical cooperation rate of
player k in state s over the last ``buffer_episodes`` episodes (refreshed every
``target_period`` episodes, first at episode 0; 0.5 before any sample).

- Influence of j on i: ``VI^{j->i}_t = r^i_t - sum_a p_hat_j(a | s_t) R^i(a^i_t, a)``, which
  for this payoff matrix is ``2 (1[a^j_t = C] - p_hat_j(C | s_t))``; symmetrically
  ``VI^{i->j}_t = 2 (1[a^i_t = C] - p_hat_i(C | s_t))``.
- Balance ``lagged`` (the reference): ``B_0 = 0``, ``B_t = VI^{j->i}_{t-1}``;
  ``cumulative``: ``B_0 = 0``, ``B_{t+1} = gamma B_t + VI^{j->i}_t - VI^{i->j}_t``.
- Reciprocal reward ``rr_t = B_t VI^{i->j}_t``; PPO learns from ``r^i_t + w rr_t``.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_ipd_rollout import make_spec as rollout_spec

from recip_tourney import registry
from recip_tourney.agents.reciprocator_rollout import RolloutReciprocator
from recip_tourney.agents.rollout import EpisodeView, RolloutAgent
from recip_tourney.envs import ipd_rollout as env
from recip_tourney.envs.ipd import STATES
from recip_tourney.tournament.rollout import play_rollout
from recip_tourney.tournament.schedule import MatchSpec

GAME = "ipd-rollout"
F64 = torch.float64
C, D = 0, 1


# ----------------------------------------------------------------------------- helpers


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def build(name: str, seeds: tuple[int, ...] = (0,), **params) -> RolloutAgent:
    info = registry.agent(GAME, name)
    return info.cls(info.params(**params), gens(*seeds), F64)


def reciprocator(seeds: tuple[int, ...] = (0,), **params) -> RolloutReciprocator:
    agent = build("reciprocator", seeds, **params)
    assert isinstance(agent, RolloutReciprocator)
    return agent


def make_spec(agent: str, opponent: str, seeds=(11, 12), **kwargs) -> MatchSpec:
    """A match with small default settings (B 32, T 8, 30 episodes, float64)."""
    sizes = {"batch": 32, "steps": 8, "episodes": 30, "table_last": 5}
    return rollout_spec(agent, opponent, seeds, **(sizes | kwargs))


def episode(own, other, me: int = 0) -> EpisodeView:
    """The episode seen by the player who played ``own`` (T, S, B), from slot ``me``:
    observations from the actions, both rewards in one shared (T, 2, S, B) tensor."""
    own, other = torch.as_tensor(own), torch.as_tensor(other)
    obs = torch.zeros_like(own)
    obs[1:] = env.observation(own[:-1], other[:-1])
    mine, theirs = env.rewards(own, other, F64), env.rewards(other, own, F64)
    rewards = torch.stack((mine, theirs) if me == 0 else (theirs, mine), dim=1)
    return EpisodeView(obs, own, other, rewards, me)


def random_episode(seed: int, steps: int = 6, seeds: int = 2, batch: int = 32,
                   p_own: float = 0.5, p_other: float = 0.5, me: int = 0) -> EpisodeView:
    g = torch.Generator().manual_seed(seed)
    own = (torch.rand(steps, seeds, batch, generator=g, dtype=F64) >= p_own).long()
    other = (torch.rand(steps, seeds, batch, generator=g, dtype=F64) >= p_other).long()
    return episode(own, other, me)


def capture_learning(agent) -> list[torch.Tensor]:
    """Record (a copy of) the rewards of every PPO update of ``agent``."""
    seen: list[torch.Tensor] = []
    update = agent.ppo.update

    def spy(obs, actions, rewards):
        seen.append(rewards.clone())
        update(obs, actions, rewards)

    agent.ppo.update = spy
    return seen


def empirical_p_cooperate(view: EpisodeView) -> torch.Tensor:
    """Oracle: (2, S, 5) cooperation rate of (self, other) per state of ``view``, NaN where
    a state was never visited."""
    seeds = view.obs.shape[1]
    out = torch.full((2, seeds, 5), math.nan, dtype=F64)
    for s in range(seeds):
        for k in range(5):
            here = view.obs[:, s] == k
            if here.any():
                out[0, s, k] = (view.own[:, s][here] == C).double().mean()
                out[1, s, k] = (view.other[:, s][here] == C).double().mean()
    return out


def closed_form_influence(actions: torch.Tensor, obs: torch.Tensor, p_c: torch.Tensor):
    """``2 (1[a = C] - p_hat(C | s))`` elementwise over (T, S, B), ``p_c`` (S, 5)."""
    p = torch.stack([p_c[s][obs[:, s]] for s in range(obs.shape[1])], dim=1)
    return 2 * ((actions == C).double() - p)


# ------------------------------------------------------- initial weights (beyond the contract)


@pytest.mark.parametrize("name", ["nl", "reciprocator"])
def test_each_seed_draws_its_own_initial_weights(name: str) -> None:
    """tests/test_rollout_contract.py checks the shared contract; here: a seed's initial
    policy comes from its own generator only, and different seeds start differently."""
    policy = build(name, (1, 2, 3)).p_cooperate()
    assert torch.equal(policy[1:2], build(name, (2,)).p_cooperate())
    assert not torch.equal(policy[0], policy[1])


# -------------------------------------------------------------------------------- NL


def test_nl_learns_from_its_own_extrinsic_reward_and_leaves_the_shared_tensor_alone():
    for me in (0, 1):
        nl = build("nl", (1, 2))
        seen = capture_learning(nl)
        view = random_episode(3, me=me)
        before = view.rewards.clone()
        assert nl.end_episode(view) == {}
        assert torch.equal(seen[0], before[:, me])
        assert torch.equal(view.rewards, before)


def test_nl_learns_to_defect_against_allc() -> None:
    """Against ALLC defecting pays 0 instead of -1: within 30 episodes (B 32, T 8) P(C)
    falls in every state and the reward rises."""
    for r in play_rollout(make_spec("nl", "allc")):
        curves = r["curves"]
        for state in STATES:
            start, end = curves[f"p_cooperate_{state}"][0], r["cooperation"]["agent"][state]
            assert end < min(start - 0.1, 0.35), state
        assert r["summary"]["reward"] > curves["reward"][0] + 0.1


def test_nl_learns_to_defect_against_alld() -> None:
    """Against ALLD cooperating costs -3 instead of -2: P(C) falls."""
    for r in play_rollout(make_spec("nl", "alld")):
        for state in STATES:
            start = r["curves"][f"p_cooperate_{state}"][0]
            assert r["cooperation"]["agent"][state] < start - 0.1
        assert r["summary"]["reward"] > r["curves"]["reward"][0] + 0.1


def test_nl_learns_to_cooperate_with_tft() -> None:
    """Against TFT a defection is paid back next step: over 40 episodes (B 32, T 8, gamma
    0.96) the NL's P(C | CC) rises above 0.7 and its reward improves."""
    for r in play_rollout(make_spec("nl", "tft", episodes=40)):
        start = r["curves"]["p_cooperate_CC"][0]
        assert r["cooperation"]["agent"]["CC"] > max(start + 0.1, 0.7)
        assert r["summary"]["reward"] > r["curves"]["reward"][0] + 0.1


# ----------------------------------------------------------------- Reciprocator: influence


def test_influence_closed_form_on_every_joint_action_and_state() -> None:
    """``influence`` of j on i is ``2 (1[a^j = C] - p_hat_j(C | s))`` whatever i played."""
    agent = reciprocator((0, 1))
    p_c = torch.tensor([[0.5, 0.9, 0.2, 0.7, 0.1], [0.3, 0.0, 1.0, 0.6, 0.25]], dtype=F64)
    # 2 seeds x 4 joint actions (a^i, a^j) in each of the 5 states: (5, 2, 4)
    a_i = torch.tensor([C, C, D, D]).expand(5, 2, 4)
    a_j = torch.tensor([C, D, C, D]).expand(5, 2, 4)
    of = torch.arange(5).view(5, 1, 1).expand(5, 2, 4)
    got = agent.influence(env.rewards(a_i, a_j, F64), a_i, of, p_c)
    p = p_c.T.unsqueeze(-1)  # (5, 2, 1): p_hat_j(C | state) of each seed
    expected = 2 * ((a_j == C).double() - p)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    # by hand, seed 0 in state CD (p = 0.2): j cooperates -> 1.6, defects -> -0.4
    assert got[2, 0].tolist() == pytest.approx([1.6, -0.4, 1.6, -0.4], abs=1e-15)


def test_influence_in_both_directions_by_hand() -> None:
    """One episode, one game: a^i = C, D, D and a^j = D, D, C, so s = start, CD, DD."""
    agent = reciprocator()
    view = episode([[[C]], [[D]], [[D]]], [[[D]], [[D]], [[C]]])
    assert view.obs.flatten().tolist() == [0, 2, 4]
    p_i = torch.tensor([[0.75, 0.5, 0.5, 0.5, 0.25]], dtype=F64)  # p_hat_i(C | s)
    p_j = torch.tensor([[0.5, 0.5, 0.25, 0.5, 0.75]], dtype=F64)  # p_hat_j(C | s)
    received = agent.influence(view.own_reward, view.own, view.obs, p_j)  # VI^{j->i}
    returned = agent.influence(view.other_reward, view.other, view.obs, p_i)  # VI^{i->j}
    assert received.flatten().tolist() == [-1.0, -0.5, 0.5]
    assert returned.flatten().tolist() == [0.5, -1.0, -0.5]


def test_lagged_balance_is_the_opponents_influence_one_step_earlier() -> None:
    agent = reciprocator(balance="lagged")
    received = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64).view(4, 1, 1)
    returned = torch.tensor([7.0, 7.0, 7.0, 7.0], dtype=F64).view(4, 1, 1)  # ignored
    assert agent.balance(received, returned).flatten().tolist() == [0.0, 1.0, -2.0, 0.5]


def test_cumulative_balance_is_the_discounted_net_influence() -> None:
    """B_0 = 0, B_{t+1} = gamma B_t + received_t - returned_t; by hand with gamma = 0.5:
    B = 0, 1 - 0.5 = 0.5, 0.5 * 0.5 + (-2 - 1) = -2.75, 0.5 * -2.75 + (0.5 + 1) = 0.125."""
    agent = reciprocator(balance="cumulative", gamma=0.5)
    received = torch.tensor([1.0, -2.0, 0.5, 9.0], dtype=F64).view(4, 1, 1)
    returned = torch.tensor([0.5, 1.0, -1.0, 9.0], dtype=F64).view(4, 1, 1)
    got = agent.balance(received, returned).flatten().tolist()
    assert got == pytest.approx([0.0, 0.5, -2.75, 0.125], abs=1e-15)


def test_cumulative_balance_matches_the_recursion_on_random_batches() -> None:
    agent = reciprocator(balance="cumulative", gamma=0.96)
    g = torch.Generator().manual_seed(0)
    received, returned = torch.randn(2, 7, 3, 5, generator=g, dtype=F64).unbind(0)
    expected = torch.zeros_like(received)
    for t in range(6):
        expected[t + 1] = 0.96 * expected[t] + received[t] - returned[t]
    torch.testing.assert_close(agent.balance(received, returned), expected, rtol=0,
                               atol=1e-12)


# ---------------------------------------------------------- Reciprocator: shaped rewards


def _hand_episode_after_a_filler(**params) -> tuple[RolloutReciprocator, list, dict]:
    """Episode 1 of the by-hand game (a^i = C, D, D; a^j = D, D, C) with hand-set
    baselines; episode 0 is a filler (it refreshes the baselines, episode 1 does not)."""
    agent = reciprocator(rr_weight=2.0, target_period=3, **params)
    agent.end_episode(random_episode(9, seeds=1, batch=4))
    agent.p_hat[0] = torch.tensor([[0.75, 0.5, 0.5, 0.5, 0.25]], dtype=F64)
    agent.p_hat[1] = torch.tensor([[0.5, 0.5, 0.25, 0.5, 0.75]], dtype=F64)
    seen = capture_learning(agent)
    log = agent.end_episode(episode([[[C]], [[D]], [[D]]], [[[D]], [[D]], [[C]]]))
    return agent, seen, log


def test_lagged_reciprocal_reward_by_hand() -> None:
    """received = (-1, -0.5, 0.5), returned = (0.5, -1, -0.5): B = (0, -1, -0.5),
    rr = (0, 1, 0.25); extrinsic (-3, -2, 0) + 2 rr = (-3, 0, 0.5)."""
    _, seen, log = _hand_episode_after_a_filler(balance="lagged")
    assert seen[0].flatten().tolist() == pytest.approx([-3.0, 0.0, 0.5], abs=1e-15)
    assert log["reciprocal_reward"].tolist() == pytest.approx([2 * 1.25 / 3], abs=1e-15)
    assert log["balance"].tolist() == pytest.approx([-0.5], abs=1e-15)  # B_{T-1}
    assert log["influence"].tolist() == pytest.approx([-1 / 3], abs=1e-15)  # mean VI^{i->j}


def test_cumulative_reciprocal_reward_by_hand() -> None:
    """gamma 0.5: B = (0, -1 - 0.5, 0.5 * -1.5 + (-0.5 + 1)) = (0, -1.5, -0.25),
    rr = (0, 1.5, 0.125); extrinsic (-3, -2, 0) + 2 rr = (-3, 1, 0.25)."""
    _, seen, log = _hand_episode_after_a_filler(balance="cumulative", gamma=0.5)
    assert seen[0].flatten().tolist() == pytest.approx([-3.0, 1.0, 0.25], abs=1e-15)
    assert log["reciprocal_reward"].tolist() == pytest.approx([2 * 1.625 / 3], abs=1e-15)
    assert log["balance"].tolist() == pytest.approx([-0.25], abs=1e-15)


@pytest.mark.parametrize("me", [0, 1])
def test_reciprocal_reward_closed_form_with_the_episodes_own_frequencies(me: int) -> None:
    """At episode 0 the baselines are the episode's own frequencies; then
    rr_t = 4 (1[a^j_{t-1} = C] - p_j(C | s_{t-1})) (1[a^i_t = C] - p_i(C | s_t)), from
    either slot of the match."""
    agent = reciprocator((1, 2), rr_weight=5.0)
    seen = capture_learning(agent)
    view = random_episode(4, steps=6, seeds=2, batch=32, p_own=0.4, p_other=0.7, me=me)
    extrinsic = view.own_reward.clone()
    log = agent.end_episode(view)
    p_hat = empirical_p_cooperate(view)
    visited = ~p_hat.isnan()
    torch.testing.assert_close(agent.p_hat[visited], p_hat[visited], rtol=0, atol=1e-15)
    received = closed_form_influence(view.other, view.obs, agent.p_hat[1])
    returned = closed_form_influence(view.own, view.obs, agent.p_hat[0])
    rr = torch.zeros_like(received)
    rr[1:] = received[:-1] * returned[1:]
    torch.testing.assert_close(seen[0], extrinsic + 5.0 * rr, rtol=0, atol=1e-12)
    torch.testing.assert_close(log["reciprocal_reward"], 5.0 * rr.mean((0, 2)), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(log["balance"], received[-2].mean(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(log["influence"], returned.mean((0, 2)), rtol=0, atol=1e-12)
    assert rr.abs().sum() > 1  # the test is not vacuous


def test_with_zero_weight_it_learns_exactly_like_the_naive_learner() -> None:
    recip, nl = reciprocator((1, 2), rr_weight=0.0), build("nl", (1, 2))
    for e in range(3):
        recip.end_episode(random_episode(e))
        nl.end_episode(random_episode(e))
    assert torch.equal(recip.ppo.nets.flat, nl.ppo.nets.flat)
    shaping = reciprocator((1, 2), rr_weight=5.0)
    for e in range(3):
        shaping.end_episode(random_episode(e))
    assert not torch.equal(shaping.ppo.nets.flat, nl.ppo.nets.flat)


# ------------------------------------------------------------- Reciprocator: baselines


def test_baselines_start_at_one_half() -> None:
    agent = reciprocator((1, 2, 3))
    assert agent.p_hat.shape == (2, 3, 5)
    assert (agent.p_hat == 0.5).all()


def test_baselines_are_refreshed_at_episodes_0_3_6_and_stale_in_between() -> None:
    """target_period 3, buffer_episodes 1: after episode e the baselines are the empirical
    frequencies of episode 3 * floor(e / 3)."""
    agent = reciprocator((1, 2), target_period=3, buffer_episodes=1)
    refreshed_from = None
    for e in range(8):
        view = random_episode(100 + e, p_own=0.2 + 0.08 * e, p_other=0.8 - 0.07 * e)
        agent.end_episode(view)
        if e % 3 == 0:
            refreshed_from = empirical_p_cooperate(view)
        assert not refreshed_from.isnan().any()  # every state visited: a full refresh
        torch.testing.assert_close(agent.p_hat, refreshed_from, rtol=0, atol=1e-15,
                                   msg=f"episode {e}")


def test_baselines_pool_the_last_buffer_episodes() -> None:
    """buffer_episodes 2, target_period 1: counts of the last two episodes, pooled."""
    agent = reciprocator((1,), target_period=1, buffer_episodes=2)
    views = [random_episode(200 + e, seeds=1, p_own=0.2 + 0.3 * e) for e in range(3)]
    for view in views:
        agent.end_episode(view)
    last_two = episode(torch.cat([views[1].own, views[2].own], dim=2),
                       torch.cat([views[1].other, views[2].other], dim=2))
    # the pooled episode has the same (state, action) samples as the two episodes
    assert torch.equal(torch.cat([views[1].obs, views[2].obs], dim=2), last_two.obs)
    torch.testing.assert_close(agent.p_hat, empirical_p_cooperate(last_two), rtol=0,
                               atol=1e-15)


def test_unvisited_states_keep_their_previous_estimate() -> None:
    """Against a cooperator, CD and DD (opponent defected) never occur: they stay at 0.5,
    and later at whatever they were, while visited states are refreshed."""
    agent = reciprocator((1, 2), target_period=1)
    always_c = random_episode(5, p_other=1.0)
    agent.end_episode(always_c)
    cd, dd = STATES.index("CD"), STATES.index("DD")
    assert (agent.p_hat[:, :, [cd, dd]] == 0.5).all()
    expected = empirical_p_cooperate(always_c)
    for k in (0, 1, 3):
        torch.testing.assert_close(agent.p_hat[:, :, k], expected[:, :, k], rtol=0, atol=0)
    agent.p_hat[:, :, cd] = 0.3
    agent.end_episode(random_episode(6, p_other=1.0))
    assert (agent.p_hat[:, :, cd] == 0.3).all() and (agent.p_hat[:, :, dd] == 0.5).all()


# ---------------------------------------------------------- Reciprocator: faithful quirks


def _r_vs_r(aliasing: bool):
    """Reciprocator (slot 0, reward_aliasing as given) then Reciprocator (slot 1) end the
    same episode on the shared reward tensor, in the match's order."""
    r0 = reciprocator((1, 2), reward_aliasing=aliasing)
    r1 = reciprocator((3, 4))
    seen0, seen1 = capture_learning(r0), capture_learning(r1)
    view0 = random_episode(7, steps=6, seeds=2, batch=32)
    view1 = EpisodeView(env.other_side(view0.obs), view0.other, view0.own, view0.rewards, 1)
    before = view0.rewards.clone()
    r0.end_episode(view0)
    after_first = view0.rewards.clone()
    r1.end_episode(view1)
    return r1, view1, before, after_first, view0.rewards, seen0[0], seen1[0]


def test_without_reward_aliasing_the_shared_rewards_are_untouched() -> None:
    *_, before, after_first, final, _, _ = _r_vs_r(aliasing=False)
    assert torch.equal(after_first, before) and torch.equal(final, before)


def test_with_reward_aliasing_the_next_reciprocator_sees_the_shaped_reward() -> None:
    """Reference quirk (spec 8, item 6): the first Reciprocator shapes its reward column
    in place, so the second measures its influence on the *shaped* reward:
    its shaped reward gains w * B^1_t * (w rr^0_t)."""
    r1, view1, before, after_first, _, shaped0, aliased1 = _r_vs_r(aliasing=True)
    _, _, _, _, _, shaped0_clean, clean1 = _r_vs_r(aliasing=False)
    torch.testing.assert_close(shaped0, shaped0_clean, rtol=0, atol=1e-12)  # same shaping
    assert torch.equal(after_first[:, 0], shaped0)  # written into the shared tensor
    assert torch.equal(after_first[:, 1], before[:, 1])  # only its own column
    assert not torch.equal(after_first, before)
    w = r1.params.rr_weight
    received1 = closed_form_influence(view1.other, view1.obs, r1.p_hat[1])
    lagged = torch.zeros_like(received1)
    lagged[1:] = received1[:-1]
    extra = w * lagged * (shaped0 - before[:, 0])
    assert extra.abs().sum() > 1  # not vacuous
    torch.testing.assert_close(aliased1, clean1 + extra, rtol=0, atol=1e-12)


def test_lagged_logs_are_nan_first_then_the_previous_episodes() -> None:
    on = reciprocator((1, 2), lagged_logs=True)
    off = reciprocator((1, 2), lagged_logs=False)
    logs_on, logs_off = [], []
    for e in range(3):
        logs_on.append(on.end_episode(random_episode(300 + e)))
        logs_off.append(off.end_episode(random_episode(300 + e)))
    assert set(logs_on[0]) == set(logs_off[0]) == {"reciprocal_reward", "balance", "influence"}
    for key, value in logs_on[0].items():
        assert value.shape == (2,) and value.isnan().all(), key
    for e in (1, 2):
        for key in logs_off[0]:
            assert torch.equal(logs_on[e][key], logs_off[e - 1][key]), (e, key)
    assert not torch.equal(logs_off[0]["influence"], logs_off[1]["influence"])
    assert torch.equal(on.ppo.nets.flat, off.ppo.nets.flat)  # logging changes no learning


def test_a_match_records_the_reciprocators_diagnostics_per_episode() -> None:
    """Under ``agent.<name>`` / ``opponent.<name>``, one value per episode; with
    lagged_logs the first episode's are NaN (the reference logs them one episode late)."""
    for r in play_rollout(make_spec("reciprocator", "tft", episodes=4, table_last=2)):
        for key in ("agent.reciprocal_reward", "agent.balance", "agent.influence"):
            assert len(r["curves"][key]) == 4
            assert all(math.isfinite(x) for x in r["curves"][key]), key
    spec = make_spec("tft", "reciprocator", episodes=4, table_last=2,
                     opponent_params={"lagged_logs": True})
    for r in play_rollout(spec):
        curve = r["curves"]["opponent.influence"]
        assert len(curve) == 4 and math.isnan(curve[0])
        assert all(math.isfinite(x) for x in curve[1:])
        assert not any(key.startswith("agent.") for key in r["curves"])
