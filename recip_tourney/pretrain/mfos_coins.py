"""Training Coins M-FOS (rollout spec 4.6; IPD-Analytic spec 5.3 and 9).

A meta-episode is one Coins match of ``inner_episodes`` episodes against a fresh opponent
built from its roster entry, played by the tournament's own protocol
(:class:`~recip_tourney.tournament.coins.CoinsMatch`, so a Reciprocator gets its influence
estimator and warm-up exactly as in a match): M-FOS is slot 0 and the opponent slot 1, with
``train_batch`` games of the settings' ``steps`` steps per episode, one seed, and every
match draw (the games, the per-step noise, the opponent's initial weights) from a seed
derived from the training seed and the meta-episode. After every episode the opponent
learns and M-FOS computes its next ``theta``; after the last, M-FOS makes its PPO update
(:class:`~recip_tourney.agents.coins_mfos.MFOSLearner`). The match is built with a scripted
placeholder in M-FOS's slot (``random``, which draws nothing when built) that is then
replaced by the learner, so the protocol needs no hook. Scripted opponents (``random``,
``greedy``) are simply opponents that do not learn.

Self-play (IPD-Analytic spec 5.3, annealed by ``curriculum_decay`` = 0.005 per
meta-episode as spec 9 says for Coins): two M-FOS learners; before each meta-episode
``lambda = 1 - decay (episode + 1)``; with probability ``1 - lambda`` they play each other
(player 0 in slot 0) and both learn, otherwise each plays its own meta-episode against a
fresh naive learner with the config's ``nl`` parameters. The artifact holds both players.

Log: one row per meta-episode with ``reward`` and ``opponent_reward``, each the mean
*reward per step* over the meta-episode's inner episodes, steps and games, as the
IPD-Analytic trainer logs (and ``recip-tourney plot`` labels) them; the Coins tables' episode
return is ``steps`` times that. In self-play meta-episodes they are player 0's and player
1's, otherwise each player's against its own NL. Training runs on the training's device
(``Training.device``, the CPU by default; every match draw is still made on the CPU, seed by
seed), which is not part of the key; the artifact and the checkpoints hold CPU tensors, so
they load on any device. A checkpoint (networks, optimisers, generator, log) is written
every :data:`CHECKPOINT_EVERY` meta-episodes, and an interrupted training resumes to the
same artifact (on the CPU: to the same bits).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from recip_tourney.agents.coins_mfos_nets import table_pays
from recip_tourney.pretrain.artifacts import ArtifactSpec, Training, register_trainer
from recip_tourney.tournament.checkpoint import relocate
from recip_tourney.tournament.match import release_free_memory
from recip_tourney.tournament.schedule import MatchSpec, Player, SeedSlot, stable_hash

KIND = "mfos-coins"
CHECKPOINT_EVERY = 16
#: Bump when a change alters what a training produces (old artifacts are then not reused).
VERSION = "1"
PLACEHOLDER = Player("random", {})


def _seed(key: dict[str, Any], *parts: Any) -> int:
    return int(stable_hash([key["seed"], *parts], 15), 16)


def settings_of(key: dict[str, Any], device: torch.device | str = "cpu"):  # noqa: ANN201
    """The Coins settings (a ``CoinsSettings``) of a training: the key's, ``train_batch``
    games, on ``device``."""
    from recip_tourney.tournament.coins import CoinsSettings  # noqa: PLC0415 - import cycle

    params = key["mfos"]
    return CoinsSettings(**key["settings"], batch=params["train_batch"],
                         episodes=params["inner_episodes"], table_last=1,
                         device=torch.device(device).type)


def training_device(training: Training) -> torch.device:
    """The device a training runs on (``Training.device``; the CPU where it has none)."""
    return torch.device(getattr(training, "device", torch.device("cpu")))


def play_meta_episode(
    learners: list, opponent: Player | None, settings, seed: int, inner: int,  # noqa: ANN001
    artifacts: list[dict[str, Any]] | None = None, seeds: int = 1,
) -> tuple[float, float]:
    """One meta-episode: ``inner`` episodes of a fresh match, learner 0 in slot 0 and the
    opponent (a fresh ``opponent`` built from the registry, or learner 1) in slot 1.

    Returns the mean rewards per step of slot 0 and slot 1. The learners keep the inner
    episodes; the caller makes their updates. A training plays one seed, ``seed``; with
    ``seeds`` > 1 (learners of as many seeds: benchmarks) seed ``i`` is ``seed + i`` and the
    rewards are the seeds' mean.
    """
    from recip_tourney.tournament.coins import CoinsMatch  # noqa: PLC0415 - import cycle

    slots = tuple(SeedSlot(i, seed + i, f"meta-episode-{i}" if i else "meta-episode")
                  for i in range(seeds))
    spec = MatchSpec("coins", settings.model_dump(), "", PLACEHOLDER, opponent or PLACEHOLDER,
                     slots, artifacts={"opponent": artifacts} if artifacts else {})
    match = CoinsMatch(spec, settings)
    players = list(learners) + list(match.players[len(learners):])
    match.players = tuple(players)
    for slot, learner in enumerate(learners):
        learner.seat(slot)
    totals = torch.zeros(2, dtype=torch.float64, device=match.device)
    for _ in range(inner):
        stats = match.play_episode()
        totals += torch.stack((stats["reward"].mean(), stats["opponent_reward"].mean()))
    # read once per meta-episode (the only wait for the device)
    mean = (totals / (inner * settings.steps)).tolist()  # episode returns -> per step
    return mean[0], mean[1]


def _learners(key: dict[str, Any], count: int, device: torch.device | str = "cpu") -> list:
    # the agent module imports this one (to register the trainer): import it late
    from recip_tourney.agents.coins_agent import CoinsSetup  # noqa: PLC0415
    from recip_tourney.agents.coins_mfos import MFOSCoinsParams, MFOSLearner  # noqa: PLC0415

    params = MFOSCoinsParams(**key["mfos"])
    settings = key["settings"]
    dtype, grid = getattr(torch, settings["dtype"]), settings["grid"]
    # the table pays when a meta-episode has more samples than the table has rows
    table = table_pays(grid, params.inner_episodes * settings["steps"] * params.train_batch)
    return [
        MFOSLearner(params, CoinsSetup([torch.Generator().manual_seed(_seed(key, "init", i))],
                                       dtype, torch.device(device), 2, grid, me=i), table)
        for i in range(count)
    ]


def _resume(training: Training, generator: torch.Generator, learners: list) -> tuple[int, list]:
    state = training.resume()
    if state is None:
        return 0, []
    generator.set_state(state["generator"])
    for learner, saved in zip(learners, state["learners"], strict=True):
        learner.load_state_dict(saved)
    return int(state["step"]), list(state["log"])


def _checkpoint(training: Training, step: int, generator: torch.Generator, learners: list,
                log: list) -> None:
    if step % CHECKPOINT_EVERY == 0 and step < training.total:
        learners_state = relocate([x.state_dict() for x in learners], "cpu")
        training.checkpoint({"step": step, "generator": generator.get_state(),
                             "learners": learners_state, "log": log})


def episodes(spec: ArtifactSpec) -> int:
    """Meta-episodes of the training of ``spec`` (the progress bar's total)."""
    return int(spec.key["mfos"]["meta_episodes"])


@register_trainer(KIND, version=VERSION, steps=episodes)
def train(training: Training) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train the Coins M-FOS artifact of ``training.spec`` (against an opponent, or self-play)."""
    key = training.spec.key
    device = training_device(training)
    self_play = key["against"]["name"] == "mfos"
    learners = _learners(key, 2 if self_play else 1, device)
    generator = torch.Generator().manual_seed(int(key["seed"]))
    settings, inner = settings_of(key, device), int(key["mfos"]["inner_episodes"])
    decay = float(key["mfos"]["curriculum_decay"])
    artifacts = [training.requirements[r.digest] for r in training.spec.requires]
    start, log = _resume(training, generator, learners)
    for episode in range(start, episodes(training.spec)):
        began = time.perf_counter()
        row: dict[str, Any] = {"episode": episode}
        if not self_play:
            against = Player(key["against"]["name"], key["against"]["params"])
            reward, other = play_meta_episode(learners, against, settings,
                                              _seed(key, episode), inner, artifacts)
        else:
            weight = 1.0 - decay * (episode + 1)  # lambda, lowered first
            row["self_play"] = bool(torch.rand(1, generator=generator, dtype=torch.float64,
                                               device=generator.device) >= weight)
            if row["self_play"]:
                reward, other = play_meta_episode(learners, None, settings,
                                                  _seed(key, episode), inner)
            else:
                nl = Player("nl", key["curriculum_opponent"])
                reward, other = (
                    play_meta_episode([learner], nl, settings, _seed(key, episode, i), inner)[0]
                    for i, learner in enumerate(learners)
                )
        for learner in learners:
            learner.update()
        release_free_memory()  # an update frees ~1 GB of autograd tensors; keep the heap small
        row.update(reward=reward, opponent_reward=other,
                   seconds=round(time.perf_counter() - began, 3))
        log.append(row)
        training.on_step(row)
        _checkpoint(training, episode + 1, generator, learners, log)
    payload = {f"player{i}": x.nets.state_dict(0) for i, x in enumerate(learners)}
    return relocate(payload, "cpu"), log  # CPU tensors: an artifact loads on any device
