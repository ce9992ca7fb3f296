"""The interface every IPD-Rollout agent implements, and the PPO learner they build on.

An agent plays S x B games at once (S seeds of B games). Per episode the match calls
:meth:`RolloutAgent.begin_episode`, then :meth:`RolloutAgent.act` at every step with the
agent's own observations, then :meth:`RolloutAgent.end_episode` with the whole episode seen
from the agent's side; that is where learners update (once per episode) and what they
return is logged. The match owns the trajectory, so agents need no per-step bookkeeping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from pydantic import Field

from recip_tourney import registry
from recip_tourney.agents.base import Params, Pretrainable
from recip_tourney.agents.bernoulli_ppo import GroupedPPO, MemoryOneNets


@dataclass
class EpisodeView:
    """A finished episode from one player's side; every tensor is (T, S, B).

    Attributes
    ----------
    obs : Tensor of long
        The player's observation index at each step (:data:`~recip_tourney.envs.ipd.STATES`).
    own, other : Tensor of long
        The player's and the other player's actions (0 = C, 1 = D).
    rewards : Tensor, shape (T, 2, S, B)
        Both players' rewards, by player slot (second axis). Shared by the two players'
        views, as the reference code shares its reward tensor (a faithful Reciprocator may
        shape it in place: rollout spec 8, item 6).
    me : int
        This player's slot (0 or 1) in ``rewards``.
    """

    obs: torch.Tensor
    own: torch.Tensor
    other: torch.Tensor
    rewards: torch.Tensor
    me: int

    @property
    def own_reward(self) -> torch.Tensor:
        """This player's rewards (a view into the shared tensor)."""
        return self.rewards[:, self.me]

    @property
    def other_reward(self) -> torch.Tensor:
        """The other player's rewards, as the shared tensor holds them now."""
        return self.rewards[:, 1 - self.me]


class RolloutAgent(Pretrainable, ABC):
    """A player of IPD-Rollout.

    Parameters
    ----------
    params : Params
        The agent's validated parameters.
    generators : list of torch.Generator
        One per seed; an agent draws its initial weights from them when it is built.
    dtype : torch.dtype
        Floating type of rewards and networks.
    device : torch.device or str
        Where the agent's tensors live (its initial draws are made on the generators' CPU
        and moved there, so a seed starts alike on every device).
    """

    registry_name: str = "?"

    def __init__(
        self,
        params: Params,
        generators: list[torch.Generator],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        self.params = params
        self.seeds = len(generators)
        self.dtype = dtype
        self.device = torch.device(device)

    @abstractmethod
    def p_cooperate(self) -> torch.Tensor:
        """The current policy: P(cooperate) in each observation, (S, 5)."""

    def begin_episode(self) -> None:  # noqa: B027 - optional hook
        """Called before the first step of every episode."""

    def act(self, obs: torch.Tensor, noise: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Where the agent defects this step: bool (S, B), True = D (action 1).

        Parameters
        ----------
        obs : Tensor of long, (S, B)
            Own observation index in every game.
        noise : Tensor, (S, B)
            Uniform draws of this step: the agent cooperates where ``noise < P(C)``.
        policy : Tensor, (S, 5)
            :meth:`p_cooperate` at the start of the episode (the policy does not change
            within an episode).
        """
        return noise >= policy.gather(1, obs)

    def end_episode(self, episode: EpisodeView) -> dict[str, torch.Tensor]:
        """Learn from the episode (learners: one update); per-seed diagnostics, each (S,)."""
        return {}


class PPOParams(Params):
    """Hyperparameters of the rollout PPO learner (rollout spec 7.1)."""

    hidden: int = Field(2, gt=0, description="hidden width of actor and critic")
    lr: float = Field(0.005, gt=0.0, description="Adam step size")
    gamma: float = Field(0.96, gt=0.0, le=1.0, description="discount of the returns")
    epochs: int = Field(10, gt=0, description="full-batch PPO epochs per update")
    clip: float = Field(0.1, gt=0.0, lt=1.0, description="ratio clip")
    entropy: float = Field(0.02, ge=0.0, description="entropy bonus weight")
    eps: float = Field(1e-5, ge=0.0, description="added to the std of the returns")


class PPOAgent(RolloutAgent):
    """A PPO learner over the 5 observations; subclasses choose the rewards it learns from."""

    params: PPOParams

    def __init__(
        self,
        params: PPOParams,
        generators: list[torch.Generator],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(params, generators, dtype, device)
        nets = MemoryOneNets(params.hidden, generators, dtype, self.device)
        self.ppo = GroupedPPO(nets, lr=params.lr, gamma=params.gamma, epochs=params.epochs,
                              clip=params.clip, entropy=params.entropy, eps=params.eps)

    def p_cooperate(self) -> torch.Tensor:
        """P(cooperate) of the actor in each observation, (S, 5)."""
        return self.ppo.nets.p_cooperate()

    def learn(self, episode: EpisodeView, rewards: torch.Tensor) -> None:
        """One PPO update on the episode's own actions with the given rewards (T, S, B)."""
        self.ppo.update(episode.obs, episode.own, rewards)


def build_rollout_agent(
    game_name: str,
    name: str,
    params: dict,
    generators: list[torch.Generator],
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> RolloutAgent:
    """Instantiate a registered rollout agent from its roster entry (inside the worker)."""
    info = registry.agent(game_name, name)
    return info.cls(info.params(**params), generators, dtype, device)
