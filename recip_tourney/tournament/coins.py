"""The Coins protocol: both agents play B Coin Games of T steps per episode and learn once
per episode (rollout spec 6.3), for every seed of a pairing at once.

Per episode: the games are reset, both agents act from their own observations, the
episode's rewards and coin counts are recorded before anyone learns; then, when a player
needs it, the shared influence estimator stores the episode and refits on its schedule, and
the agent (slot 0) and the opponent (slot 1) end the episode in that order. While the
estimator warms up (its first ``init_episodes`` episodes) nobody learns, as in the
reference trainer. A match's reward is the episode return (sum over the T steps, mean over
games) averaged over the last ``table_last`` episodes; its cooperation statistics are the
own-coin share and the coins collected per episode over the same episodes.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recip_tourney.agents.coins_agent import (
    CoinsAgent,
    CoinsEpisode,
    CoinsSetup,
    CoinsStep,
    build_coins_agent,
)
from recip_tourney.agents.coins_influence import CoinsVoI
from recip_tourney.agents.coins_influence_q import FutureQInfluence
from recip_tourney.device import DeviceName, resolve_device, upload
from recip_tourney.envs import coins as env
from recip_tourney.registry import register_game
from recip_tourney.tournament.checkpoint import MatchCheckpoint, relocate
from recip_tourney.tournament.match import SidePool, release_free_memory
from recip_tourney.tournament.records import match_record
from recip_tourney.tournament.schedule import MatchSpec

PLAYERS = 2
#: The only torus side the transition estimator (CoinsVoI) handles.
TRANSITION_GRID = 3
#: Episodes between returns of freed memory to the system (see ``release_free_memory``).
TRIM_EVERY = 10


class InfluenceSettings(BaseModel):
    """The shared influence estimator of a match with a Reciprocator (rollout spec 5.3.3-5.3.4,
    7.2); see :class:`~recip_tourney.agents.coins_influence.CoinsVoI`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gamma: float = Field(0.99, gt=0.0, le=1.0, description="discount of values (the agents')")
    lr: float = Field(0.01, gt=0.0, description="Adam step size of every model")
    samples: int = Field(65536, gt=0, description="subsample per model and fit")
    minibatch: int = Field(4096, gt=0, description="minibatch size")
    epochs: int = Field(20, gt=0, description="epochs per model and fit")
    buffer_episodes: int = Field(3, gt=0, description="episodes kept for fitting")
    period: int = Field(2, gt=0, description="refit every this many episodes")
    hidden: int = Field(64, gt=0, description="MLP width")
    channels: int = Field(16, gt=0, description="conv channels of the value model")
    time_feature: Literal["faithful", "consistent"] = Field(
        "faithful", description="time-remaining input of the transition models (spec 8, item 14)"
    )
    value_time: bool = Field(
        False, description="a time-aware value model, zero after the last step (spec 8, item 15)"
    )
    model: Literal["auto", "transition", "future_q"] = Field(
        "auto",
        description="transition: reward, transition and state-value models (CoinsVoI, 3x3 "
        "only); future_q: reward and future-value models (ValueOfInfluence, any grid); auto: "
        "transition on a 3x3 torus, else future_q, as the reference trainer chooses",
    )
    double_discount: bool = Field(
        True, description="future_q: discount the already discounted future again (spec 8, "
        "item 13)"
    )


class CoinsSettings(BaseModel):
    """Settings of a Coins tournament (defaults: the paper's 2-player sizes, spec 7.2-7.3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: int = Field(1024, gt=0, description="parallel games per seed")
    steps: int = Field(32, gt=0, description="steps per episode")
    episodes: int = Field(1000, gt=0, description="episodes (learning updates) per match")
    table_last: int = Field(
        100, gt=0, description="final episodes averaged in the tables (at most all episodes)"
    )
    grid: int = Field(3, ge=2, description="side of the torus")
    layout: Literal["egocentric", "faithful"] = Field(
        "egocentric",
        description="observation channels: own first (egocentric) or the reference code's "
        "roll of all channels (faithful; spec 8, item 11)",
    )
    init_episodes: int = Field(
        2, ge=0, description="episodes the estimator warms up while nobody learns (spec 6.3)"
    )
    influence: InfluenceSettings = Field(
        default_factory=InfluenceSettings, description="the shared influence estimator"
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="floating type")
    device: DeviceName = Field(
        "cpu", description="where tensors live; auto = cuda when available"
    )

    @model_validator(mode="after")
    def _estimator_fits_grid(self) -> CoinsSettings:
        if self.influence.model == "transition" and self.grid != TRANSITION_GRID:
            raise ValueError(
                f"settings.influence.model transition enumerates the next states of a "
                f"{TRANSITION_GRID}x{TRANSITION_GRID} torus, not {self.grid}x{self.grid}; "
                "use future_q or auto"
            )
        return self

    @property
    def estimator(self) -> str:
        """The influence estimator the match builds: ``transition`` or ``future_q``."""
        if self.influence.model != "auto":
            return self.influence.model
        return "transition" if self.grid == TRANSITION_GRID else "future_q"


def _uniform(generators: list[torch.Generator], shape: tuple[int, ...], dtype) -> torch.Tensor:
    """Uniform draws of shape ``(S, *shape)``, seed s from its own generator (on the CPU)."""
    return torch.stack([torch.rand(shape, generator=g, dtype=dtype, device=g.device)
                        for g in generators])


def build_estimator(settings: CoinsSettings, generators: list[torch.Generator],
                    dtype: torch.dtype, device: torch.device | str = "cpu"
                    ) -> CoinsVoI | FutureQInfluence:
    """The match's shared influence estimator (:attr:`CoinsSettings.estimator`) on
    ``device``."""
    common = settings.influence.model_dump(
        include={"gamma", "lr", "samples", "minibatch", "epochs", "buffer_episodes", "period",
                 "hidden"})
    common.update(init_episodes=settings.init_episodes, dtype=dtype, device=device)
    if settings.estimator == "transition":
        return CoinsVoI(generators, channels=settings.influence.channels,
                        time_feature=settings.influence.time_feature,
                        value_time=settings.influence.value_time, **common)
    return FutureQInfluence(generators, grid=settings.grid, players=PLAYERS,
                            double_discount=settings.influence.double_discount, **common)


class CoinsMatch:
    """Two Coins agents and, when one needs it, the shared influence estimator.

    With a :class:`~recip_tourney.tournament.match.SidePool` of several threads, the two
    agents' end-of-episode updates and the estimator's model groups run side by side; every
    number is the same as with one thread.

    Everything lives on ``settings.device`` but the seeds' generators: an episode's draws
    (start cells, respawn cells, the agents' uniform noise) are made on the CPU, seed by
    seed, and copied over in one go, so a seed's games do not depend on the device or on
    its batch-mates. Nothing in an episode waits for the device until its statistics are
    read (by :func:`play_coins`, once per episode).
    """

    def __init__(self, spec: MatchSpec, settings: CoinsSettings, pool: SidePool | None = None):
        self.s = settings
        self.pool = pool or SidePool(1)
        self.device = resolve_device(settings.device)
        self.dtype = getattr(torch, settings.dtype)
        self.generators = [torch.Generator().manual_seed(slot.seed) for slot in spec.seeds]
        roles = (("agent", spec.agent), ("opponent", spec.opponent))
        self.players: tuple[CoinsAgent, ...] = tuple(
            build_coins_agent(
                spec.game, player.name, player.params,
                CoinsSetup(self.generators, self.dtype, self.device, PLAYERS, settings.grid,
                           me=slot, artifacts=tuple(spec.artifacts.get(role, ()))),
            )
            for slot, (role, player) in enumerate(roles)
        )  # fmt: skip
        self.estimator = None
        if any(p.uses_influence for p in self.players):
            self.estimator = build_estimator(settings, self.generators, self.dtype,
                                             self.device)
        self.episode = 0

    def __getstate__(self) -> dict[str, Any]:
        # a checkpoint holds the match's state, not the worker's threads
        return {**self.__dict__, "pool": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.pool = SidePool(1)

    def play_episode(self) -> dict[str, torch.Tensor]:
        """Play and learn one episode; per-seed statistics of both players, each (S,)."""
        s, gens, seeds = self.s, self.generators, len(self.generators)
        self.episode += 1
        cells = s.grid * s.grid
        start = env.draw_cells(gens, (s.batch, 2 * PLAYERS), cells)  # on the CPU
        noise = _uniform(gens, (s.steps, PLAYERS, s.batch), self.dtype)  # (S, T, n, B)
        respawn = env.draw_cells(gens, (s.steps, s.batch, PLAYERS), cells)  # (S, T, B, n)
        state = env.reset(upload(start, self.device), PLAYERS)
        noise = upload(noise, self.device)
        respawn = upload(respawn, self.device)
        obs_log = torch.empty(s.steps, PLAYERS, seeds, s.batch, 2 * PLAYERS, s.grid, s.grid,
                              dtype=self.dtype, device=self.device)
        labels = torch.empty(s.steps + 1, seeds, s.batch, 2 * PLAYERS, dtype=torch.long,
                             device=self.device)
        actions = torch.empty(s.steps, PLAYERS, seeds, s.batch, dtype=torch.long,
                              device=self.device)
        rewards = torch.empty(s.steps, PLAYERS, seeds, s.batch, dtype=self.dtype,
                              device=self.device)
        collected = torch.zeros(seeds, s.batch, PLAYERS, PLAYERS, dtype=torch.long,
                                device=self.device)
        for p in self.players:
            p.begin_episode(s.batch)
        with torch.no_grad():
            for t in range(s.steps):
                obs = env.observe(state, s.grid, layout=s.layout, dtype=self.dtype)
                obs_log[t] = obs.movedim(2, 0)
                labels[t] = env.labels(state)
                for k, player in enumerate(self.players):
                    actions[t, k] = player.act(CoinsStep(obs_log[t, k], state, noise[:, t, k]))
                state, reward, took = env.step(state, actions[t].movedim(0, -1),
                                               respawn[:, t], s.grid, dtype=self.dtype)
                rewards[t] = reward.movedim(-1, 0)
                collected += took.long()
            labels[s.steps] = env.labels(state)
        stats = self._statistics(rewards, collected)
        learning = True
        influence = None
        if self.estimator is not None:
            joint = actions.movedim(1, -1), rewards.movedim(1, -1)  # (T, S, B, n)
            self.estimator.store(labels[:-1], *joint)
            if self.estimator.due(self.episode):
                self.estimator.fit(self.pool)
            learning = self.episode > s.init_episodes
            if learning:
                influence = self.estimator.influence(labels[:-1], joint[0])
        tasks = [
            partial(player.end_episode,
                    CoinsEpisode(obs_log[:, k], actions, rewards, k, influence, learning))
            for k, player in enumerate(self.players)
        ]
        for prefix, logs in zip(("agent", "opponent"), self.pool.run(tasks), strict=True):
            for key, value in logs.items():
                stats[f"{prefix}.{key}"] = value
        return stats

    @staticmethod
    def _statistics(rewards: torch.Tensor, collected: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-seed episode statistics of both players (sums of small integers: exact)."""
        batch = rewards.shape[-1]
        returns = rewards.sum(0).double().sum(-1) / batch  # (n, S)
        counts = collected.double().sum(1) / batch  # (S, collector, coin)
        own = counts.diagonal(dim1=1, dim2=2)  # (S, n)
        total = counts.sum(2)
        out = {}
        for k, prefix in enumerate(("", "opponent_")):
            out[f"{prefix}reward"] = returns[k]
            out[f"{prefix}own_coins"] = own[:, k]
            out[f"{prefix}other_coins"] = total[:, k] - own[:, k]
            out[f"{prefix}coins"] = total[:, k]
            # own coins / all coins it took, over the B games; NaN when it took none
            out[f"{prefix}own_share"] = own[:, k] / total[:, k]
        return out


def _share(own: torch.Tensor, total: torch.Tensor) -> float | None:
    """own / total: the own-coin share; None (no value) when no coin was collected."""
    return (own / total).item() if total.item() > 0 else None


@register_game(
    "coins",
    family="coins",
    config="coins.yaml",
    settings=CoinsSettings,
    summary="2-player Coin Game on a g x g torus (default 3x3): B games x T steps, PPO-GRU",
    overall="over the last table_last episodes",
    reward="episode return (sum of the T steps' rewards, mean over games)",
    reward_range=(-2.0, 2.0),
    statistics=("own_share", "coins"),
    statistics_caption="the row agent's own-coin share (own coins / all coins it took) and "
    "coins taken per episode, {overall}",
    split_seeds=True,
)
def play_coins(spec: MatchSpec) -> list[dict[str, Any]]:
    """Play every seed of ``spec`` as one batch; return one match record per seed."""
    s = CoinsSettings(**spec.settings)
    pool = SidePool(spec.threads)
    checkpoint = MatchCheckpoint.for_spec(spec)
    try:
        saved = checkpoint.load() if checkpoint is not None else None
        if saved is None:
            match = CoinsMatch(spec, s, pool)
            curves: dict[str, list[torch.Tensor]] = defaultdict(list)
        else:  # resume between two episodes, exactly where the checkpoint left off
            # (read onto the CPU; the match moves to this run's device, the curves stay)
            match, curves = relocate(saved["match"], resolve_device(s.device)), saved["curves"]
            match.pool = pool
        for episode in range(match.episode, s.episodes):
            if episode % TRIM_EVERY == 0:
                release_free_memory()
            stats = match.play_episode()
            # one copy to the host per episode (the only wait for the device)
            values = torch.stack([v.detach().double() for v in stats.values()]).cpu()
            for key, value in zip(stats, values, strict=True):
                curves[key].append(value)
            if checkpoint is not None and episode + 1 < s.episodes and checkpoint.due():
                checkpoint.save({"match": match, "curves": curves}, episodes=match.episode)
    finally:
        pool.close()
    stacked = {key: torch.stack(values, dim=1) for key, values in curves.items()}  # (S, E)
    last = slice(max(0, s.episodes - s.table_last), s.episodes)
    records = []
    for i, slot in enumerate(spec.seeds):
        window = {key: v[i, last] for key, v in stacked.items()}
        cooperation = {
            side: {
                "own_share": _share(window[f"{prefix}own_coins"].sum(),
                                    window[f"{prefix}coins"].sum()),
                "coins": window[f"{prefix}coins"].mean().item(),
            }
            for side, prefix in (("agent", ""), ("opponent", "opponent_"))
        }
        records.append(match_record(
            spec,
            slot,
            summary={
                "reward": window["reward"].mean().item(),
                "opponent_reward": window["opponent_reward"].mean().item(),
            },
            cooperation=cooperation,
            curves={key: v[i].tolist() for key, v in stacked.items()},
        ))
    return records
