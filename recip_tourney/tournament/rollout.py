"""The IPD-Rollout protocol: both agents play B sampled games of T steps per episode and
learn once per episode (rollout spec 6.2), for every seed of a pairing at once.

Per episode: both agents act from their policy at the start of the episode; the episode's
rewards and cooperation are recorded before anyone learns; then the agent (slot 0) and the
opponent (slot 1) end the episode in that order, as the reference code updates its agents.
A match's reward is the average reward per step over the last ``table_last`` episodes (or
all of them, when fewer);
its cooperation statistics are the realised P(cooperate) over those episodes and the final
policies' P(cooperate | state).

Everything of a match lives on the settings' ``device``. Each seed's draws come from its own
CPU generator (so a seed's games do not depend on its batch-mates or on the device) and an
episode's noise is copied over in one go; the per-episode records stay on the device as
tensors until the match ends, when they come back to the host at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from recip_tourney.agents.rollout import EpisodeView, RolloutAgent, build_rollout_agent
from recip_tourney.device import DeviceName, resolve_device, upload
from recip_tourney.envs import ipd_rollout as env
from recip_tourney.envs.ipd import STATES
from recip_tourney.registry import register_game
from recip_tourney.tournament.match import release_free_memory
from recip_tourney.tournament.records import match_record
from recip_tourney.tournament.schedule import MatchSpec

#: Episodes between returns of freed memory to the system (see ``release_free_memory``).
TRIM_EVERY = 10


class RolloutSettings(BaseModel):
    """Settings of an IPD-Rollout tournament (defaults: the reference code's sizes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: int = Field(2048, gt=0, description="parallel games per seed")
    steps: int = Field(32, gt=0, description="steps per episode")
    episodes: int = Field(1000, gt=0, description="episodes (learning updates) per match")
    table_last: int = Field(
        100, gt=0, description="final episodes averaged in the tables (at most all episodes)"
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="floating type")
    device: DeviceName = Field(
        "cpu", description="where tensors live: cpu, cuda, or auto (cuda when torch sees one)"
    )


def _draws(
    generators: list[torch.Generator], steps: int, batch: int, dtype: torch.dtype
) -> torch.Tensor:
    """Uniform draws of one episode, (2 players, T, S, B), each seed from its own generator
    (on the CPU)."""
    draws = [torch.rand(2, steps, batch, generator=g, dtype=dtype, device=g.device)
             for g in generators]
    return torch.stack(draws, dim=2)


def _noise(
    generators: list[torch.Generator], steps: int, batch: int, dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """:func:`_draws` copied to ``device`` at once."""
    return upload(_draws(generators, steps, batch, dtype), device)


def episode_noises(
    generators: list[torch.Generator], steps: int, batch: int, dtype: torch.dtype,
    device: torch.device, episodes: int, prefetch: bool | None = None,
) -> Iterator[torch.Tensor]:
    """Each episode's :func:`_draws` on ``device``, in order.

    With ``prefetch`` (default: on a GPU) the next episode's draws are made on a helper
    thread (CPU work only) while this one is played (drawing is a good part of the host's
    time per episode there): the same draws in the same order, as nothing else draws from
    the seeds' generators once the players are built.
    """
    if not (device.type == "cuda" if prefetch is None else prefetch):
        for _ in range(episodes):
            yield _noise(generators, steps, batch, dtype, device)
        return
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_draws, generators, steps, batch, dtype)
        for episode in range(episodes):
            host = pending.result()
            if episode + 1 < episodes:
                pending = pool.submit(_draws, generators, steps, batch, dtype)
            yield upload(host, device)


def play_episode(
    players: tuple[RolloutAgent, RolloutAgent],
    generators: list[torch.Generator],
    steps: int,
    batch: int,
    dtype: torch.dtype,
    policies: tuple[torch.Tensor, torch.Tensor] | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Play one episode of S x B games.

    ``policies`` are the players' :meth:`~RolloutAgent.p_cooperate` tables when the caller
    already has them (they do not change within an episode); ``noise`` the episode's
    :func:`_draws` when the caller made them. The games are played on the players' device.

    Returns
    -------
    obs : Tensor of long, (T, S, B)
        Player 0's observation at each step.
    actions : Tensor of long, (T, 2, S, B)
        Both players' actions, by slot.
    rewards : Tensor, (T, 2, S, B)
    """
    seeds, device = len(generators), players[0].device
    if noise is None:
        noise = _noise(generators, steps, batch, dtype, device)
    if policies is None:
        policies = (players[0].p_cooperate(), players[1].p_cooperate())
    for p in players:
        p.begin_episode()
    obs = (env.initial_observation((seeds, batch), device),) * 2
    seen: list[torch.Tensor] = []
    defects: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    with torch.no_grad():  # the steps' tensors are stacked at the end: fewer kernels per step
        for t in range(steps):
            seen.append(obs[0])
            d0 = players[0].act(obs[0], noise[0, t], policies[0])
            d1 = players[1].act(obs[1], noise[1, t], policies[1])
            defects[0].append(d0)
            defects[1].append(d1)
            a0, a1 = d0.long(), d1.long()
            obs = env.observation(a0, a1), env.observation(a1, a0)
    obs_log = torch.stack(seen)
    actions = torch.stack((torch.stack(defects[0]), torch.stack(defects[1])), 1).long()
    own, other = actions[:, 0], actions[:, 1]
    rewards = torch.stack((env.rewards(own, other, dtype), env.rewards(other, own, dtype)), 1)
    return obs_log, actions, rewards


@register_game(
    "ipd-rollout",
    family="rollout",
    config="ipd-rollout.yaml",
    settings=RolloutSettings,
    summary="Iterated prisoner's dilemma played by sampling: B games x T steps per episode, PPO",
    overall="realised over the last table_last episodes",
    split_seeds=True,
)
def play_rollout(spec: MatchSpec) -> list[dict[str, Any]]:
    """Play every seed of ``spec`` as one batch; return one match record per seed."""
    s = RolloutSettings(**spec.settings)
    dtype, device = getattr(torch, s.dtype), resolve_device(s.device)
    generators = [torch.Generator(device="cpu").manual_seed(slot.seed) for slot in spec.seeds]
    players = (
        build_rollout_agent(spec.game, spec.agent.name, spec.agent.params, generators, dtype,
                            device),
        build_rollout_agent(spec.game, spec.opponent.name, spec.opponent.params, generators,
                            dtype, device),
    )
    curves: dict[str, list[torch.Tensor]] = defaultdict(list)
    noises = episode_noises(generators, s.steps, s.batch, dtype, device, s.episodes)
    for episode, noise in enumerate(noises):
        if episode % TRIM_EVERY == 0:
            release_free_memory()
        policies = (players[0].p_cooperate(), players[1].p_cooperate())
        for prefix, policy in zip(("", "opponent_"), policies, strict=True):
            curves[f"{prefix}policy"].append(policy.double())  # (S, 5): split at the end
        obs, actions, rewards = play_episode(players, generators, s.steps, s.batch, dtype,
                                             policies, noise)
        for slot, prefix in ((0, ""), (1, "opponent_")):
            curves[f"{prefix}reward"].append(env.seed_means(rewards[:, slot]))
            curves[f"{prefix}p_cooperate"].append(1.0 - env.seed_means(actions[:, slot]))
        views = (
            EpisodeView(obs, actions[:, 0], actions[:, 1], rewards, me=0),
            EpisodeView(env.other_side(obs), actions[:, 1], actions[:, 0], rewards, me=1),
        )
        for prefix, player, view in zip(("agent", "opponent"), players, views, strict=True):
            for key, value in player.end_episode(view).items():
                curves[f"{prefix}.{key}"].append(value.double())
    # back to the host once, at the end of the match (no-ops on the CPU)
    stacked = {}
    for key, values in curves.items():
        series = torch.stack(values, dim=1).cpu()  # (S, E), policies (S, E, 5)
        if key.endswith("policy"):
            for i, state in enumerate(STATES):
                stacked[f"{key.removesuffix('policy')}p_cooperate_{state}"] = series[..., i]
        else:
            stacked[key] = series
    last = slice(max(0, s.episodes - s.table_last), s.episodes)
    finals = [p.p_cooperate().double().cpu() for p in players]
    records = []
    for i, slot in enumerate(spec.seeds):
        cooperation = {
            side: {"overall": stacked[f"{prefix}p_cooperate"][i, last].mean().item()}
            | {state: finals[k][i, j].item() for j, state in enumerate(STATES)}
            for k, (side, prefix) in enumerate((("agent", ""), ("opponent", "opponent_")))
        }
        records.append(match_record(
            spec,
            slot,
            summary={
                "reward": stacked["reward"][i, last].mean().item(),
                "opponent_reward": stacked["opponent_reward"][i, last].mean().item(),
            },
            cooperation=cooperation,
            curves={key: v[i].tolist() for key, v in stacked.items()},
        ))
    return records
