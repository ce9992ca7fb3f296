"""Every IPD-Rollout agent: one shared contract, a subclass per registered agent."""

from __future__ import annotations

import pytest
import torch

from recip_tourney import registry
from recip_tourney.agents.rollout import EpisodeView, RolloutAgent
from recip_tourney.envs import ipd_rollout as env
from recip_tourney.envs.ipd import STATES
from recip_tourney.tournament.rollout import play_rollout
from recip_tourney.tournament.schedule import Player, round_robin

GAME = "ipd-rollout"
F64 = torch.float64


def build(name: str, seeds: int = 2, seed: int = 0, **params: object) -> RolloutAgent:
    """A rollout agent with ``params``, its weights drawn from per-seed generators."""
    info = registry.agent(GAME, name)
    generators = [torch.Generator().manual_seed(seed + s) for s in range(seeds)]
    return info.cls(info.params(**params), generators, F64)


def random_episode(seeds: int = 2, steps: int = 6, batch: int = 16, seed: int = 3) -> EpisodeView:
    """An episode of uniformly random joint actions, seen from player 0."""
    gen = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, 2, (steps, 2, seeds, batch), generator=gen)
    obs = torch.zeros(steps, seeds, batch, dtype=torch.long)
    obs[1:] = env.observation(actions[:-1, 0], actions[:-1, 1])
    own, other = actions[:, 0], actions[:, 1]
    rewards = torch.stack((env.rewards(own, other, F64), env.rewards(other, own, F64)), 1)
    return EpisodeView(obs, own, other, rewards, me=0)


class RolloutAgentContract:
    """What every registered IPD-Rollout agent satisfies. Subclass once per agent."""

    name: str
    learns: bool

    @property
    def info(self) -> registry.AgentInfo:
        return registry.agent(GAME, self.name)

    def test_registered_with_summary_reference_and_metadata(self):
        assert self.info.summary, "class docstring needs a summary line"
        assert self.info.reference, "cite the paper the agent comes from"
        assert self.info.learns is self.learns
        assert issubclass(self.info.cls, RolloutAgent)

    def test_defaults_validate_and_unknown_params_are_rejected(self):
        self.info.params()
        with pytest.raises(ValueError):
            self.info.params(no_such_parameter=1)

    def test_policy_is_a_probability_table_per_seed_and_deterministic(self):
        first, again = build(self.name).p_cooperate(), build(self.name).p_cooperate()
        assert first.shape == (2, len(STATES))
        assert ((first >= 0) & (first <= 1)).all()
        torch.testing.assert_close(first, again, rtol=0, atol=0)

    def test_act_samples_from_the_policy(self):
        agent = build(self.name)
        policy = agent.p_cooperate()
        obs = torch.randint(0, 5, (2, 400), generator=torch.Generator().manual_seed(1))
        noise = torch.rand(2, 400, generator=torch.Generator().manual_seed(2), dtype=F64)
        defects = agent.act(obs, noise, policy)
        assert defects.dtype == torch.bool and defects.shape == obs.shape
        torch.testing.assert_close(defects, noise >= policy.gather(1, obs))

    def test_learning_changes_the_policy_only_for_learners(self):
        agent = build(self.name)
        before = agent.p_cooperate().clone()
        logs = agent.end_episode(random_episode())
        assert all(v.shape == (2,) for v in logs.values())
        assert (not torch.equal(agent.p_cooperate(), before)) is self.learns

    def test_a_short_match_records_sane_numbers(self):
        settings = {"batch": 8, "steps": 4, "episodes": 3, "table_last": 2, "dtype": "float64"}
        player = Player(self.name, self.info.params().model_dump())
        spec = round_robin(GAME, settings, "h", 0, [player], 2)[0]
        for record in play_rollout(spec):
            assert -3.0 <= record["summary"]["reward"] <= 0.0
            assert len(record["curves"]["reward"]) == 3
            coop = record["cooperation"]["agent"]
            assert set(coop) == {"overall", *STATES}
            assert all(0.0 <= p <= 1.0 for p in coop.values())


def test_every_registered_rollout_agent_has_a_contract_test():
    tested = {cls.name for cls in RolloutAgentContract.__subclasses__()}
    assert {a.name for a in registry.agents(GAME)} <= tested


class TestRolloutAlwaysCooperate(RolloutAgentContract):
    name, learns = "allc", False


class TestRolloutAlwaysDefect(RolloutAgentContract):
    name, learns = "alld", False


class TestRolloutTitForTat(RolloutAgentContract):
    name, learns = "tft", False

    def test_table_is_shared_with_ipd_analytic(self):
        want = registry.agent("ipd-analytic", "tft").cls.table(None)
        got = build("tft").p_cooperate()[0].tolist()
        assert got == [want[s] for s in STATES]


class TestRolloutRandom(RolloutAgentContract):
    name, learns = "random", False


class TestRolloutNaiveLearner(RolloutAgentContract):
    name, learns = "nl", True


class TestRolloutReciprocator(RolloutAgentContract):
    name, learns = "reciprocator", True
