"""The interface every IPD-Analytic agent implements, so the match loop never asks "which agent?".

An agent owns the *rule* that changes its memory-one policy; the match owns the logits.
Per update the match evaluates both policies exactly once (a
:class:`~recip_tourney.envs.ipd_analytic.View`) and asks each agent for its next logits.
A meta-learned agent fits the same mould: M-MAML overrides
:meth:`AnalyticAgent.initial_logits`, M-FOS's meta-policy implements
:meth:`AnalyticAgent.update`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict

from recip_tourney import registry
from recip_tourney.device import upload
from recip_tourney.envs.ipd_analytic import AnalyticIPD, View

if TYPE_CHECKING:
    from recip_tourney.pretrain.artifacts import ArtifactSpec
    from recip_tourney.tournament.schedule import Player, SeedSlot


class Params(BaseModel):
    """Base of agent parameter models: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """An agent without parameters."""


@dataclass(frozen=True)
class PairingContext:
    """What an agent may need to know about a pairing to name its pretrained artifacts.

    Attributes
    ----------
    me, opponent : Player
        This agent's and its opponent's roster entries (name and resolved parameters).
    settings : dict
        The game's resolved settings.
    agent_params : dict
        Resolved parameters of every agent of the game (e.g. the NL that M-FOS's self-play
        curriculum trains against).
    """

    me: Player
    opponent: Player
    settings: dict[str, Any]
    agent_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def swap(self) -> PairingContext:
        """The same pairing from the opponent's side."""
        return PairingContext(self.opponent, self.me, self.settings, self.agent_params)


@dataclass(frozen=True)
class MatchContext:
    """What an agent learns about the match it is built for, before it plays.

    Attributes
    ----------
    role : str
        ``agent`` (moves first, slot p1) or ``opponent``.
    seeds : tuple of SeedSlot
        The repetitions sharing the batch, in batch order.
    games_per_seed : int
        Columns of the batch that belong to each seed.
    artifacts : list of dict
        Payloads of this agent's pretrained artifacts, in the order of its
        :meth:`AnalyticAgent.artifacts` for this pairing.
    """

    role: str
    seeds: tuple[SeedSlot, ...]
    games_per_seed: int
    artifacts: list[dict[str, Any]] = field(default_factory=list)


class Pretrainable:
    """What every agent class says about pretraining: by default it needs none.

    A meta-learned agent (M-MAML, M-FOS) overrides :meth:`artifacts`; the runner asks every
    agent of a pairing, whatever the game, through these two classmethods.
    """

    @classmethod
    def artifacts(cls, pairing: PairingContext) -> list[ArtifactSpec]:
        """Pretrained artifacts this agent needs to play ``pairing`` (none by default)."""
        return []

    @classmethod
    def trainable_artifacts(cls, pairing: PairingContext) -> list[ArtifactSpec]:
        """What ``recip-tourney pretrain`` trains for ``pairing`` (default: :meth:`artifacts`)."""
        return cls.artifacts(pairing)


class AnalyticAgent(Pretrainable, ABC):
    """A learning rule over memory-one logits in IPD-Analytic.

    Parameters
    ----------
    params : Params
        The agent's validated parameters.
    game : AnalyticIPD
        The game (discount, dtype, device) the agent plays; the agent's tensors live on the
        game's device.
    init_std : float
        Standard deviation of the N(0, std) initial logits of learning agents.
    """

    registry_name: str = "?"
    #: Starting points the agent plays from (M-MAML: one per meta-learned initialisation).
    #: The match gives each of them ``batch`` games, so a pairing averages over them.
    replicas: int = 1
    #: Whether the agent was trained in the meta-game, where its opponent learns against
    #: the policy just played (spec 5.1). A pairing with such an agent is played that way
    #: (both update from the same point), not with the reference tournament's slot order.
    meta_game: bool = False

    def __init__(self, params: Params, game: AnalyticIPD, init_std: float = 1.0) -> None:
        self.params = params
        self.game = game
        self.init_std = init_std

    @property
    def device(self) -> torch.device:
        """Where the agent's tensors live: its game's device."""
        return self.game.device

    def prepare(self, match: MatchContext) -> None:  # noqa: B027 - optional hook
        """Called once before a match with its seeds and this agent's artifacts."""

    def initial_logits(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Starting logits, state-major (5, batch): i.i.d. N(0, init_std) by default.

        Drawn game by game in float64 and then cast, so float32 and float64 runs start alike;
        drawn on the generator's device (the CPU) and then moved to the game's, so a seed
        starts from the same numbers on every device.
        """
        draw = torch.randn(batch, 5, generator=generator, dtype=torch.float64,
                           device=generator.device)
        return upload((draw * self.init_std).T.contiguous().to(self.game.dtype), self.device)

    @abstractmethod
    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """Next logits, state-major (5, B), from the current exact evaluation.

        Parameters
        ----------
        view : View
            Both current policies and their exact values, from this agent's side.
        other_next : Tensor or None
            The opponent's already-updated logits when this agent moves second (the
            reference code updates the slots in turn); None when it moves first. Only
            agents that model the reference code's slot order use it.
        """

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Per-game scalars (shape (B,)) describing the last update, logged per update."""
        return {}


def build_agent(
    game_name: str, player: Player, game: AnalyticIPD, init_std: float
) -> AnalyticAgent:
    """Instantiate a registered agent from its roster entry (inside the worker)."""
    info = registry.agent(game_name, player.name)
    return info.cls(info.params(**player.params), game, init_std)


def agent_class(game_name: str, name: str) -> type[AnalyticAgent]:
    """The registered class of agent ``name``."""
    return registry.agent(game_name, name).cls
