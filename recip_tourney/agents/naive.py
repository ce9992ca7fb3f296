"""Naive learners (NL): exact gradient ascent (IPD-Analytic) and PPO (IPD-Rollout)."""

from __future__ import annotations

import torch
from pydantic import Field

from recip_tourney.agents.base import AnalyticAgent, Params
from recip_tourney.agents.rollout import EpisodeView, PPOAgent, PPOParams
from recip_tourney.envs.ipd_analytic import View
from recip_tourney.registry import register_agent


class NaiveParams(Params):
    """Parameters of :class:`NaiveLearner`."""

    lr: float = Field(1.0, gt=0.0, description="step size on the unnormalised return")


@register_agent(
    "nl",
    games=("ipd-analytic",),
    params=NaiveParams,
    learns=True,
    reference="Lu et al., Model-Free Opponent Shaping (ICML 2022), as in its code",
)
class NaiveLearner(AnalyticAgent):
    """NL: one exact gradient step on its own discounted return per update.

    ``theta <- theta + lr * dV_own / d theta`` with ``V`` unnormalised (up to 75 in size) and
    lr 1, the opponent's policy held fixed; both players step from the same point.
    """

    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """Gradient step from the shared exact evaluation (closed-form gradient)."""
        return torch.add(view.own, view.gradient(), alpha=self.params.lr)


@register_agent(
    "nl",
    games=("ipd-rollout",),
    params=PPOParams,
    learns=True,
    reference="Schulman et al., Proximal Policy Optimization (2017), as in Zhou et al.'s code",
)
class PPONaiveLearner(PPOAgent):
    """NL: PPO on its own reward, one full-batch update per episode (rollout spec 4.4)."""

    def end_episode(self, episode: EpisodeView) -> dict[str, torch.Tensor]:
        """One PPO update on the episode's extrinsic rewards."""
        self.learn(episode, episode.own_reward)
        return {}
