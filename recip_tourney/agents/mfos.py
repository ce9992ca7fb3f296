"""M-FOS in IPD-Analytic: a PPO meta-policy that picks its whole next policy each game."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from recip_tourney.agents.base import (
    AnalyticAgent,
    MatchContext,
    PairingContext,
    Params,
    agent_class,
)
from recip_tourney.agents.gaussian_ppo import GaussianActorCritic
from recip_tourney.device import upload
from recip_tourney.envs.ipd_analytic import View
from recip_tourney.pretrain import mfos as training
from recip_tourney.pretrain.artifacts import ArtifactSpec
from recip_tourney.registry import register_agent
from recip_tourney.tournament.schedule import stable_hash


class MFOSParams(Params):
    """Parameters of :class:`MFOS`'s training (defaults: spec 5.2 and 5.3)."""

    meta_episodes: int = Field(1024, gt=0, description="PPO updates (one per meta-episode)")
    train_batch: int = Field(4096, gt=0, description="parallel games per meta-episode")
    hidden: int = Field(256, gt=0, description="hidden units of actor and critic")
    lr: float = Field(0.002, gt=0.0, description="Adam step size against learners")
    self_play_lr: float = Field(0.0002, gt=0.0, description="Adam step size in self-play")
    meta_gamma: float = Field(0.99, gt=0.0, le=1.0, description="meta-discount")
    epochs: int = Field(4, gt=0, description="PPO epochs per update")
    clip: float = Field(0.2, gt=0.0, description="PPO ratio clip")
    entropy: float = Field(0.01, ge=0.0, description="entropy bonus")
    curriculum_decay: float = Field(0.0015, gt=0.0, description="self-play curriculum step")
    train_seeds: int = Field(1, gt=0, description="independent trainings per opponent; "
                             "tournament seed i plays the one of index i mod train_seeds")
    train_seed: int = Field(0, ge=0, description="base seed of the trainings")
    reciprocator_swap: bool = Field(
        False,
        description="reproduce the reward half of the reference's M-FOS-vs-Reciprocator swap "
        "(spec 7.5, quirk 2): M-FOS trained on the Reciprocator's return (forensic use only; "
        "the Reciprocator's baselines stay correct)",
    )


_TRAINING_KEYS = ("meta_episodes", "train_batch", "hidden", "lr", "self_play_lr", "meta_gamma",
                  "epochs", "clip", "entropy", "curriculum_decay", "reciprocator_swap")
_SETTINGS_KEYS = ("gamma", "updates", "init_std", "dtype")


def training_specs(pairing: PairingContext) -> list[ArtifactSpec]:
    """The M-FOS trainings behind ``pairing``, one per training seed."""
    params, against = pairing.me.params, pairing.opponent
    settings = {k: pairing.settings[k] for k in _SETTINGS_KEYS}
    key: dict[str, Any] = {
        "game": "ipd-analytic",
        "settings": settings,
        "mfos": {k: params[k] for k in _TRAINING_KEYS},
    }
    requires: tuple[ArtifactSpec, ...] = ()
    if against.name == "mfos":
        # both players are the same meta-learner: the self-play curriculum's artifact
        key["against"] = {"name": "mfos", "params": {}}
        key["curriculum_opponent"] = pairing.agent_params.get("nl", {"lr": 1.0})
        what = "M-FOS self-play"
    else:
        key["against"] = {"name": against.name, "params": against.params}
        requires = tuple(agent_class("ipd-analytic", against.name).artifacts(pairing.swap()))
        what = f"M-FOS vs {against.name}"
    specs = []
    for i in range(params["train_seeds"]):
        seed = int(stable_hash(["mfos", key["against"], params["train_seed"], i], 15), 16)
        specs.append(
            ArtifactSpec(
                "mfos",
                {**key, "seed": seed},
                f"{what}, training seed {i}",
                requires,
                f"recip-tourney pretrain mfos --against {against.name}",
            )
        )
    return specs


@register_agent(
    "mfos",
    games=("ipd-analytic",),
    params=MFOSParams,
    learns=True,
    reference="Lu, Willi, de Witt & Foerster, Model-Free Opponent Shaping (ICML 2022)",
    needs_pretraining=True,
)
class MFOS(AnalyticAgent):
    """M-FOS: a meta-policy trained by PPO to shape the learning of its opponent.

    Each game it sees both players' last policies and samples its whole next memory-one
    policy from a Gaussian; it was trained over whole learning runs of the opponent
    (one artifact per opponent type, by ``recip-tourney pretrain mfos --against X``), so it
    maximises its return over the run, not per game, e.g. by extorting naive learners.
    """

    meta_game = True

    def prepare(self, match: MatchContext) -> None:
        """Load the trained meta-policies (onto the game's device) and one sampling
        generator per seed (on the CPU)."""
        # a self-play artifact holds both players; the second mover plays player 1
        two = "player1" in match.artifacts[0]
        key = "player1" if two and match.role == "opponent" else "player0"
        self._nets = []
        for slot in match.seeds or ():
            state = match.artifacts[slot.index % len(match.artifacts)][key]
            hidden = state["actor.0.weight"].shape[0]
            net = GaussianActorCritic(10, 5, hidden, torch.Generator(), self.game.dtype,
                                      self.device)
            net.load_state_dict(state)
            self._nets.append(net)
        self._generators = [
            torch.Generator().manual_seed(int(stable_hash([slot.seed, match.role, "mfos"], 15), 16))
            for slot in match.seeds
        ]
        self._games = match.games_per_seed

    def update(self, view: View, other_next: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the next policy from the meta-policy, seed by seed.

        Each seed's noise comes from its own generator on the CPU; all of it travels to the
        device in one copy.
        """
        state = training.meta_state(view.own, view.other)
        games = self._games
        draws = [torch.randn(games, 5, generator=generator, dtype=torch.float64, device="cpu")
                 for generator in self._generators]
        noise = upload(torch.cat(draws).to(self.game.dtype), self.device)
        actions = []
        for i, net in enumerate(self._nets):
            rows = slice(i * games, (i + 1) * games)
            actions.append(net.act(state[rows], noise[rows])[0])
        return torch.cat(actions).T.contiguous()

    @classmethod
    def artifacts(cls, pairing: PairingContext) -> list[ArtifactSpec]:
        """One trained meta-policy per training seed, for this opponent."""
        return training_specs(pairing)
