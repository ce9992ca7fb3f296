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

import torch
from pydantic import BaseModel, ConfigDict

from recip_tourney.envs.ipd_analytic import AnalyticIPD, View


class Params(BaseModel):
    """Base of agent parameter models: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """An agent without parameters."""


class AnalyticAgent(ABC):
    """A learning rule over memory-one logits in IPD-Analytic.

    Parameters
    ----------
    params : Params
        The agent's validated parameters.
    game : AnalyticIPD
        The game (discount, dtype) the agent plays.
    init_std : float
        Standard deviation of the N(0, std) initial logits of learning agents.
    """

    registry_name: str = "?"

    def __init__(self, params: Params, game: AnalyticIPD, init_std: float = 1.0) -> None:
        self.params = params
        self.game = game
        self.init_std = init_std

    def initial_logits(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Starting logits, state-major (5, batch): i.i.d. N(0, init_std) by default.

        Drawn game by game in float64 and then cast, so float32 and float64 runs start alike.
        """
        draw = torch.randn(batch, 5, generator=generator, dtype=torch.float64)
        return (draw * self.init_std).T.contiguous().to(self.game.dtype)

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
