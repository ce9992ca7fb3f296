"""The Coins protocol: what a match plays, records and learns, on tiny real configs."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from recip_tourney import registry
from recip_tourney.agents.coins_agent import CoinsSetup, CoinsStep
from recip_tourney.agents.reciprocal_reward import ledger, reciprocal_reward
from recip_tourney.envs import coins as env
from recip_tourney.tournament.coins import CoinsMatch, CoinsSettings, play_coins
from recip_tourney.tournament.match import play_match, worker_numerics
from recip_tourney.tournament.schedule import MatchSpec, Player, SeedSlot
from recip_tourney.tournament.store import is_failed

GAME = "coins"
SMALL = {
    "batch": 16,
    "steps": 8,
    "episodes": 5,
    "table_last": 3,
    "dtype": "float64",
    "influence": {"samples": 96, "minibatch": 32, "epochs": 2},
}
FAST = {"epochs": 2}


def make_spec(agent: str, opponent: str, seeds=(11, 12), agent_params=None,
              opponent_params=None, **settings) -> MatchSpec:
    """A Coins match with small settings (float64) and 2-epoch learners."""

    def player(name: str, params: dict | None) -> Player:
        info = registry.agent(GAME, name)
        if params is None:
            params = FAST if info.learns else {}
        return Player(name, info.params(**params).model_dump())

    slots = tuple(SeedSlot(i, s, f"match-{s}") for i, s in enumerate(seeds))
    return MatchSpec(GAME, SMALL | settings, "hash", player(agent, agent_params),
                     player(opponent, opponent_params), slots)


# -- the reciprocal reward: a hand-computed example (rollout spec 5.4) -------------------


def test_petty_payoff_on_a_hand_computed_three_step_example():
    # X = my influence on them, Y = theirs on me; gamma 0.5.
    x = torch.tensor([1.0, -2.0, 0.5])
    y = torch.tensor([3.0, 1.0, -1.0])
    rr, balance = reciprocal_reward(x, y, None, 0.5, "petty_payoff")
    # B0 = 0; B1 = 0.5*0 + 3 - 1 = 2; B2 = 0.5*2 + 1 - (-2) = 4
    assert balance.tolist() == [0.0, 2.0, 4.0]
    # rr_t = B_t * X_t
    assert rr.tolist() == [0.0, -4.0, 2.0]


def test_every_reward_type_on_the_same_example():
    x = torch.tensor([1.0, -2.0, 0.5])
    y = torch.tensor([3.0, 1.0, -1.0])
    z = torch.tensor([0.5, 0.5, 0.5])
    g = 0.5
    grudge = [0.0, 3.0, 2.5]  # G1 = 3, G2 = 1.5 + 1
    debit = [0.0, 1.5, 0.75 - 1.5]  # D1 = 1 + .5, D2 = .75 + (-2 + .5)
    expected = {
        "petty": [b * v for b, v in zip(grudge, x.tolist(), strict=True)],
        "signed_grudge": [math.copysign(1, b) * v if b else 0.0
                          for b, v in zip(grudge, x.tolist(), strict=True)],
        "signed_petty_payoff": [0.0, -2.0, 0.5],
        "signed_grudge_petty_payoff": [0.0, -2.0, 4.0],
        "grudge_minus_debit": [(gr - d) * v
                               for gr, d, v in zip(grudge, debit, x.tolist(), strict=True)],
        "signed_grudge_minus_debit": [0.0, -2.0, 0.5],
    }
    for kind, want in expected.items():
        rr, _ = reciprocal_reward(x, y, z, g, kind)
        assert rr.tolist() == pytest.approx(want), kind


def test_unknown_reward_type_names_the_valid_ones():
    with pytest.raises(ValueError, match="petty_payoff"):
        reciprocal_reward(torch.zeros(2), torch.zeros(2), None, 0.9, "generous")


def test_ledger_restarts_at_zero_and_decays():
    out = ledger(torch.ones(4, 2), 0.5)
    assert out[:, 0].tolist() == [0.0, 1.0, 1.5, 1.75, 1.875]


# -- scripted agents ---------------------------------------------------------------------


def _setup(me: int, seeds: int = 1) -> CoinsSetup:
    gens = [torch.Generator().manual_seed(s) for s in range(seeds)]
    return CoinsSetup(gens, torch.float64, torch.device("cpu"), 2, 3, me)


def test_random_agent_plays_each_action_about_a_fifth_of_the_time():
    agent = registry.agent(GAME, "random").cls(registry.agent(GAME, "random").params(),
                                               _setup(0))
    noise = torch.rand(1, 5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = env.reset(torch.zeros(1, 5000, 4, dtype=torch.long), 2)
    actions = agent.act(CoinsStep(torch.zeros(0), state, noise))
    counts = torch.bincount(actions.flatten(), minlength=5) / 5000
    assert counts.sub(0.2).abs().max() < 0.02


def test_greedy_prefers_its_own_coin_at_equal_distance():
    # player 1 at cell 4 (centre); coin 0 at cell 1 (up), coin 1 at cell 5 (right): both 1 away
    state = env.CoinsState(torch.tensor([[0, 4]]), torch.tensor([[1, 5]]))
    info = registry.agent(GAME, "greedy")
    greedy1 = info.cls(info.params(), _setup(1))
    action = greedy1.act(CoinsStep(torch.zeros(0), state, torch.zeros(1, 1)))
    assert action.item() == env.RIGHT


def test_greedy_beats_random_and_takes_more_of_the_randoms_coins():
    (record, *_) = play_match(make_spec("greedy", "random", seeds=(3,), episodes=3))
    assert record["summary"]["reward"] > 2.0 > record["summary"]["opponent_reward"]
    curves = record["curves"]
    assert min(curves["coins"]) > 2 * max(curves["opponent_coins"])


# -- the match ---------------------------------------------------------------------------


def test_episode_statistics_are_consistent_with_the_reward_rule():
    """Return = coins collected - 2 x own coins the other took, for both players."""
    (record, *_) = play_match(make_spec("greedy", "random", seeds=(5,), episodes=2))
    c = record["curves"]
    for e in range(2):
        mine_taken = c["opponent_other_coins"][e]
        theirs_taken = c["other_coins"][e]
        assert c["reward"][e] == pytest.approx(c["coins"][e] - 2 * mine_taken)
        assert c["opponent_reward"][e] == pytest.approx(c["opponent_coins"][e] - 2 * theirs_taken)
        assert c["coins"][e] == pytest.approx(c["own_coins"][e] + c["other_coins"][e])
        for p in ("", "opponent_"):  # the episode's own-coin share, logged as such
            assert c[f"{p}own_share"][e] == pytest.approx(c[f"{p}own_coins"][e] / c[f"{p}coins"][e])


def test_the_share_of_an_episode_without_coins_is_nan_and_the_match_is_not_failed():
    # B 1 x T 1 from a draw where the stay-put random players take no coin
    records = play_match(make_spec("random", "random", seeds=tuple(range(8)), batch=1, steps=1,
                                   episodes=1))
    empty = [r for r in records if r["curves"]["coins"] == [0.0]]
    assert empty, "some seed should take no coin in one step"
    assert all(math.isnan(r["curves"]["own_share"][0]) and not is_failed(r)
               for r in empty)


def test_records_hold_summary_cooperation_and_curves_per_seed():
    records = play_match(make_spec("nl", "greedy"))
    assert [r["seed"] for r in records] == [11, 12]
    for r in records:
        assert len(r["curves"]["reward"]) == SMALL["episodes"]
        assert r["summary"]["reward"] == pytest.approx(sum(r["curves"]["reward"][-3:]) / 3)
        share = r["cooperation"]["agent"]["own_share"]
        own = sum(r["curves"]["own_coins"][-3:])
        total = sum(r["curves"]["coins"][-3:])
        assert share == pytest.approx(own / total)


def test_nobody_learns_while_the_estimator_warms_up():
    spec = make_spec("reciprocator", "nl", seeds=(7,))
    settings = CoinsSettings(**spec.settings)
    with worker_numerics():
        match = CoinsMatch(spec, settings)
        weights = [p.ppo.nets.flat.clone() for p in match.players]
        for _ in range(settings.init_episodes):
            match.play_episode()
            assert all(torch.equal(w, p.ppo.nets.flat) for w, p in zip(weights, match.players,
                                                                       strict=True))
        stats = match.play_episode()
    assert not any(torch.equal(w, p.ppo.nets.flat) for w, p in zip(weights, match.players,
                                                                   strict=True))
    assert torch.isfinite(stats["agent.reciprocal_reward"]).all()


def test_without_a_reciprocator_learning_starts_at_once():
    spec = make_spec("nl", "nl", seeds=(7,))
    with worker_numerics():
        match = CoinsMatch(spec, CoinsSettings(**spec.settings))
        before = match.players[0].ppo.nets.flat.clone()
        match.play_episode()
    assert match.estimator is None
    assert not torch.equal(before, match.players[0].ppo.nets.flat)


def test_reciprocator_logs_nan_during_warm_up_then_its_balance():
    (record, *_) = play_match(make_spec("reciprocator", "nl", seeds=(4,)))
    rr = record["curves"]["agent.reciprocal_reward"]
    assert all(math.isnan(v) for v in rr[:2])
    assert all(math.isfinite(v) for v in rr[2:])
    assert "opponent.reciprocal_reward" not in record["curves"]


def test_reciprocator_logs_the_per_step_spread_of_both_reward_terms():
    spec = make_spec("reciprocator", "nl", seeds=(4,))
    settings = CoinsSettings(**spec.settings)
    with worker_numerics():
        match = CoinsMatch(spec, settings)
        for _ in range(settings.init_episodes):
            stats = match.play_episode()
        assert stats["agent.reward_step_std"].isnan().all()
        seen = {}
        real = match.players[0].learn

        def learn(episode, rewards):  # noqa: ANN001, ANN202 - the shaped rewards PPO gets
            seen["extrinsic"], seen["shaped"] = episode.own_reward.clone(), rewards.clone()
            return real(episode, rewards)

        match.players[0].learn = learn
        stats = match.play_episode()
    weight = match.players[0].weight
    rr = (seen["shaped"] - seen["extrinsic"]) / weight  # w x rr was added to the reward
    assert stats["agent.reward_step_std"].item() == pytest.approx(
        seen["extrinsic"].std().item(), rel=1e-12)
    assert stats["agent.reciprocal_reward_step_std"].item() == pytest.approx(
        rr.std().item(), rel=1e-9)
    assert stats["agent.reciprocal_reward_step_std"].item() > 0


@pytest.mark.parametrize("pair", [("reciprocator", "nl"), ("nl", "reciprocator")])
def test_a_seed_gives_the_same_record_alone_or_batched(pair):
    together = play_match(make_spec(*pair, seeds=(21, 22)))
    alone = play_match(make_spec(*pair, seeds=(22,)))
    for key in ("curves", "summary", "cooperation"):  # as stored: NaN compares equal
        assert json.dumps(together[1][key], sort_keys=True) == json.dumps(alone[0][key],
                                                                          sort_keys=True)


@pytest.mark.parametrize("pair", [("reciprocator", "nl"), ("nl", "nl")])
def test_the_same_numbers_with_one_thread_or_two(pair):
    # float32, where a different order of operations would show in the last bits
    spec = make_spec(*pair, seeds=(31, 32), dtype="float32")
    one = play_match(spec)
    two = play_match(dataclasses.replace(spec, threads=2))
    for a, b in zip(one, two, strict=True):
        assert json.dumps(a["curves"], sort_keys=True) == json.dumps(b["curves"], sort_keys=True)


def test_same_seed_same_numbers_and_different_seeds_differ():
    a = play_coins(make_spec("nl", "random", seeds=(1, 2)))
    b = play_coins(make_spec("nl", "random", seeds=(1, 2)))
    assert [r["curves"] for r in a] == [r["curves"] for r in b]
    assert a[0]["curves"]["reward"] != a[1]["curves"]["reward"]


def test_faithful_layout_changes_what_player_one_sees_not_the_game():
    ego = play_match(make_spec("random", "greedy", seeds=(9,), layout="egocentric"))
    faithful = play_match(make_spec("random", "greedy", seeds=(9,), layout="faithful"))
    # scripted agents read the state, not the observation: same game either way
    assert ego[0]["curves"] == faithful[0]["curves"]


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cuda"):
        play_coins(make_spec("random", "random", device="cuda"))
