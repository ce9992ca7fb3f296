"""M-FOS on the Coin Game: a conv-GRU meta-policy trained over whole learning runs of its
opponent (Lu et al. 2022; rollout spec 4.6, IPD-Analytic spec 9).

A *meta-episode* is ``inner_episodes`` (16) Coins episodes of ``steps`` (32) steps against
one fresh opponent, which learns after each of them as in a match. M-FOS conditions each
inner episode on the previous one (its ``theta``, :mod:`recip_tourney.agents.coins_mfos_nets`)
and is trained by PPO once per meta-episode on the whole meta-trajectory, so it maximises
its return over the opponent's learning, not per episode.

Training (``recip-tourney pretrain mfos --game coins``, :mod:`recip_tourney.pretrain.mfos_coins`)
writes one artifact per opponent type; in the tournament M-FOS plays that frozen meta-policy:
``theta`` from the previous tournament episode (ones for the first), the GRUs restarted every
episode, actions by inverse CDF of the match's per-seed draws. It does not learn in a match.
One training serves every tournament seed of a pairing (the seeds still differ in their
games, draws and opponent); ``train_seed`` picks the training.

Differences from the original coin-game M-FOS, all following the project's Coins: 5 actions
(STAY included), 32-step episodes with a 32-step inner episode (the Reciprocator fork's),
egocentric observations, the project's NL (``agents.nl``) as the inner learner.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from recip_tourney import registry
from recip_tourney.agents.base import PairingContext, Params
from recip_tourney.agents.coins_agent import CoinsAgent, CoinsEpisode, CoinsSetup, CoinsStep
from recip_tourney.agents.coins_mfos_nets import (
    MFOSNets,
    codes_of,
    each,
    episode_codes,
    observation_cells,
    previous_rewards,
    start_code,
)
from recip_tourney.pretrain import mfos_coins as training
from recip_tourney.pretrain.artifacts import ArtifactSpec
from recip_tourney.registry import register_agent
from recip_tourney.tournament.schedule import stable_hash


class MFOSCoinsParams(Params):
    """Parameters of Coins M-FOS's training (defaults: the original coin-game M-FOS, spec 4.6
    and 9, with the Reciprocator fork's 16 inner episodes of 32 steps)."""

    meta_episodes: int = Field(1000, gt=0, description="PPO updates (one per meta-episode)")
    inner_episodes: int = Field(16, gt=0, description="Coins episodes per meta-episode")
    train_batch: int = Field(512, gt=0, description="parallel games while training")
    hidden: int = Field(16, gt=0, description="n: width of every tower")
    lr: float = Field(0.0002, gt=0.0, description="Adam step size")
    meta_gamma: float = Field(0.995, gt=0.0, le=1.0, description="discount over the "
                              "meta-trajectory")
    epochs: int = Field(16, gt=0, description="full-batch PPO epochs per update")
    clip: float = Field(0.2, gt=0.0, lt=1.0, description="PPO ratio clip")
    normalize_returns: bool = Field(True, description="standardise the returns (the original "
                                    "does; the Reciprocator fork's copy does not)")
    eps: float = Field(1e-5, ge=0.0, description="added to the returns' std")
    curriculum_decay: float = Field(0.005, gt=0.0, description="self-play curriculum step")
    train_seed: int = Field(0, ge=0, description="seed of the training")


_TRAINING_KEYS = ("meta_episodes", "inner_episodes", "train_batch", "hidden", "lr",
                  "meta_gamma", "epochs", "clip", "normalize_returns", "eps", "curriculum_decay")
_SETTINGS_KEYS = ("steps", "grid", "layout", "dtype")
#: Settings that shape an opponent that uses the influence estimator (the Reciprocator).
_ESTIMATOR_KEYS = ("init_episodes", "influence")


def training_specs(pairing: PairingContext) -> list[ArtifactSpec]:
    """The M-FOS training behind ``pairing``: against the opponent's roster entry, or the
    self-play curriculum (against ``mfos``, with the config's NL as curriculum opponent)."""
    params, against = pairing.me.params, pairing.opponent
    settings = {k: pairing.settings[k] for k in _SETTINGS_KEYS}
    key: dict[str, Any] = {
        "game": "coins",
        "settings": settings,
        "mfos": {k: params[k] for k in _TRAINING_KEYS},
    }
    requires: tuple[ArtifactSpec, ...] = ()
    if against.name == "mfos":
        nl = pairing.agent_params.get("nl") or registry.agent("coins", "nl").params().model_dump()
        key["against"] = {"name": "mfos", "params": {}}
        key["curriculum_opponent"] = nl
        what = "Coins M-FOS self-play"
    else:
        cls = registry.agent("coins", against.name).cls
        if cls.uses_influence:
            settings.update({k: pairing.settings[k] for k in _ESTIMATOR_KEYS})
        key["against"] = {"name": against.name, "params": against.params}
        requires = tuple(cls.artifacts(pairing.swap()))
        what = f"Coins M-FOS vs {against.name}"
    seed = int(stable_hash([training.KIND, key["against"], params["train_seed"]], 15), 16)
    return [ArtifactSpec(
        training.KIND, {**key, "seed": seed}, f"{what}, training seed {params['train_seed']}",
        requires, f"recip-tourney pretrain mfos --game coins --against {against.name}",
    )]  # fmt: skip


# ---------------------------------------------------------------------- playing


class MFOSPlayer(CoinsAgent):
    """M-FOS's meta-policy playing S seeds (frozen; :class:`MFOSLearner` also learns).

    Per step it encodes its meta-state (its observation's cells and the previous step's
    rewards, recovered from the game states, see
    :func:`~recip_tourney.agents.coins_mfos_nets.previous_rewards`) and samples from its
    actor. At the end of every episode tower t turns the episode into the next ``theta``.
    """

    registry_name = "mfos"

    def __init__(self, params: Params, setup: CoinsSetup, nets: MFOSNets) -> None:
        super().__init__(params, setup)
        if setup.players != 2:
            raise ValueError("Coins M-FOS plays the 2-player game only")
        self.nets = nets
        self.me = setup.me
        self.theta = self._ones()
        self._hidden: torch.Tensor | None = None
        self._before = None

    def _ones(self) -> torch.Tensor:
        return torch.ones(self.nets.seeds, self.nets.hidden, dtype=self.nets.dtype,
                          device=self.nets.device)

    def seat(self, me: int) -> None:
        """Play slot ``me`` from now on, from a fresh ``theta`` (a new opponent)."""
        self.me = me
        self.theta = self._ones()

    def begin_episode(self, batch: int) -> None:
        """Restart the actor's GRU; the first step gets the start code."""
        self._hidden = torch.zeros(self.nets.seeds, batch, self.nets.hidden,
                                   dtype=self.nets.dtype, device=self.nets.device)
        self._before = None

    def act(self, step: CoinsStep) -> torch.Tensor:
        """Sample from the actor, conditioned on ``theta`` (inverse CDF of the step's draws)."""
        if self._hidden is None:
            raise RuntimeError("call begin_episode before act")
        cells = observation_cells(step.obs)
        if self._before is None:
            codes = torch.full(cells.shape[:-1], start_code(), dtype=torch.long,
                               device=cells.device)
        else:
            paid = previous_rewards(self._before, step.state, self.setup.grid)
            codes = codes_of(paid[..., self.me], paid[..., 1 - self.me])
        actions, self._hidden = self.nets.act(cells, codes, self._hidden, self.theta,
                                              step.noise)
        self._before = step.state
        return actions

    def end_episode(self, episode: CoinsEpisode) -> dict[str, torch.Tensor]:
        """The next episode's ``theta`` from this one (tower t)."""
        cells = observation_cells(episode.obs)
        codes = episode_codes(episode.rewards, episode.me)
        self.record(episode, cells, codes)
        self.theta = self.nets.condition(cells, codes)
        return {}

    def record(self, episode: CoinsEpisode, cells: torch.Tensor, codes: torch.Tensor) -> None:
        """What the learner keeps of an episode (nothing when frozen)."""


@register_agent(
    "mfos",
    games=("coins",),
    params=MFOSCoinsParams,
    learns=True,
    reference="Lu, Willi, de Witt & Foerster, Model-Free Opponent Shaping (ICML 2022)",
    needs_pretraining=True,
)
class CoinsMFOS(MFOSPlayer):
    """M-FOS: a conv-GRU meta-policy conditioned on the previous episode, trained by PPO.

    It was trained over whole learning runs of its opponent type (one artifact per type, by
    ``recip-tourney pretrain mfos --game coins --against X``) and plays that frozen policy:
    it shapes the opponent's learning rather than learning itself.
    """

    def __init__(self, params: MFOSCoinsParams, setup: CoinsSetup) -> None:
        if not setup.artifacts:
            raise RuntimeError("Coins M-FOS needs its pretrained artifact (attach_artifacts)")
        # a self-play artifact holds both players; the second mover plays player 1
        two = "player1" in setup.artifacts[0]
        key = "player1" if two and setup.me == 1 else "player0"
        states = [setup.artifacts[0][key]] * setup.seeds
        nets = MFOSNets.from_state_dicts(states, setup.dtype, setup.grid, device=setup.device)
        super().__init__(params, setup, nets)

    @classmethod
    def artifacts(cls, pairing: PairingContext) -> list[ArtifactSpec]:
        """The trained meta-policy for this opponent (or the self-play one)."""
        return training_specs(pairing)


# ---------------------------------------------------------------------- learning


def meta_returns(rewards: torch.Tensor, gamma: float, inner: int) -> torch.Tensor:
    """Monte-Carlo returns over a meta-trajectory (L, B) of one seed (PPOMFOS, spec 4.6).

    Backwards over the L steps: ``G_t = r_t + gamma G_{t+1}`` per game, and alongside the
    batch-mean return ``M_t = mean(r_t) + gamma M_{t+1}``; entering an inner episode from its
    end (every ``inner`` steps from the end but the last step), the per-game running return
    is replaced by the batch mean ``M`` of what follows, since the later inner episodes
    depend on the whole batch through the opponent's learning and ``theta``.
    """
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    mean = rewards.new_zeros(())
    for i, t in enumerate(range(rewards.shape[0] - 1, -1, -1)):
        if i and i % inner == 0:
            running = mean.expand_as(running)
        running = rewards[t] + gamma * running
        mean = rewards[t].mean() + gamma * mean
        out[t] = running
    return out


class MFOSLearner(MFOSPlayer):
    """M-FOS in training: plays like :class:`MFOSPlayer`, keeps its inner episodes and makes
    one PPO update per meta-episode (:meth:`update`).

    The update (PPOMFOS, spec 4.6, with the original's settings): returns by
    :func:`meta_returns` (meta-discount ``meta_gamma``) over all ``E x T`` steps, standardised
    per seed over its ``E T B`` samples (unbiased std + eps) when ``normalize_returns``;
    then ``epochs`` full-batch Adam steps on ``mean[-min(rho A, clip(rho) A)] + 0.5
    mean[(V - G)^2]`` with ``A = G - sg(V)`` recomputed every epoch, no entropy term. Each
    epoch re-runs the whole meta-episode (:meth:`MFOSNets.evaluate`), ``theta`` included, so
    the conditioning tower learns through the actor. The behaviour log-probabilities are the
    first epoch's (the weights that played).
    """

    params: MFOSCoinsParams

    def __init__(self, params: MFOSCoinsParams, setup: CoinsSetup,
                 table: bool | None = None) -> None:
        nets = MFOSNets(params.hidden, setup.generators, setup.dtype, setup.grid, table,
                        device=setup.device)
        super().__init__(params, setup, nets)
        for tensor in nets.parameters():
            tensor.requires_grad_(True)
        self.optimizer = torch.optim.Adam(nets.parameters(), lr=params.lr)
        self.memory: list[tuple[torch.Tensor, ...]] = []

    def record(self, episode: CoinsEpisode, cells: torch.Tensor, codes: torch.Tensor) -> None:
        """Keep the inner episode: cells, codes, own actions and own rewards, (T, S, B)."""
        self.memory.append((cells, codes, episode.own_actions, episode.own_reward))

    def returns(self, rewards: torch.Tensor, steps: int) -> torch.Tensor:
        """Per-seed (standardised) meta-returns of rewards (L, S, B), as (L, S, B)."""
        p = self.params
        out = []
        for seed in range(rewards.shape[1]):
            g = meta_returns(rewards[:, seed].double(), p.meta_gamma, steps)
            if p.normalize_returns:
                g = (g - g.mean()) / (g.std() + p.eps)
            out.append(g)
        return torch.stack(out, dim=1).to(self.nets.dtype)

    def update(self) -> dict[str, torch.Tensor]:
        """One PPO update on the recorded inner episodes; per-seed diagnostics (S,), float64:
        policy and value loss at the playing weights, last epoch's KL and clip fraction."""
        if not self.memory:
            raise RuntimeError("no inner episode recorded")
        cells, codes, actions, rewards = (torch.stack(x) for x in zip(*self.memory,
                                                                        strict=True))
        self.memory = []
        inner, steps, seeds, batch = codes.shape
        returns = self.returns(rewards.flatten(0, 1), steps).view(inner, steps, seeds, batch)

        def seed_major(x: torch.Tensor) -> torch.Tensor:  # (E, T, S, B, ...) -> (S, T, E, B, ...)
            return x.permute(2, 1, 0, 3, *range(4, x.dim())).contiguous()

        cells, codes = seed_major(cells), seed_major(codes)
        returns = seed_major(returns).view(seeds, -1)
        taken = seed_major(actions).view(seeds, -1, 1)
        samples, p = returns.shape[1], self.params
        old, out = None, {}
        for epoch in range(p.epochs):
            log_probs, values, _ = self.nets.evaluate(cells, codes)
            log_pi = log_probs.gather(-1, taken)[..., 0]
            if old is None:
                old = log_pi.detach()
            ratio = each(torch.exp, log_pi - old)
            advantage = returns - values.detach()
            clipped = ratio.clamp(1 - p.clip, 1 + p.clip)
            policy = -torch.minimum(ratio * advantage, clipped * advantage)
            value = 0.5 * (values - returns) ** 2
            loss = sum((row.sum() for row in (policy + value).unbind(0)),
                       start=values.new_zeros(())) / samples
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                if epoch == 0:
                    out["policy_loss"] = _per_seed(policy)
                    out["value_loss"] = _per_seed(value)
                if epoch == p.epochs - 1:
                    out["approx_kl"] = _per_seed(old - log_pi)
                    out["clip_fraction"] = _per_seed(((ratio - 1).abs() > p.clip).double())
        self.nets.changed()
        return out

    def state_dict(self) -> dict[str, Any]:
        """Every seed's parameters and the optimiser (for checkpoints)."""
        return {"params": [self.nets.state_dict(s) for s in range(self.nets.seeds)],
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        for seed, params in enumerate(state["params"]):
            self.nets.load_state_dict(seed, params)
        self.optimizer.load_state_dict(state["optimizer"])


def _per_seed(x: torch.Tensor) -> torch.Tensor:
    """Mean of every seed's row of (S, N), seed by seed, float64: (S,)."""
    return torch.stack([row.double().mean() for row in x.detach().unbind(0)])
