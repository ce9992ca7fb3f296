"""Fixed memory-one strategies: they never learn.

Each strategy is defined once, by its P(cooperate) in the 5 states, and plays in both IPD
games: in IPD-Analytic as saturated logits (+-20, so values match the textbook closed
forms to about 1e-8), in IPD-Rollout by sampling from the same table.
"""

from __future__ import annotations

import torch
from pydantic import Field

from recip_tourney.agents.base import AnalyticAgent, NoParams, Params
from recip_tourney.agents.rollout import EpisodeView, RolloutAgent
from recip_tourney.device import upload
from recip_tourney.envs.ipd import DEFECT, STATES, memory_one_logits
from recip_tourney.envs.ipd_analytic import View
from recip_tourney.registry import register_agent

ANALYTIC = ("ipd-analytic",)
ROLLOUT = ("ipd-rollout",)
AXELROD = "Axelrod, The Evolution of Cooperation (1984)"


class FixedStrategy(AnalyticAgent):
    """A memory-one strategy given by its P(cooperate) in each state; it never changes."""

    #: P(cooperate) in start, CC, CD, DC, DD (own action first).
    p_cooperate: dict[str, float] = {}

    @classmethod
    def table(cls, params: Params) -> dict[str, float]:
        """P(cooperate) per state (strategies with parameters override this)."""
        return cls.p_cooperate

    def probabilities(self) -> dict[str, float]:
        """P(cooperate) per state with this instance's parameters."""
        return self.table(self.params)

    def initial_logits(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """The strategy's logits, the same in every game of the batch."""
        logits = upload(memory_one_logits(self.probabilities()).to(self.game.dtype), self.device)
        return logits.unsqueeze(-1).expand(len(STATES), batch).contiguous()

    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """Fixed strategies keep their policy."""
        return view.own


@register_agent("allc", games=ANALYTIC, params=NoParams, learns=False, reference=AXELROD)
class AlwaysCooperate(FixedStrategy):
    """ALLC: cooperates in every state."""

    p_cooperate = dict.fromkeys(STATES, 1.0)


@register_agent("alld", games=ANALYTIC, params=NoParams, learns=False, reference=AXELROD)
class AlwaysDefect(FixedStrategy):
    """ALLD: defects in every state."""

    p_cooperate = dict.fromkeys(STATES, 0.0)


@register_agent("tft", games=ANALYTIC, params=NoParams, learns=False, reference=AXELROD)
class TitForTat(FixedStrategy):
    """TFT: cooperates first, then repeats the opponent's previous action."""

    p_cooperate = {"start": 1.0, "CC": 1.0, "CD": 0.0, "DC": 1.0, "DD": 0.0}


class RandomParams(Params):
    """Parameters of :class:`RandomStrategy`."""

    p_cooperate: float = Field(0.5, ge=0.0, le=1.0, description="P(cooperate) in every state")


@register_agent("random", games=ANALYTIC, params=RandomParams, learns=False, reference=AXELROD)
class RandomStrategy(FixedStrategy):
    """Random: cooperates with probability ``p_cooperate`` (default 0.5) in every state."""

    @classmethod
    def table(cls, params: Params) -> dict[str, float]:
        """The same P(cooperate) in every state."""
        return dict.fromkeys(STATES, params.p_cooperate)  # type: ignore[attr-defined]


# --- IPD-Rollout: the same tables, sampled ------------------------------------------------


class RolloutFixed(RolloutAgent):
    """A fixed strategy in IPD-Rollout: plays the table of its IPD-Analytic ``strategy``."""

    strategy: type[FixedStrategy] = FixedStrategy

    def __init__(
        self,
        params: Params,
        generators: list[torch.Generator],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(params, generators, dtype, device)
        table = self.strategy.table(params)
        probs = torch.tensor([table[s] for s in STATES], dtype=torch.float64, device="cpu")
        policy = upload(probs.to(dtype), self.device)
        self._policy = policy.expand(self.seeds, -1).contiguous()

    def p_cooperate(self) -> torch.Tensor:
        """The strategy's P(cooperate) per observation, the same for every seed, (S, 5)."""
        return self._policy


@register_agent("allc", games=ROLLOUT, params=NoParams, learns=False, reference=AXELROD)
class RolloutAlwaysCooperate(RolloutFixed):
    """ALLC: cooperates in every state."""

    strategy = AlwaysCooperate


@register_agent("alld", games=ROLLOUT, params=NoParams, learns=False, reference=AXELROD)
class RolloutAlwaysDefect(RolloutFixed):
    """ALLD: defects in every state."""

    strategy = AlwaysDefect


@register_agent("random", games=ROLLOUT, params=RandomParams, learns=False, reference=AXELROD)
class RolloutRandom(RolloutFixed):
    """Random: cooperates with probability ``p_cooperate`` (default 0.5) in every state."""

    strategy = RandomStrategy


class RolloutTFTParams(Params):
    """Parameters of :class:`RolloutTitForTat`."""

    carry_over: bool = Field(
        False,
        description="true: the reference code's TFT, which is never reset and so opens "
        "every episode after the first with the opponent's last move (rollout spec 8, "
        "item 10); false: cooperates first in every episode",
    )


@register_agent("tft", games=ROLLOUT, params=RolloutTFTParams, learns=False, reference=AXELROD)
class RolloutTitForTat(RolloutFixed):
    """TFT: cooperates first in every episode, then repeats the opponent's previous action."""

    strategy = TitForTat
    params: RolloutTFTParams

    def __init__(
        self,
        params: Params,
        generators: list[torch.Generator],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(params, generators, dtype, device)
        self._opening: torch.Tensor | None = None  # carried-over first move: defects (S, B)

    def act(self, obs: torch.Tensor, noise: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """TFT's move; with ``carry_over``, the opening copies the last episode's last move."""
        defects = super().act(obs, noise, policy)
        if self._opening is None:
            return defects
        return torch.where(obs == 0, self._opening, defects)

    def end_episode(self, episode: EpisodeView) -> dict[str, torch.Tensor]:
        """Remember the opponent's last move (only used with ``carry_over``)."""
        if self.params.carry_over:
            self._opening = episode.other[-1] == DEFECT
        return {}
