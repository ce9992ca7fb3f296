"""Spec of IPD-Rollout: the sampled game, its match protocol and the fixed strategies.

- The game: action 0 = C, 1 = D; rewards CC (-1, -1), CD (-3, 0), DC (0, -3), DD (-2, -2);
  a player's observation is the previous joint action from its own side,
  ``1 + 2 own + other`` (CC 1, CD 2, DC 3, DD 4), and ``0`` (start) before the first move.
- An episode is B games of T steps per seed; every episode starts from the start state;
  both players act from their policy at the start of the episode.
- The match protocol's records, seeds, settings and CLI: ``test_rollout_protocol.py``.
- Fixed strategies are exact: ALLC, ALLD and TFT give the textbook per-step rewards.
"""

from __future__ import annotations

import math

import pytest
import torch

from recip_tourney import registry
from recip_tourney.agents.base import NoParams
from recip_tourney.agents.rollout import EpisodeView, RolloutAgent
from recip_tourney.envs import ipd_rollout as env
from recip_tourney.envs.ipd import PAYOFF, STATES
from recip_tourney.tournament.rollout import play_episode, play_rollout
from recip_tourney.tournament.schedule import MatchSpec, Player, SeedSlot

GAME = "ipd-rollout"
F64 = torch.float64
C, D = 0, 1
#: Reward of (player 0, player 1) for each joint action (a0, a1).
JOINT = {(C, C): (-1.0, -1.0), (C, D): (-3.0, 0.0), (D, C): (0.0, -3.0), (D, D): (-2.0, -2.0)}
#: P(cooperate) of TFT in start, CC, CD, DC, DD.
TFT_TABLE = {"start": 1.0, "CC": 1.0, "CD": 0.0, "DC": 1.0, "DD": 0.0}


# ----------------------------------------------------------------------------- helpers


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def build(name: str, generators: list[torch.Generator], dtype=F64, **params) -> RolloutAgent:
    """A registered IPD-Rollout agent with ``params`` over the defaults."""
    info = registry.agent(GAME, name)
    return info.cls(info.params(**params), generators, dtype)


def make_spec(
    agent: str,
    opponent: str,
    seeds: tuple[int, ...] = (11, 12),
    agent_params: dict | None = None,
    opponent_params: dict | None = None,
    **settings: object,
) -> MatchSpec:
    """A match of ``agent`` vs ``opponent`` with small default settings (float64)."""
    base = {"batch": 16, "steps": 8, "episodes": 6, "table_last": 3, "dtype": "float64"}

    def player(name: str, params: dict | None) -> Player:
        return Player(name, registry.agent(GAME, name).params(**(params or {})).model_dump())

    slots = tuple(SeedSlot(i, s, f"match-{s}") for i, s in enumerate(seeds))
    return MatchSpec(GAME, base | settings, "hash", player(agent, agent_params),
                     player(opponent, opponent_params), slots)


def episode_views(obs, actions, rewards) -> tuple[EpisodeView, EpisodeView]:
    """Both players' views of an episode, exactly as the match builds them."""
    return (
        EpisodeView(obs, actions[:, 0], actions[:, 1], rewards, me=0),
        EpisodeView(env.other_side(obs), actions[:, 1], actions[:, 0], rewards, me=1),
    )


def play_episodes(players, generators, episodes: int, steps: int, batch: int):
    """Play and end ``episodes`` episodes as the match does; returns each episode's tensors."""
    played = []
    for _ in range(episodes):
        obs, actions, rewards = play_episode(players, generators, steps, batch, F64)
        played.append((obs, actions, rewards.clone()))
        for player, view in zip(players, episode_views(obs, actions, rewards), strict=True):
            player.end_episode(view)
    return played


class Spy(RolloutAgent):
    """Cooperates with a fixed probability and records every call the match makes."""

    def __init__(self, p: float, generators: list[torch.Generator]):
        super().__init__(NoParams(), generators, F64)
        self.policy = torch.full((self.seeds, len(STATES)), p, dtype=F64)
        self.calls: list[str] = []
        self.seen: list[list[torch.Tensor]] = []

    def p_cooperate(self) -> torch.Tensor:
        return self.policy

    def begin_episode(self) -> None:
        self.calls.append("begin")
        self.seen.append([])

    def act(self, obs, noise, policy):
        self.calls.append("act")
        assert torch.equal(policy, self.policy)
        self.seen[-1].append(obs.clone())
        return super().act(obs, noise, policy)

    def end_episode(self, episode):
        self.calls.append("end")
        return {}


# ------------------------------------------------------------------------ the game itself


@pytest.mark.parametrize(("a0", "a1"), list(JOINT))
def test_rewards_of_every_joint_action_from_both_sides(a0: int, a1: int) -> None:
    """CC -1/-1, CD -3/0, DC 0/-3, DD -2/-2, the player's own action first."""
    own, other = torch.tensor([a0]), torch.tensor([a1])
    r0, r1 = JOINT[(a0, a1)]
    assert env.rewards(own, other, F64).item() == r0
    assert env.rewards(other, own, F64).item() == r1
    assert env.reward_table()[a0, a1].item() == PAYOFF[a0][a1] == r0
    next_obs, (s0, s1) = env.step((own, other), F64)
    assert (s0.item(), s1.item()) == (r0, r1)
    assert s0.dtype == s1.dtype == F64
    assert next_obs.item() == 1 + 2 * a0 + a1


def test_observation_is_the_joint_action_own_action_first() -> None:
    """``1 + 2 own + other``: CC -> 1, CD -> 2, DC -> 3, DD -> 4, named as in STATES."""
    for own, other, index, name in [(C, C, 1, "CC"), (C, D, 2, "CD"), (D, C, 3, "DC"),
                                    (D, D, 4, "DD")]:
        obs = env.observation(torch.tensor([own]), torch.tensor([other]))
        assert obs.dtype == torch.long and obs.item() == index
        assert STATES[index] == name
        # the network input of an observation is (own previous action, other's)
        assert env.OBSERVATION_FEATURES[index] == (float(own), float(other))


def test_the_start_state_is_observation_zero() -> None:
    start = env.initial_observation((3, 4))
    assert start.shape == (3, 4) and start.dtype == torch.long
    assert (start == 0).all() and env.START == 0 and STATES[0] == "start"
    assert env.OBSERVATION_FEATURES[0] == (-1.0, 0.0)  # the reference code's start vector


def test_other_side_swaps_cd_and_dc_only() -> None:
    everything = torch.arange(5)
    assert env.other_side(everything).tolist() == [0, 1, 3, 2, 4]
    assert torch.equal(env.other_side(env.other_side(everything)), everything)
    for own in (C, D):
        for other in (C, D):
            a, b = torch.tensor([own]), torch.tensor([other])
            assert torch.equal(env.other_side(env.observation(a, b)), env.observation(b, a))


def test_step_is_the_same_game_in_every_batch_element() -> None:
    a0 = torch.tensor([[C, C, D, D], [D, C, D, C]])
    a1 = torch.tensor([[C, D, C, D], [D, D, C, C]])
    obs, (r0, r1) = env.step((a0, a1), torch.float32)
    for index in torch.cartesian_prod(torch.arange(2), torch.arange(4)).tolist():
        i, j = index
        expected = JOINT[(a0[i, j].item(), a1[i, j].item())]
        assert (r0[i, j].item(), r1[i, j].item()) == expected
        assert obs[i, j].item() == 1 + 2 * a0[i, j].item() + a1[i, j].item()
    assert r0.dtype == torch.float32


# ------------------------------------------------------------------- episode boundaries


def test_every_episode_starts_from_the_start_state_and_observations_are_egocentric() -> None:
    """Player 0 sees (own, other) of the last step, player 1 the same step from its side;
    both see the start state at step 0 of every episode (nothing carries over)."""
    g = gens(3, 4)
    players = (Spy(0.5, g), Spy(0.3, g))
    steps, batch = 6, 16
    for episode in range(3):
        obs, actions, rewards = play_episode(players, g, steps, batch, F64)
        a0, a1 = actions[:, 0], actions[:, 1]
        seen0 = torch.stack(players[0].seen[episode])
        seen1 = torch.stack(players[1].seen[episode])
        assert obs.shape == (steps, 2, batch) and actions.shape == (steps, 2, 2, batch)
        assert (obs[0] == env.START).all() and (seen1[0] == env.START).all()
        assert torch.equal(obs[1:], env.observation(a0[:-1], a1[:-1]))
        assert torch.equal(seen0, obs)  # the log is what player 0 was shown
        assert torch.equal(seen1, env.other_side(obs))
        assert torch.equal(seen1[1:], env.observation(a1[:-1], a0[:-1]))
        assert torch.equal(rewards[:, 0], env.rewards(a0, a1, F64))
        assert torch.equal(rewards[:, 1], env.rewards(a1, a0, F64))
    # begin once per episode, then one act per step; the match, not play_episode, ends it
    assert players[0].calls == (["begin"] + ["act"] * steps) * 3


def test_an_agent_cooperates_with_its_policy_probability_per_state() -> None:
    """The default ``act`` plays C where the step's uniform draw is below P(C | obs)."""
    agent = Spy(0.0, gens(0))
    obs = torch.tensor([[0, 1, 2, 3, 4, 0]])
    policy = torch.tensor([[0.2, 0.4, 0.6, 0.8, 1.0]], dtype=F64)
    noise = torch.tensor([[0.1, 0.5, 0.59, 0.8, 0.999, 0.2]], dtype=F64)
    agent.begin_episode()
    defects = RolloutAgent.act(agent, obs, noise, policy)
    assert defects.tolist() == [[False, True, False, True, False, True]]


# ------------------------------------------------------------ closed forms (deterministic)

T = 8
TFT_VS_ALLD = [-3.0] + [-2.0] * (T - 1)  # exploited once, then mutual defection
ALLD_VS_TFT = [0.0] + [-2.0] * (T - 1)
PER_STEP = [
    ("allc", "allc", [-1.0] * T, [-1.0] * T),
    ("alld", "alld", [-2.0] * T, [-2.0] * T),
    ("allc", "alld", [-3.0] * T, [0.0] * T),
    ("alld", "allc", [0.0] * T, [-3.0] * T),
    ("tft", "tft", [-1.0] * T, [-1.0] * T),
    ("tft", "allc", [-1.0] * T, [-1.0] * T),
    ("tft", "alld", TFT_VS_ALLD, ALLD_VS_TFT),
    ("alld", "tft", ALLD_VS_TFT, TFT_VS_ALLD),
]


@pytest.mark.parametrize(("a", "b", "reward_a", "reward_b"), PER_STEP)
def test_fixed_strategies_step_by_step(a, b, reward_a, reward_b) -> None:
    g = gens(1, 2)
    players = (build(a, g), build(b, g))
    _, _, rewards = play_episode(players, g, T, 16, F64)
    expected = torch.tensor([reward_a, reward_b], dtype=F64).T  # (T, 2)
    assert torch.equal(rewards, expected[:, :, None, None].expand(T, 2, 2, 16))


@pytest.mark.parametrize(("a", "b", "reward_a", "reward_b"), PER_STEP)
def test_fixed_strategies_average_reward_per_step_in_the_records(a, b, reward_a, reward_b):
    """e.g. TFT vs ALLD: (-3 - 2 (T - 1)) / T for TFT and (0 - 2 (T - 1)) / T for ALLD."""
    records = play_rollout(make_spec(a, b, steps=T, episodes=3, table_last=2))
    assert len(records) == 2
    for record in records:
        assert record["summary"] == {"reward": sum(reward_a) / T,
                                     "opponent_reward": sum(reward_b) / T}
        assert record["curves"]["reward"] == [sum(reward_a) / T] * 3


def test_tft_vs_alld_closed_form_for_several_lengths() -> None:
    for steps in (1, 2, 5):
        record = play_rollout(make_spec("tft", "alld", steps=steps, episodes=2, table_last=1))[0]
        assert record["summary"]["reward"] == pytest.approx((-3 - 2 * (steps - 1)) / steps,
                                                            abs=1e-15)
        assert record["summary"]["opponent_reward"] == pytest.approx(-2 * (steps - 1) / steps,
                                                                     abs=1e-15)
        coop = record["cooperation"]
        assert coop["agent"]["overall"] == pytest.approx(1 / steps, abs=1e-15)  # only move 1
        assert coop["opponent"]["overall"] == 0.0


def test_fixed_strategies_report_their_tables_as_final_policies() -> None:
    record = play_rollout(make_spec("tft", "allc", episodes=2, table_last=1))[0]
    assert record["cooperation"]["agent"] == {"overall": 1.0, **TFT_TABLE}
    assert record["cooperation"]["opponent"] == {"overall": 1.0, **dict.fromkeys(STATES, 1.0)}
    record = play_rollout(make_spec("alld", "random", episodes=2, table_last=1,
                                    opponent_params={"p_cooperate": 0.25}))[0]
    assert record["cooperation"]["agent"] == {"overall": 0.0, **dict.fromkeys(STATES, 0.0)}
    assert {k: v for k, v in record["cooperation"]["opponent"].items() if k != "overall"} == (
        dict.fromkeys(STATES, 0.25))


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_random_vs_allc_pays_minus_p_per_step(p: float) -> None:
    """Random(p) vs ALLC: random gets -1 when it cooperates and 0 when it defects, so its
    reward per step is exactly minus its realised cooperation rate, whose mean is p; ALLC
    gets -1 or -3, i.e. exactly ``-3 - 2 * random's reward``.

    Tolerance: the realised rate averages n = batch x steps x table_last = 64 x 8 x 4 =
    2048 Bernoulli(p) draws per seed, sd = sqrt(p (1 - p) / n) <= 0.011; we allow 5 sd
    (a false failure has probability < 1e-6 for any seed)."""
    batch, steps, last = 64, 8, 4
    records = play_rollout(make_spec("random", "allc", batch=batch, steps=steps, episodes=last,
                                     table_last=last, agent_params={"p_cooperate": p}))
    tolerance = 5 * math.sqrt(p * (1 - p) / (batch * steps * last))
    for record in records:
        reward, opponent = record["summary"]["reward"], record["summary"]["opponent_reward"]
        assert reward == pytest.approx(-p, abs=tolerance)
        assert opponent == pytest.approx(-3 - 2 * reward, abs=1e-12)
        assert record["cooperation"]["agent"]["overall"] == pytest.approx(-reward, abs=1e-12)
        assert record["cooperation"]["opponent"]["overall"] == 1.0
    # the two seeds draw their own games
    assert records[0]["summary"] != records[1]["summary"]


# --------------------------------------------------------------------- TFT's carry-over


def test_tft_without_carry_over_cooperates_first_in_every_episode() -> None:
    record = play_rollout(make_spec("tft", "alld", episodes=4, table_last=4, steps=T,
                                    agent_params={"carry_over": False}))[0]
    assert record["curves"]["reward"] == [sum(TFT_VS_ALLD) / T] * 4
    assert record["curves"]["p_cooperate"] == [1 / T] * 4


def test_tft_with_carry_over_opens_with_the_opponents_last_move_from_episode_two() -> None:
    """The reference TFT is never reset: against ALLD it defects from step 0 of episode 2."""
    record = play_rollout(make_spec("tft", "alld", episodes=4, table_last=4, steps=T,
                                    agent_params={"carry_over": True}))[0]
    assert record["curves"]["reward"] == [sum(TFT_VS_ALLD) / T] + [-2.0] * 3
    assert record["curves"]["p_cooperate"] == [1 / T, 0.0, 0.0, 0.0]
    # against a cooperator the carried-over move is C: nothing changes
    record = play_rollout(make_spec("allc", "tft", episodes=3, table_last=3,
                                    opponent_params={"carry_over": True}))[0]
    assert record["curves"]["opponent_reward"] == [-1.0] * 3


@pytest.mark.parametrize("slot", [0, 1])
@pytest.mark.parametrize("carry_over", [False, True])
def test_tft_opening_game_by_game(slot: int, carry_over: bool) -> None:
    """With carry_over, TFT's first move of episode e+1 in each game is the opponent's last
    move of episode e in that game; without it, C. Within an episode it is plain TFT."""
    g = gens(5, 6)
    tft = build("tft", g, carry_over=carry_over)
    rnd = build("random", g, p_cooperate=0.5)
    players = (tft, rnd) if slot == 0 else (rnd, tft)
    played = play_episodes(players, g, episodes=3, steps=5, batch=64)
    for e, (_, actions, _) in enumerate(played):
        mine, theirs = actions[:, slot], actions[:, 1 - slot]
        assert torch.equal(mine[1:], theirs[:-1])  # copies the previous move
        if carry_over and e > 0:
            previous_last = played[e - 1][1][-1, 1 - slot]
            assert torch.equal(mine[0], previous_last)
            assert (mine[0] == D).any() and (mine[0] == C).any()  # the test can tell
        else:
            assert (mine[0] == C).all()
