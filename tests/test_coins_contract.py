"""Every Coins agent: one shared contract, a subclass per registered agent."""

from __future__ import annotations

import pytest
import torch

from recip_tourney import registry
from recip_tourney.agents.coins_agent import CoinsAgent, CoinsEpisode, CoinsSetup, CoinsStep
from recip_tourney.envs import coins as env
from recip_tourney.tournament.match import worker_numerics

GAME = "coins"
F64 = torch.float64
SEEDS, BATCH, STEPS = 2, 12, 5


def build(name: str, me: int = 0, seed: int = 0, **params: object) -> CoinsAgent:
    """A Coins agent for slot ``me`` with ``params`` (small learners: 2 PPO epochs)."""
    info = registry.agent(GAME, name)
    if info.learns and "epochs" in info.params.model_fields:
        params = {"epochs": 2} | params
    generators = [torch.Generator().manual_seed(seed + s) for s in range(SEEDS)]
    setup = CoinsSetup(generators, F64, torch.device("cpu"), 2, 3, me)
    return info.cls(info.params(**params), setup)


def random_states(seed: int = 3) -> env.CoinsState:
    gen = torch.Generator().manual_seed(seed)
    return env.reset(torch.randint(0, 9, (SEEDS, BATCH, 4), generator=gen), 2)


def play(agent: CoinsAgent, seed: int = 5) -> tuple[CoinsEpisode, torch.Tensor]:
    """One episode of the agent against uniformly random moves; its view and actions."""
    gen = torch.Generator().manual_seed(seed)
    state = random_states(seed)
    obs_log, actions, rewards = [], [], []
    agent.begin_episode(BATCH)
    with torch.no_grad():
        for _ in range(STEPS):
            obs = env.observe(state, 3, dtype=F64)[:, :, 0]
            noise = torch.rand(SEEDS, BATCH, generator=gen, dtype=F64)
            mine = agent.act(CoinsStep(obs, state, noise))
            other = torch.randint(0, 5, (SEEDS, BATCH), generator=gen)
            joint = torch.stack((mine, other), -1)
            respawn = torch.randint(0, 9, (SEEDS, BATCH, 2), generator=gen)
            state, reward, _ = env.step(state, joint, respawn, 3, dtype=F64)
            obs_log.append(obs)
            actions.append(joint.movedim(-1, 0))
            rewards.append(reward.movedim(-1, 0))
    acts = torch.stack(actions)
    influence = torch.randn(STEPS, SEEDS, BATCH, 2, 2, generator=gen, dtype=F64)
    episode = CoinsEpisode(torch.stack(obs_log), acts, torch.stack(rewards), 0, influence)
    return episode, acts[:, 0]


class CoinsAgentContract:
    """What every registered Coins agent satisfies. Subclass once per agent."""

    name: str
    learns: bool

    @property
    def info(self) -> registry.AgentInfo:
        return registry.agent(GAME, self.name)

    def test_registered_with_summary_reference_and_metadata(self):
        assert self.info.summary, "class docstring needs a summary line"
        assert self.info.reference, "cite where the agent comes from"
        assert self.info.learns is self.learns
        assert issubclass(self.info.cls, CoinsAgent)

    def test_defaults_validate_and_unknown_params_are_rejected(self):
        self.info.params()
        with pytest.raises(ValueError):
            self.info.params(no_such_parameter=1)

    def test_actions_are_valid_moves_per_seed_and_game(self):
        with worker_numerics():
            _, actions = play(build(self.name))
        assert actions.dtype == torch.long and actions.shape == (STEPS, SEEDS, BATCH)
        assert ((actions >= 0) & (actions < env.N_ACTIONS)).all()

    def test_same_seeds_same_actions(self):
        with worker_numerics():
            first = play(build(self.name))[1]
            again = play(build(self.name))[1]
        assert torch.equal(first, again)

    def test_learning_changes_behaviour_only_for_learners(self):
        with worker_numerics():
            agent = build(self.name)
            episode, before = play(agent)
            logs = agent.end_episode(episode)
            after = play(agent)[1]
        assert all(v.shape == (SEEDS,) for v in logs.values())
        assert (not torch.equal(before, after)) is self.learns


def test_every_registered_coins_agent_has_a_contract_test():
    tested = {cls.name for cls in CoinsAgentContract.__subclasses__()}
    missing = {a.name for a in registry.agents(GAME)} - tested - {"mfos"}  # mfos: own tests
    assert not missing


class TestCoinsRandom(CoinsAgentContract):
    name, learns = "random", False


class TestCoinsGreedy(CoinsAgentContract):
    name, learns = "greedy", False


class TestCoinsNaiveLearner(CoinsAgentContract):
    name, learns = "nl", True


class TestCoinsReciprocator(CoinsAgentContract):
    name, learns = "reciprocator", True

    def test_its_reward_is_shaped_by_the_influence(self):
        """Same episode, influence scaled: a different update (w = 1 by default)."""
        with worker_numerics():
            a, b = build(self.name), build(self.name)
            episode, _ = play(a, seed=8)
            a.end_episode(episode)
            scaled = CoinsEpisode(episode.obs, episode.actions, episode.rewards, 0,
                                  episode.influence * 3)
            b.end_episode(scaled)
        assert not torch.equal(a.ppo.nets.flat, b.ppo.nets.flat)

    def test_zero_weight_learns_like_the_naive_learner(self):
        with worker_numerics():
            recip, nl = build(self.name, rr_weight=0.0), build("nl")
            episode, _ = play(recip, seed=8)
            recip.end_episode(episode)
            nl.end_episode(episode)
        assert torch.equal(recip.ppo.nets.flat, nl.ppo.nets.flat)
