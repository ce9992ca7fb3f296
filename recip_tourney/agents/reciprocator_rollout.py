"""The Reciprocator of IPD-Rollout (Zhou, Hong & Kao, NeurIPS 2024; rollout spec 5.2)."""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch
from pydantic import Field

from recip_tourney.agents.bernoulli_ppo import one_hot, seed_major
from recip_tourney.agents.rollout import EpisodeView, PPOAgent, PPOParams
from recip_tourney.envs.ipd import COOPERATE, STATES
from recip_tourney.envs.ipd_rollout import reward_table, seed_means
from recip_tourney.registry import register_agent

N_STATES = len(STATES)


class RolloutReciprocatorParams(PPOParams):
    """Parameters of :class:`RolloutReciprocator`: PPO's plus the reciprocal reward's."""

    rr_weight: float = Field(5.0, ge=0.0, description="weight w of the reciprocal reward")
    buffer_episodes: int = Field(1, gt=0, description="episodes of samples behind the baselines")
    target_period: int = Field(3, gt=0, description="episodes between baseline refreshes")
    balance: Literal["lagged", "cumulative"] = Field(
        "lagged",
        description="lagged: the reference code's grudge, the opponent's influence one step "
        "earlier (spec 8, item 4; reproduces the paper); cumulative: the discounted balance "
        "of influence received minus influence returned, as in Coins",
    )
    reward_aliasing: bool = Field(
        False,
        description="true: shape the shared reward tensor in place, so that a Reciprocator "
        "updating after this one measures influence on the shaped reward (spec 8, item 6)",
    )
    lagged_logs: bool = Field(
        False, description="true: log the previous episode's statistics (spec 8, item 9)"
    )


@register_agent(
    "reciprocator",
    games=("ipd-rollout",),
    params=RolloutReciprocatorParams,
    learns=True,
    reference="Zhou, Hong & Kao, Reciprocal Reward Influence Encourages Cooperation From "
    "Self-Interested Agents (NeurIPS 2024)",
)
class RolloutReciprocator(PPOAgent):
    """Reciprocator: PPO on its own reward plus ``w`` times the reciprocal reward.

    The influence of a player on the other at a step is the other's reward minus what it
    would have expected had the player acted by its usual (empirical) frequencies in that
    state; for this payoff matrix the opponent's influence is ``2 (1[C] - p_hat(C | s))``.
    The reciprocal reward multiplies the opponent's influence one step earlier (the
    "grudge") by the Reciprocator's own influence now: paying back help with help and harm
    with harm pays. The empirical frequencies come from the last ``buffer_episodes``
    episodes and are refreshed every ``target_period`` episodes (first after episode 0).
    """

    params: RolloutReciprocatorParams

    def __init__(
        self,
        params: RolloutReciprocatorParams,
        generators: list[torch.Generator],
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(params, generators, dtype, device)
        # per episode: (visits, own cooperations, other's cooperations), each (S, 5)
        self._buffer: deque[torch.Tensor] = deque(maxlen=params.buffer_episodes)
        # empirical P(C | s) of (self, other), (2, S, 5); states never seen keep 0.5
        self.p_hat = torch.full((2, self.seeds, N_STATES), 0.5, dtype=torch.float64,
                                device=self.device)
        self._episode = 0
        self._previous_log: dict[str, torch.Tensor] | None = None
        self._payoff = reward_table(dtype, self.device)

    def _count(self, episode: EpisodeView) -> torch.Tensor:
        """Visits and cooperations per (seed, state) in an episode, (3, S, 5)."""
        steps, seeds, batch = episode.obs.shape
        if episode.obs.device.type != "cpu":
            return self._count_dense(episode)
        offset = torch.arange(seeds, device=episode.obs.device).view(1, seeds, 1) * N_STATES
        ids = (episode.obs + offset).reshape(-1)
        size = seeds * N_STATES
        visits = torch.bincount(ids, minlength=size)
        own_c = torch.bincount(ids, weights=(episode.own == COOPERATE).reshape(-1).double(),
                               minlength=size)
        other_c = torch.bincount(ids, weights=(episode.other == COOPERATE).reshape(-1).double(),
                                 minlength=size)
        return torch.stack((visits.double(), own_c, other_c)).view(3, seeds, N_STATES)

    @staticmethod
    def _count_dense(episode: EpisodeView) -> torch.Tensor:
        """:meth:`_count` on a GPU: a product with the samples' one-hot states (exact: sums
        of 0 and 1), as ``torch.bincount`` there reads back to the host."""
        own_c, other_c = (seed_major(x == COOPERATE).double() for x in (episode.own,
                                                                        episode.other))
        rows = torch.stack((torch.ones_like(own_c), own_c, other_c), 1)  # (S, 3, T B)
        states = one_hot(seed_major(episode.obs), N_STATES, torch.float64)
        return torch.bmm(rows, states).transpose(0, 1)

    def _refresh_baselines(self) -> None:
        """Empirical P(C | s) of both players over the buffered episodes."""
        visits, own_c, other_c = torch.stack(tuple(self._buffer)).sum(0)
        seen = visits > 0
        for row, coop in ((0, own_c), (1, other_c)):
            self.p_hat[row] = torch.where(seen, coop / visits.clamp(min=1), self.p_hat[row])

    def influence(
        self, reward: torch.Tensor, acted: torch.Tensor, of: torch.Tensor, p_c: torch.Tensor
    ) -> torch.Tensor:
        """One-step influence on a player's reward by the other player.

        Parameters
        ----------
        reward : Tensor, (T, S, B)
            The influenced player's rewards.
        acted : Tensor of long, (T, S, B)
            The influenced player's own actions (held at their actual values).
        of : Tensor of long, (T, S, B)
            The observation index (this Reciprocator's side) of each step.
        p_c : Tensor, (S, 5)
            The influencer's empirical P(C | s).

        Returns
        -------
        Tensor, (T, S, B)
            ``reward - sum_a' p_hat(a' | s) R(acted, a')``.
        """
        p = p_c.to(self.dtype).unsqueeze(0).expand(of.shape[0], -1, -1).gather(2, of)
        if_c, if_d = self._payoff[acted, 0], self._payoff[acted, 1]
        return reward - (p * if_c + (1 - p) * if_d)

    def balance(self, received: torch.Tensor, returned: torch.Tensor) -> torch.Tensor:
        """The balance ``B_t`` that multiplies the Reciprocator's influence at step t."""
        if self.params.balance == "lagged":
            out = torch.zeros_like(received)
            out[1:] = received[:-1]
            return out
        # B_0 = 0, B_{t+1} = gamma B_t + received_t - returned_t (elementwise, game by game)
        out = torch.zeros_like(received)
        for t in range(1, received.shape[0]):
            out[t] = torch.add(received[t - 1] - returned[t - 1], out[t - 1],
                               alpha=self.params.gamma)
        return out

    def end_episode(self, episode: EpisodeView) -> dict[str, torch.Tensor]:
        """Refresh the baselines on schedule, shape the rewards, one PPO update."""
        self._buffer.append(self._count(episode))
        if self._episode % self.params.target_period == 0:
            self._refresh_baselines()
        # the opponent's influence on me, and mine on the opponent (by my empirical rates)
        received = self.influence(episode.own_reward, episode.own, episode.obs, self.p_hat[1])
        returned = self.influence(episode.other_reward, episode.other, episode.obs,
                                  self.p_hat[0])
        balance = self.balance(received, returned)
        reciprocal = balance * returned
        w = self.params.rr_weight
        if self.params.reward_aliasing:
            shaped = episode.own_reward.add_(reciprocal, alpha=w)
        else:
            shaped = episode.own_reward + w * reciprocal
        self.learn(episode, shaped)
        self._episode += 1
        log = {
            "reciprocal_reward": w * seed_means(reciprocal),
            "balance": seed_means(balance[-1:]),
            "influence": seed_means(returned),
        }
        if not self.params.lagged_logs:
            return log
        previous = self._previous_log or {k: torch.full_like(v, float("nan"))
                                          for k, v in log.items()}
        self._previous_log = log
        return previous
