"""The interface every Coins agent implements.

A Coins agent plays S x B games at once (S seeds of B games). Per episode the match calls
:meth:`CoinsAgent.begin_episode`, then :meth:`CoinsAgent.act` at every step with what the
agent sees, then :meth:`CoinsAgent.end_episode` with the whole episode from the agent's
side; that is where learners update (once per episode) and what they return is logged. The
match owns the trajectory, so agents keep no per-step memory beyond their recurrent state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from recip_tourney import registry
from recip_tourney.agents.base import Params, Pretrainable

if TYPE_CHECKING:
    from recip_tourney.envs.coins import CoinsState


@dataclass(frozen=True)
class CoinsSetup:
    """What a Coins agent is built with besides its parameters.

    Attributes
    ----------
    generators : list of torch.Generator
        One per seed; agents draw their initial weights from them when built.
    dtype : torch.dtype
        Floating type of observations, rewards and networks.
    device : torch.device
        Where the agent's tensors live.
    players : int
        Players in the game (2 in the tournament).
    grid : int
        Side of the torus.
    me : int
        This agent's player slot.
    artifacts : list of dict
        Payloads of the agent's pretrained artifacts (M-FOS), in the order of
        :meth:`CoinsAgent.artifacts`.
    """

    generators: list[torch.Generator]
    dtype: torch.dtype
    device: torch.device
    players: int
    grid: int
    me: int
    artifacts: tuple[dict, ...] = ()

    @property
    def seeds(self) -> int:
        """Seeds sharing the batch."""
        return len(self.generators)

    @property
    def channels(self) -> int:
        """Observation channels: every player's position and every coin."""
        return 2 * self.players


@dataclass
class CoinsStep:
    """What a player sees at one step.

    Attributes
    ----------
    obs : Tensor, (S, B, 2n, g, g)
        The player's own one-hot observation.
    state : CoinsState
        The game's state (positions as cell labels); scripted agents read it directly.
    noise : Tensor, (S, B)
        Uniform draws of this step, drawn per seed by the match: a stochastic agent samples
        its action from them (inverse CDF), so its randomness is the seed's.
    """

    obs: torch.Tensor
    state: CoinsState
    noise: torch.Tensor


@dataclass
class CoinsEpisode:
    """A finished episode from one player's side.

    Attributes
    ----------
    obs : Tensor, (T, S, B, 2n, g, g)
        The player's own observations.
    actions : Tensor of long, (T, n, S, B)
        Every player's actions, by slot.
    rewards : Tensor, (T, n, S, B)
        Every player's extrinsic rewards, by slot.
    me : int
        This player's slot.
    influence : Tensor or None, (T, S, B, n, n)
        ``influence[..., u, v]``: the estimated value influence of player u's action on
        player v (rollout spec 5.3.3), when the match runs an estimator, else None.
    learning : bool
        False during the estimator's warm-up episodes, when nobody updates (spec 6.3).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    me: int
    influence: torch.Tensor | None = None
    learning: bool = True

    @property
    def own_actions(self) -> torch.Tensor:
        """This player's actions, (T, S, B)."""
        return self.actions[:, self.me]

    @property
    def own_reward(self) -> torch.Tensor:
        """This player's extrinsic rewards, (T, S, B)."""
        return self.rewards[:, self.me]






class CoinsAgent(Pretrainable, ABC):
    """A player of the Coin Game.

    Parameters
    ----------
    params : Params
        The agent's validated parameters.
    setup : CoinsSetup
        Seeds, dtype, device, the game's size and this agent's slot.
    """

    registry_name: str = "?"
    #: Whether the match must run the learned influence estimator for this agent.
    uses_influence: bool = False

    def __init__(self, params: Params, setup: CoinsSetup):
        self.params = params
        self.setup = setup

    def begin_episode(self, batch: int) -> None:  # noqa: B027 - optional hook
        """Called before the first step of every episode (recurrent agents reset here)."""

    @abstractmethod
    def act(self, step: CoinsStep) -> torch.Tensor:
        """The agent's actions this step: long (S, B), values 0-4 (right, left, down, up, stay)."""

    def end_episode(self, episode: CoinsEpisode) -> dict[str, torch.Tensor]:
        """Learn from the episode (learners: one update); per-seed diagnostics, each (S,)."""
        return {}


def build_coins_agent(game_name: str, name: str, params: dict, setup: CoinsSetup) -> CoinsAgent:
    """Instantiate a registered Coins agent from its roster entry (inside the worker)."""
    info = registry.agent(game_name, name)
    return info.cls(info.params(**params), setup)
