"""The Coins learners: the naive PPO learner and the Reciprocator (rollout spec 4.3-5.5).

Both act with a conv + GRU actor and learn once per episode with the reference's PPO
(:class:`~recip_tourney.agents.coins_ppo.CoinsPPO`); they differ only in the reward they
learn from. The NL learns from its own extrinsic reward. The Reciprocator adds, per step,
``w`` times its reciprocal reward, computed from the match's shared influence estimator
(:mod:`recip_tourney.agents.coins_influence`) and its influence balance with the other
player (:mod:`recip_tourney.agents.reciprocal_reward`).
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from recip_tourney.agents.base import Params
from recip_tourney.agents.coins_agent import CoinsAgent, CoinsEpisode, CoinsSetup, CoinsStep
from recip_tourney.agents.coins_ppo import CoinsPPO, ConvGRUNets
from recip_tourney.agents.reciprocal_reward import RewardType, reciprocal_reward
from recip_tourney.registry import register_agent


class CoinsPPOParams(Params):
    """Hyperparameters of the Coins PPO learner (rollout spec 4.3, 7.2)."""

    hidden: int = Field(32, gt=0, description="GRU width (conv channels: hidden / 4)")
    lr: float = Field(0.005, gt=0.0, description="Adam step size")
    gamma: float = Field(0.99, gt=0.0, le=1.0, description="discount of the returns")
    epochs: int = Field(40, gt=0, description="full-batch PPO epochs per update")
    clip: float = Field(0.15, gt=0.0, lt=1.0, description="ratio clip")
    entropy: float = Field(0.01, ge=0.0, description="entropy bonus weight")
    eps: float = Field(1e-5, ge=0.0, description="added to the std of the returns")


class CoinsPPOAgent(CoinsAgent):
    """A conv + GRU PPO learner; subclasses choose the rewards it learns from."""

    params: CoinsPPOParams

    def __init__(self, params: CoinsPPOParams, setup: CoinsSetup):
        super().__init__(params, setup)
        nets = ConvGRUNets(setup.channels, params.hidden, setup.generators, setup.dtype,
                           grid=setup.grid, device=setup.device)
        self.ppo = CoinsPPO(nets, lr=params.lr, gamma=params.gamma, epochs=params.epochs,
                            clip=params.clip, entropy=params.entropy, eps=params.eps)

    def begin_episode(self, batch: int) -> None:
        """Reset the actor's recurrent state."""
        self.ppo.begin_episode(batch)

    def act(self, step: CoinsStep) -> torch.Tensor:
        """Sample from the actor (inverse CDF of the step's draws)."""
        return self.ppo.act(step.obs, step.noise)

    def learn(self, episode: CoinsEpisode, rewards: torch.Tensor) -> None:
        """One PPO update on the episode's own actions with ``rewards`` (T, S, B)."""
        self.ppo.update(episode.obs, episode.own_actions, rewards)


@register_agent(
    "nl",
    games=("coins",),
    params=CoinsPPOParams,
    learns=True,
    reference="Schulman et al., Proximal Policy Optimization (2017), as in Zhou et al.'s code",
)
class CoinsNaiveLearner(CoinsPPOAgent):
    """NL: PPO (conv + GRU) on its own reward, one full-batch update per episode."""

    def end_episode(self, episode: CoinsEpisode) -> dict[str, torch.Tensor]:
        """One PPO update on the extrinsic rewards (none while the estimator warms up)."""
        if episode.learning:
            self.learn(episode, episode.own_reward)
        return {}


class CoinsReciprocatorParams(CoinsPPOParams):
    """Parameters of :class:`CoinsReciprocator` (rollout spec 5.4, 5.5, 7.2)."""

    rr_type: RewardType = Field(
        "petty_payoff", description="influence balance and reciprocal reward (spec 5.4)"
    )
    rr_weight: float = Field(1.0, ge=0.0, description="w: weight of the reciprocal reward")
    rr_weight_schedule: list[float] | None = Field(
        None,
        description="[start, max, increment]: w starts at start and grows by increment after "
        "every update up to max (replaces rr_weight)",
    )
    normalize_rr: bool = Field(
        False, description="standardise the reciprocal reward over the episode"
    )

    @field_validator("rr_weight_schedule")
    @classmethod
    def _three(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 3:
            raise ValueError("rr_weight_schedule takes [start, max, increment]")
        return value


def _per_seed_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the seed axis (1) of (T, S, B), seed by seed (exact per seed
    whatever the batch)."""
    return torch.stack([x[:, s].double().mean() for s in range(x.shape[1])])


def _per_seed_std(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation over the T B steps of (T, S, B), seed by seed."""
    return torch.stack([x[:, s].contiguous().double().std() for s in range(x.shape[1])])


@register_agent(
    "reciprocator",
    games=("coins",),
    params=CoinsReciprocatorParams,
    learns=True,
    reference="Zhou, Hong & Kao, Reciprocal Reward Influence Encourages Cooperation "
    "From Self-Interested Agents (NeurIPS 2024)",
)
class CoinsReciprocator(CoinsPPOAgent):
    """Reciprocator: PPO on its reward plus w x its reciprocal reward.

    The match's learned estimator gives every step's value influences: X of the Reciprocator
    on the other player, Y of the other on the Reciprocator, Z of the other on itself. The
    balance (default ``petty_payoff``: influence received minus influence returned, decayed
    by gamma, reset every episode) times X is the reciprocal reward: the Reciprocator is paid
    for returning help with help and harm with harm.
    """

    params: CoinsReciprocatorParams
    uses_influence = True

    def __init__(self, params: CoinsReciprocatorParams, setup: CoinsSetup):
        super().__init__(params, setup)
        schedule = params.rr_weight_schedule
        self.weight = schedule[0] if schedule else params.rr_weight

    def end_episode(self, episode: CoinsEpisode) -> dict[str, torch.Tensor]:
        """Shape the episode's rewards and update; log the balance and reciprocal reward."""
        names = ("reciprocal_reward", "end_balance", "influence_on_other",
                 "influence_of_other", "reciprocal_reward_step_std", "reward_step_std")
        if not episode.learning or episode.influence is None:
            nan = torch.full((self.setup.seeds,), float("nan"), dtype=torch.float64,
                             device=self.ppo.nets.device)
            return dict.fromkeys(names, nan)
        me, other = episode.me, 1 - episode.me
        vi = episode.influence
        x, y, z = vi[..., me, other], vi[..., other, me], vi[..., other, other]
        rr, balance = reciprocal_reward(x, y, z, self.params.gamma, self.params.rr_type)
        logged, raw = rr.sum(0), rr  # per game: the episode's reciprocal reward (T summed)
        if self.params.normalize_rr:
            rr = torch.stack([(rr[:, s] - rr[:, s].mean()) / (rr[:, s].std() + 1e-7)
                              for s in range(rr.shape[1])], dim=1)
        self.learn(episode, episode.own_reward + self.weight * rr)
        if self.params.rr_weight_schedule:
            _, top, step = self.params.rr_weight_schedule
            self.weight = min(top, self.weight + step)
        return dict(zip(names, (
            _per_seed_mean(logged.unsqueeze(0)),
            _per_seed_mean(balance[-1:]),
            _per_seed_mean(x),
            _per_seed_mean(y),
            _per_seed_std(raw),  # the spread of the two terms PPO sums, step by step
            _per_seed_std(episode.own_reward),
        ), strict=True))
