"""Spec of the IPD-Rollout match protocol: records, seeds, settings and the CLI.

- A match record's reward is the average reward per step over the last ``table_last``
  episodes (all of them when fewer); one record per seed, and a seed's numbers do not depend
  on which other seeds share its batch, bit for bit.
- ``--jobs 1`` and ``--jobs 2`` give the same tables; bad input is one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_invoke import cli, ok, one_line_error
from pydantic import ValidationError
from test_ipd_rollout import GAME, PER_STEP, T, build, gens, make_spec

from recip_tourney import registry
from recip_tourney.envs.ipd import STATES
from recip_tourney.tournament.rollout import RolloutSettings, play_rollout

# ---------------------------------------------------------------- protocol and records


def test_one_record_per_seed_with_the_documented_fields() -> None:
    spec = make_spec("nl", "reciprocator", seeds=(7, 8, 9), episodes=5, table_last=2)
    records = play_rollout(spec)
    assert [r["seed_index"] for r in records] == [0, 1, 2]
    assert [r["seed"] for r in records] == [7, 8, 9]
    assert [r["match_id"] for r in records] == ["match-7", "match-8", "match-9"]
    per_state = [f"{p}p_cooperate_{s}" for p in ("", "opponent_") for s in STATES]
    diagnostics = ["opponent.reciprocal_reward", "opponent.balance", "opponent.influence"]
    for r in records:
        assert r["game"] == GAME and (r["agent"], r["opponent"]) == ("nl", "reciprocator")
        assert r["agent_params"] == spec.agent.params
        assert set(r["curves"]) == {"reward", "opponent_reward", "p_cooperate",
                                    "opponent_p_cooperate", *per_state, *diagnostics}
        assert all(len(curve) == 5 for curve in r["curves"].values())
        assert set(r["cooperation"]) == {"agent", "opponent"}
        for side in r["cooperation"].values():
            assert set(side) == {"overall", *STATES}
            assert all(0.0 <= p <= 1.0 for p in side.values())
        assert all(-3.0 <= x <= 0.0 for x in r["curves"]["reward"])


def test_summary_and_overall_cooperation_average_the_last_table_last_episodes() -> None:
    records = play_rollout(make_spec("nl", "random", episodes=7, table_last=3))
    for r in records:
        curves, last = r["curves"], slice(-3, None)
        assert r["summary"]["reward"] == pytest.approx(sum(curves["reward"][last]) / 3,
                                                       rel=1e-12)
        assert r["summary"]["opponent_reward"] == pytest.approx(
            sum(curves["opponent_reward"][last]) / 3, rel=1e-12)
        for side, key in (("agent", "p_cooperate"), ("opponent", "opponent_p_cooperate")):
            assert r["cooperation"][side]["overall"] == pytest.approx(
                sum(curves[key][last]) / 3, rel=1e-12)
        # not the mean of all episodes: the NL is learning
        assert r["summary"]["reward"] != pytest.approx(sum(curves["reward"]) / 7, rel=1e-9)


def test_policy_curves_hold_the_policy_each_episode_was_played_with() -> None:
    """Entry e of ``p_cooperate_<state>`` is the policy before episode e's update: entry 0
    is the freshly built agent's; the cooperation table holds the policy after the last."""
    spec = make_spec("nl", "allc", seeds=(21, 22), episodes=4, table_last=1)
    records = play_rollout(spec)
    fresh = build("nl", gens(21, 22)).p_cooperate()
    for i, r in enumerate(records):
        for j, state in enumerate(STATES):
            curve = r["curves"][f"p_cooperate_{state}"]
            assert curve[0] == fresh[i, j].item()
            assert r["cooperation"]["agent"][state] != curve[-1]  # updated after episode 4


def _together_and_alone(pairing, episodes: int = 5, **kwargs):
    """Seed 32's record played with seed 31 in the batch, and played alone."""
    together = play_rollout(make_spec(*pairing, seeds=(31, 32), episodes=episodes,
                                      table_last=2, **kwargs))
    alone = play_rollout(make_spec(*pairing, seeds=(32,), episodes=episodes, table_last=2,
                                   **kwargs))
    assert together[1]["seed"] == alone[0]["seed"] == 32
    return together[1], alone[0]


@pytest.mark.parametrize("pairing", [("tft", "random"), ("random", "alld")])
def test_a_seed_gives_the_same_numbers_alone_or_batched_fixed_strategies(pairing) -> None:
    """Each seed draws its games from its own generator: nothing depends on the others."""
    together, alone = _together_and_alone(pairing)
    for key in ("summary", "curves", "cooperation"):
        assert together[key] == alone[key], key


LEARNING_PAIRINGS = [
    pytest.param(("nl", "reciprocator"), {}, id="nl-reciprocator"),
    pytest.param(("reciprocator", "random"), {}, id="reciprocator-random"),
    pytest.param(("reciprocator", "random"), {"agent_params": {"balance": "cumulative"}},
                 id="cumulative-reciprocator-random"),
]


@pytest.mark.parametrize(("pairing", "kwargs"), LEARNING_PAIRINGS)
def test_a_seed_plays_the_same_games_alone_or_batched_learners(pairing, kwargs) -> None:
    """Learners too: the same sampled games (rewards, cooperation) and, to rounding, the
    same policies and diagnostics whichever seeds share the batch."""
    together, alone = _together_and_alone(pairing, **kwargs)
    assert together["summary"] == alone["summary"]
    for key in ("reward", "opponent_reward", "p_cooperate", "opponent_p_cooperate"):
        assert together["curves"][key] == alone["curves"][key], key
    assert together["curves"].keys() == alone["curves"].keys()
    for key, curve in together["curves"].items():
        assert curve == pytest.approx(alone["curves"][key], abs=1e-12, rel=1e-12), key


@pytest.mark.parametrize(("pairing", "kwargs"), LEARNING_PAIRINGS)
def test_a_seed_gives_bit_identical_numbers_alone_or_batched_learners(pairing, kwargs):
    """The analytic game's contract (MatchSpec: "a seed's numbers do not depend on which
    other seeds share the batch"), bit for bit, as tests/test_agents.py holds it there."""
    together, alone = _together_and_alone(pairing, **kwargs)
    for key in ("summary", "curves", "cooperation"):
        assert together[key] == alone[key], key


def test_the_same_spec_twice_gives_identical_records() -> None:
    spec = make_spec("reciprocator", "nl", episodes=5, table_last=2)
    first, again = play_rollout(spec), play_rollout(spec)
    assert first == again
    other = play_rollout(make_spec("reciprocator", "nl", seeds=(13, 14), episodes=5,
                                   table_last=2))
    assert first[0]["curves"] != other[0]["curves"]  # and the seed matters


def test_float32_and_float64_play_the_same_fixed_games() -> None:
    """The floating type only changes rounding: exact games are identical."""
    r32 = play_rollout(make_spec("tft", "alld", dtype="float32", episodes=2, table_last=1))
    r64 = play_rollout(make_spec("tft", "alld", dtype="float64", episodes=2, table_last=1))
    assert r32[0]["summary"] == r64[0]["summary"]


# ------------------------------------------------------------------------------ settings


def test_table_last_beyond_episodes_averages_every_episode() -> None:
    """The tables average the last min(table_last, episodes) episodes: a window longer
    than the match is accepted and averages every episode."""
    assert RolloutSettings(episodes=5, table_last=6).table_last == 6
    records = play_rollout(make_spec("nl", "random", episodes=3, table_last=10))
    for r in records:
        for key in ("reward", "opponent_reward"):
            assert r["summary"][key] == pytest.approx(sum(r["curves"][key]) / 3, rel=1e-12)
        assert r["cooperation"]["agent"]["overall"] == pytest.approx(
            sum(r["curves"]["p_cooperate"]) / 3, rel=1e-12)


@pytest.mark.parametrize("bad", [{"batch": 0}, {"steps": 0}, {"episodes": 0},
                                 {"table_last": 0}, {"dtype": "float16"}, {"rounds": 3}])
def test_settings_reject_bad_values_and_unknown_keys(bad: dict) -> None:
    with pytest.raises(ValidationError):
        RolloutSettings(**bad)


def test_settings_defaults_are_the_reference_sizes() -> None:
    s = RolloutSettings()
    assert (s.batch, s.steps) == (2048, 32)


def test_a_spec_with_bad_settings_is_refused_before_playing() -> None:
    with pytest.raises(ValidationError):
        play_rollout(make_spec("allc", "alld", episodes=0))


# ----------------------------------------------------------------------------------- CLI


def _csvs(out: Path) -> tuple[str, str]:
    return (ok("table", out, "--format", "csv", "--table", "payoff").stdout,
            ok("table", out, "--format", "csv", "--table", "cooperation").stdout)


def test_cli_ci_profile_is_the_same_with_one_or_two_jobs(tmp_path: Path) -> None:
    """The full ci round-robin (5 agents, 2 seeds) gives identical tables either way, and
    its fixed pairings hold their closed forms (ci: 8 steps)."""
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        ok("run", "--game", GAME, "--profile", "ci", "--jobs", jobs, "--quiet", "--out", out)
        outs.append(out)
    serial, parallel = _csvs(outs[0]), _csvs(outs[1])
    assert serial == parallel
    rows = {tuple(line.split(",")[:2]): line.split(",") for line in serial[0].splitlines()[1:]}
    assert len(rows) == 25
    for a, b, reward_a, reward_b in PER_STEP:
        if (a, b) in rows:
            assert float(rows[a, b][2]) == pytest.approx(sum(reward_a) / T, abs=1e-12)
            assert float(rows[a, b][7]) == pytest.approx(sum(reward_b) / T, abs=1e-12)


def test_cli_unknown_rollout_agent_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    line = one_line_error(cli("run", "--game", GAME, "--profile", "ci", "--jobs", 1, "--quiet",
                              "--out", out, "--agents", "nl,bogus"))
    assert "unknown agent 'bogus'" in line and GAME in line
    for info in registry.agents(GAME):
        assert info.name in line
    assert not out.exists()
