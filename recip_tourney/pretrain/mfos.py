"""Training M-FOS in IPD-Analytic (Lu et al. 2022, spec sections 5.1-5.3).

The meta-game against a learner: a meta-step is one exactly evaluated IPD game; the
meta-action is M-FOS's whole memory-one policy (5 unbounded logits); the meta-state is
``[sigmoid(M-FOS logits just played), sigmoid(opponent logits just played)]``; the
meta-reward is M-FOS's average reward per step. Each meta-episode starts from a fresh
opponent (N(0, 1) logits, or its own start such as M-MAML's), plays one unrecorded step with a
random M-FOS policy (the reference's ``reset``) and then ``updates`` meta-steps, after each of
which the opponent makes its own learning update against the policy M-FOS just played.
One PPO update follows every meta-episode.

Self-play (spec 5.3) trains two M-FOS agents with a curriculum: before each meta-episode
``lambda`` drops by ``curriculum_decay`` (from 1); with probability ``1 - lambda`` the two
play each other and both learn, otherwise each plays its own meta-episode against a naive
learner.

Every random draw comes from one generator seeded by the training seed, and a checkpoint
(networks, optimisers, generator, log) is written every :data:`CHECKPOINT_EVERY`
meta-episodes: an interrupted training resumes to the same result.

The training runs on ``training.device``: the generator stays on the CPU and its draws are
copied over; the host reads back one pair of mean rewards per meta-episode (the log row).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from recip_tourney.agents.base import AnalyticAgent, MatchContext, build_agent
from recip_tourney.agents.gaussian_ppo import GaussianActorCritic, GaussianPPO, Rollout
from recip_tourney.device import upload
from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.pretrain.artifacts import ArtifactSpec, Training, register_trainer
from recip_tourney.tournament.schedule import Player

GAME = "ipd-analytic"
STATE_DIM, ACTION_DIM = 10, 5
CHECKPOINT_EVERY = 16
#: Bump when a change alters what a training produces (old artifacts are then not reused).
VERSION = "2"


def _normal(
    shape: tuple[int, ...],
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal draws, made in float64 on the generator's device (the CPU) and cast
    (float32 and float64 runs agree), then copied to ``device``."""
    draw = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return upload(draw.to(dtype), device)


def meta_state(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``[sigmoid(own), sigmoid(other)]`` per game, (B, 10), from state-major (5, B) logits."""
    return torch.cat((torch.sigmoid(own).T, torch.sigmoid(other).T), dim=1)


def new_opponent(
    player: Player, game: AnalyticIPD, init_std: float, batch: int, artifacts: list[dict]
) -> AnalyticAgent:
    """A fresh opponent learner, prepared as in a match (its artifacts, one seed)."""
    agent = build_agent(GAME, player, game, init_std)
    agent.prepare(MatchContext("opponent", (), batch, artifacts))
    return agent


class _Recorder:
    """Pre-allocated time-major storage of one meta-episode's samples."""

    def __init__(
        self, steps: int, batch: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> None:
        self.states = torch.empty(steps, batch, STATE_DIM, dtype=dtype, device=device)
        self.actions = torch.empty(steps, batch, ACTION_DIM, dtype=dtype, device=device)
        self.log_probs = torch.empty(steps, batch, dtype=dtype, device=device)
        self.rewards = torch.empty(steps, batch, dtype=dtype, device=device)

    def put(self, t: int, state, action, log_prob, reward) -> None:  # noqa: ANN001
        self.states[t], self.actions[t] = state, action
        self.log_probs[t], self.rewards[t] = log_prob, reward

    def rollout(self) -> Rollout:
        return Rollout(
            self.states.reshape(-1, STATE_DIM),
            self.actions.reshape(-1, ACTION_DIM),
            self.log_probs.reshape(-1),
            self.rewards,
        )


def play_against_learner(
    net: GaussianActorCritic,
    opponent: AnalyticAgent,
    game: AnalyticIPD,
    *,
    batch: int,
    steps: int,
    init_std: float,
    generator: torch.Generator,
    swap_rewards: bool = False,
) -> tuple[Rollout, float, float]:
    """One meta-episode of M-FOS against a learner; returns samples and mean rewards.

    ``swap_rewards`` reproduces the reference's M-FOS-vs-Reciprocator bug (spec 7.5, quirk
    2): M-FOS is trained on its opponent's return. The returned means are always the true
    ``(M-FOS, opponent)`` average rewards per step.
    """
    dtype, device = game.dtype, game.device
    record = _Recorder(steps, batch, dtype, device)
    with torch.no_grad():
        theirs = opponent.initial_logits(batch, generator)
        mine = _normal((batch, ACTION_DIM), generator, dtype, device)
        mine = mine.mul_(init_std).T.contiguous()
        view = game.evaluate(mine, theirs)
        theirs_next = opponent.update(view.flip(), None)
        state = meta_state(mine, theirs)
        theirs = theirs_next
        totals = torch.zeros(2, dtype=torch.float64, device=device)
        for t in range(steps):
            noise = _normal((batch, ACTION_DIM), generator, dtype, device)
            action, log_prob = net.act(state, noise)
            mine = action.T.contiguous()
            view = game.evaluate(mine, theirs)
            own, other = view.reward_own, view.reward_other
            totals += torch.stack((own.mean(dtype=torch.float64), other.mean(dtype=torch.float64)))
            theirs_next = opponent.update(view.flip(), None)
            record.put(t, state, action, log_prob, other if swap_rewards else own)
            state = meta_state(mine, theirs)
            theirs = theirs_next
    mean = (totals / steps).tolist()
    return record.rollout(), mean[0], mean[1]


def play_self(
    nets: tuple[GaussianActorCritic, GaussianActorCritic],
    game: AnalyticIPD,
    *,
    batch: int,
    steps: int,
    init_std: float,
    generator: torch.Generator,
) -> tuple[tuple[Rollout, Rollout], float, float]:
    """One self-play meta-episode: both start from random logits, no step played."""
    dtype, device = game.dtype, game.device
    records = (_Recorder(steps, batch, dtype, device), _Recorder(steps, batch, dtype, device))
    shape = (batch, ACTION_DIM)
    with torch.no_grad():
        a = _normal(shape, generator, dtype, device).mul_(init_std).T.contiguous()
        b = _normal(shape, generator, dtype, device).mul_(init_std).T.contiguous()
        totals = torch.zeros(2, dtype=torch.float64, device=device)
        for t in range(steps):
            states = (meta_state(a, b), meta_state(b, a))
            act_a, lp_a = nets[0].act(states[0], _normal(shape, generator, dtype, device))
            act_b, lp_b = nets[1].act(states[1], _normal(shape, generator, dtype, device))
            a, b = act_a.T.contiguous(), act_b.T.contiguous()
            view = game.evaluate(a, b)
            r_a, r_b = view.reward_own, view.reward_other
            totals += torch.stack((r_a.mean(dtype=torch.float64), r_b.mean(dtype=torch.float64)))
            records[0].put(t, states[0], act_a, lp_a, r_a)
            records[1].put(t, states[1], act_b, lp_b, r_b)
    mean = (totals / steps).tolist()
    return (records[0].rollout(), records[1].rollout()), mean[0], mean[1]


def _setup(
    key: dict[str, Any], players: int, device: torch.device
) -> tuple[AnalyticIPD, torch.Generator, list]:
    settings, params = key["settings"], key["mfos"]
    dtype = getattr(torch, settings["dtype"])
    game = AnalyticIPD(settings["gamma"], dtype, device)
    generator = torch.Generator(device="cpu").manual_seed(int(key["seed"]))
    lr = params["self_play_lr"] if players == 2 else params["lr"]
    ppos = []
    for _ in range(players):
        net = GaussianActorCritic(STATE_DIM, ACTION_DIM, params["hidden"], generator, dtype,
                                  device)
        ppos.append(
            GaussianPPO(
                net,
                lr=lr,
                gamma=params["meta_gamma"],
                epochs=params["epochs"],
                clip=params["clip"],
                entropy=params["entropy"],
            )
        )
    return game, generator, ppos


def _resume(training: Training, generator: torch.Generator, ppos: list) -> tuple[int, list]:
    """Where an interrupted training stopped; its state is loaded onto the training's device
    (networks and optimisers), the generator stays on the CPU."""
    state = training.resume()
    if state is None:
        return 0, []
    generator.set_state(state["generator"])
    for ppo, saved in zip(ppos, state["ppo"], strict=True):
        ppo.load_state_dict(saved)
    return int(state["step"]), list(state["log"])


def _checkpoint(training: Training, step: int, generator, ppos: list, log: list) -> None:  # noqa: ANN001
    if step % CHECKPOINT_EVERY == 0 and step < training.total:
        training.checkpoint(
            {
                "step": step,
                "generator": generator.get_state(),
                "ppo": [p.state_dict() for p in ppos],
                "log": log,
            }
        )


def episodes(spec: ArtifactSpec) -> int:
    """Meta-episodes of the training of ``spec`` (the progress bar's total)."""
    return int(spec.key["mfos"]["meta_episodes"])


@register_trainer("mfos", version=VERSION, steps=episodes)
def train(training: Training) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train the M-FOS artifact of ``training.spec`` (against a learner, or self-play)."""
    key = training.spec.key
    if key["against"]["name"] == "mfos":
        return _train_self_play(training)
    game, generator, ppos = _setup(key, 1, training.device)
    settings, params = key["settings"], key["mfos"]
    against = Player(key["against"]["name"], key["against"]["params"])
    artifacts = [training.requirements[r.digest] for r in training.spec.requires]
    start, log = _resume(training, generator, ppos)
    for episode in range(start, episodes(training.spec)):
        began = time.perf_counter()
        opponent = new_opponent(against, game, settings["init_std"], params["train_batch"],
                                artifacts)
        rollout, reward, opp_reward = play_against_learner(
            ppos[0].net, opponent, game,
            batch=params["train_batch"], steps=settings["updates"],
            init_std=settings["init_std"], generator=generator,
            swap_rewards=params["reciprocator_swap"] and against.name == "reciprocator",
        )  # fmt: skip
        ppos[0].update(rollout)
        row = {"episode": episode, "reward": reward, "opponent_reward": opp_reward,
               "seconds": round(time.perf_counter() - began, 3)}  # fmt: skip
        log.append(row)
        training.on_step(row)
        _checkpoint(training, episode + 1, generator, ppos, log)
    return {"player0": ppos[0].net.state_dict()}, log


def _train_self_play(training: Training) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    key = training.spec.key
    game, generator, ppos = _setup(key, 2, training.device)
    settings, params = key["settings"], key["mfos"]
    curriculum = Player("nl", key["curriculum_opponent"])
    batch, steps, std = params["train_batch"], settings["updates"], settings["init_std"]
    start, log = _resume(training, generator, ppos)
    for episode in range(start, episodes(training.spec)):
        began = time.perf_counter()
        weight = 1.0 - params["curriculum_decay"] * (episode + 1)  # lambda, lowered first
        draw = torch.rand(1, generator=generator, dtype=torch.float64, device="cpu")
        self_play = bool(draw >= weight)  # a CPU draw: no wait for the device
        if self_play:
            rollouts, r0, r1 = play_self(
                (ppos[0].net, ppos[1].net), game,
                batch=batch, steps=steps, init_std=std, generator=generator,
            )  # fmt: skip
        else:
            results = [
                play_against_learner(
                    ppo.net, new_opponent(curriculum, game, std, batch, []), game,
                    batch=batch, steps=steps, init_std=std, generator=generator,
                )  # fmt: skip
                for ppo in ppos
            ]
            rollouts = (results[0][0], results[1][0])
            r0, r1 = results[0][1], results[1][1]
        for ppo, rollout in zip(ppos, rollouts, strict=True):
            ppo.update(rollout)
        row = {"episode": episode, "self_play": self_play, "reward": r0, "opponent_reward": r1,
               "seconds": round(time.perf_counter() - began, 3)}  # fmt: skip
        log.append(row)
        training.on_step(row)
        _checkpoint(training, episode + 1, generator, ppos, log)
    return {"player0": ppos[0].net.state_dict(), "player1": ppos[1].net.state_dict()}, log
