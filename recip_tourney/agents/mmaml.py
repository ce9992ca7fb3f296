"""M-MAML in IPD-Analytic: a naive learner that starts from meta-learned initial policies."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from recip_tourney.agents.base import MatchContext, PairingContext
from recip_tourney.agents.naive import NaiveLearner, NaiveParams
from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.pretrain import mmaml as meta
from recip_tourney.pretrain.artifacts import ArtifactSpec, Training, register_trainer
from recip_tourney.registry import register_agent

#: Bump when a change alters what a meta-training produces.
VERSION = "1"


class MMAMLParams(NaiveParams):
    """Parameters of :class:`MMAML`: its tournament step size and its meta-training."""

    init: Literal["trained", "published"] = Field(
        "published",
        description="published: the ten initialisations of the M-FOS repository (the paper's "
        "numbers); trained: meta-trained by this project (`recip-tourney pretrain mmaml`)",
    )
    n_inits: int = Field(10, gt=0, description="independent meta-trainings (initialisations)")
    iterations: int = Field(1000, gt=0, description="outer Adam iterations")
    unroll: int = Field(100, gt=0, description="inner updates differentiated through")
    meta_batch: int = Field(meta.DEFAULT_BATCH, gt=0, description="N(0,1) opponents per init "
                            "and outer iteration")
    outer_lr: float = Field(0.01, gt=0.0, description="Adam step size of the meta-training")
    train_seed: int = Field(0, ge=0, description="seed of the meta-training")


def _training_spec(params: dict[str, Any], settings: dict[str, Any]) -> ArtifactSpec:
    keys = ("n_inits", "iterations", "unroll", "meta_batch", "outer_lr", "train_seed")
    return ArtifactSpec(
        "mmaml",
        {
            "game": "ipd-analytic",
            "settings": {k: settings[k] for k in ("gamma", "init_std", "dtype")},
            "mmaml": {k: params[k] for k in keys},
        },
        f"M-MAML meta-training ({params['n_inits']} initialisations, seed {params['train_seed']})",
        pretrain_command="recip-tourney pretrain mmaml",
    )


@register_trainer("mmaml", version=VERSION, steps=lambda spec: spec.key["mmaml"]["iterations"])
def train(training: Training) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Meta-train all M-MAML initialisations of ``training.spec`` (one batch, exact)."""
    settings, p = training.spec.key["settings"], training.spec.key["mmaml"]
    result = meta.meta_train(
        n_inits=p["n_inits"], iterations=p["iterations"], unroll=p["unroll"],
        batch=p["meta_batch"], outer_lr=p["outer_lr"], init_std=settings["init_std"],
        gamma=settings["gamma"], dtype=getattr(torch, settings["dtype"]), seed=p["train_seed"],
        callback=training.on_step, device=training.device,
    )  # fmt: skip
    return {"logits": result.logits, "own_lr": result.own_lr}, result.log


@register_agent(
    "mmaml",
    games=("ipd-analytic",),
    params=MMAMLParams,
    learns=True,
    reference="Kim et al., A Policy Gradient Algorithm for Learning to Learn in Multiagent "
    "RL (ICML 2021), as improved in Lu et al. 2022's code",
    needs_pretraining=True,
)
class MMAML(NaiveLearner):
    """M-MAML: a naive learner (lr 1) started from meta-learned initial policies.

    The initial logits were meta-trained by differentiating a whole 100-update learning run
    against naive learners. A pairing plays from each of the ``n_inits`` initialisations
    (each with the full batch of games), so its numbers average over them, as the paper's
    protocol does.
    """

    def __init__(self, params: MMAMLParams, game: AnalyticIPD, init_std: float = 1.0) -> None:
        super().__init__(params, game, init_std)
        self.replicas = 10 if params.init == "published" else params.n_inits
        self._starts: torch.Tensor | None = None

    @classmethod
    def artifacts(cls, pairing: PairingContext) -> list[ArtifactSpec]:
        """The meta-training artifact, unless the published initialisations are used."""
        if pairing.me.params.get("init") == "published":
            return []
        return [_training_spec(pairing.me.params, pairing.settings)]

    @classmethod
    def trainable_artifacts(cls, pairing: PairingContext) -> list[ArtifactSpec]:
        """Our meta-training, whichever initialisations the tournament is set to use."""
        return [_training_spec(pairing.me.params, pairing.settings)]

    def prepare(self, match: MatchContext) -> None:
        """Take the initialisations: meta-trained (artifact) or published (package data),
        moved to the game's device."""
        if self.params.init == "published":
            starts = meta.published_initialisations()
        else:
            starts = match.artifacts[0]["logits"]
        self._starts = starts.to(device=self.device, dtype=torch.float64)

    def initial_logits(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Each initialisation's logits for a contiguous block of ``batch / replicas`` games."""
        if self._starts is None:
            raise RuntimeError("M-MAML must be prepared with its initialisations first")
        block = torch.arange(batch, device=self._starts.device) * self._starts.shape[0] // batch
        return self._starts.index_select(0, block).T.contiguous().to(self.game.dtype)
