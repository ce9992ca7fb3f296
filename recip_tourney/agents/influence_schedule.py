"""When the Coins value-influence estimator is fit, and which samples each step of a fit uses.

Rollout spec 5.3.4: the estimator is fit after episodes 1, 2, 4, 6, ... (:func:`fit_due`).
A fit draws, per seed and model, a fresh subsample without replacement of the buffer's
samples (:func:`draw_subsamples`), then runs ``epochs`` epochs, each a fresh shuffle of
every subsample cut into minibatches (:func:`draw_epoch`). Step ``j`` of an epoch trains
every model and seed on its ``j``-th minibatch (:class:`StepPlan`, :func:`epoch_index`); a
model whose minibatches are used up (a smaller dataset) sits the remaining steps out. All
draws of a seed come from its own generator, in a fixed order, on the generator's device
(the CPU); a fit's plan and each epoch's minibatches are then moved to the estimator's
device in one copy each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from recip_tourney.agents.influence_models import MODELS
from recip_tourney.device import upload


def fit_due(episode: int, init_episodes: int = 2, period: int = 2) -> bool:
    """Whether the estimator is fit after 1-based episode ``episode`` (spec 5.3.4).

    ``episode <= init_episodes or episode % period == 0``: episodes 1, 2, 4, 6, 8, ...
    """
    return episode <= init_episodes or episode % period == 0


def subsample_sizes(samples: int, rows: int, transitions: int) -> list[int]:
    """Samples per fit of each model (:data:`~recip_tourney.agents.influence_models.MODELS`
    order): ``samples``, or the whole dataset if smaller (``rows`` samples for V and R,
    ``transitions`` for P)."""
    return [min(samples, rows if m[0] in "VR" else transitions) for m in MODELS]


def draw_subsamples(generator: torch.Generator, rows: int, transitions: int,
                    sizes: list[int]) -> list[torch.Tensor]:
    """One seed's subsample of each model (:data:`~recip_tourney.agents.influence_models.
    MODELS` order): the first ``sizes[m]`` entries of a random permutation of the model's
    dataset (``rows`` samples for V and R, ``transitions`` for P)."""
    return [torch.randperm(rows if m[0] in "VR" else transitions, generator=generator,
                           device=generator.device)[:k]
            for m, k in zip(MODELS, sizes, strict=True)]


def draw_epoch(generator: torch.Generator, subsamples: list[torch.Tensor]
               ) -> list[torch.Tensor]:
    """One seed's epoch: each model's subsample in a fresh random order (minibatch
    ``j`` is entries ``j mb`` to ``(j + 1) mb``)."""
    return [sub[torch.randperm(len(sub), generator=generator, device=generator.device)]
            for sub in subsamples]


@dataclass(frozen=True)
class StepPlan:
    """The steps of every epoch of a fit, for subsamples of ``sizes`` and minibatch ``mb``.

    Attributes
    ----------
    weights : Tensor, (steps, 7, mb)
        Each model's row weights at each step: 1 / rows of its minibatch, 0 on padding.
    active : list of list of bool
        ``active[j][m]``: whether model ``m`` has a minibatch at step ``j``.
    """

    weights: torch.Tensor
    active: list[list[bool]]

    @property
    def steps(self) -> int:
        """Steps per epoch: the most minibatches of any model."""
        return len(self.active)

    @classmethod
    def build(cls, sizes: list[int], minibatch: int, dtype: torch.dtype,
              device: torch.device | str = "cpu") -> StepPlan:
        """The plan of subsamples of ``sizes`` (one per model) cut into ``minibatch`` rows;
        its weights on ``device``."""
        mb, n_models = minibatch, len(sizes)
        per_model = [math.ceil(k / mb) for k in sizes]
        steps = max(per_model)
        weights = torch.zeros(n_models, steps * mb, dtype=dtype, device="cpu")
        for m, k in enumerate(sizes):
            for j in range(per_model[m]):
                lo, hi = j * mb, min(k, (j + 1) * mb)
                weights[m, lo:hi] = 1.0 / (hi - lo)
        weights = upload(weights.view(n_models, steps, mb).transpose(0, 1).contiguous(), device)
        active = [[j < per_model[m] for m in range(n_models)] for j in range(steps)]
        return cls(weights, active)


def epoch_index(generators: list[torch.Generator], subsamples: list[list[torch.Tensor]],
                rows: int, steps: int, minibatch: int, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """One epoch's minibatches of every model and seed as rows of the sample tables.

    Seed ``s`` draws its epoch (:func:`draw_epoch`) from ``generators[s]``, in seed order;
    its samples are rows ``s rows + i`` of the tables. Padding (past a model's subsample)
    points at the seed's first row and has weight 0 in the :class:`StepPlan`.

    Returns
    -------
    Tensor of long, (steps, 7, S, minibatch), on ``device`` (assembled on the CPU, where
    the generators draw, and copied once)
    """
    seeds, n_models, mb = len(generators), len(MODELS), minibatch
    offset = (torch.arange(seeds, device="cpu") * rows).view(1, seeds, 1)
    index = torch.zeros(n_models, seeds, steps * mb, dtype=torch.long, device="cpu")
    for s, g in enumerate(generators):
        for m, order in enumerate(draw_epoch(g, subsamples[s])):
            index[m, s, : len(order)] = order
    index = (index + offset).view(n_models, seeds, steps, mb).permute(2, 0, 1, 3)
    return upload(index.contiguous(), device)
