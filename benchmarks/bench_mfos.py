"""M-FOS meta-training speed in IPD-Analytic: seconds per meta-episode and peak memory.

Run by hand (not a test): ``.venv/bin/python benchmarks/bench_mfos.py [--opponent nl]
[--episodes 3] [--batch 4096] [--threads 2] [--device cpu|cuda|auto] [--seeds 1]
[--json PATH]``. Plays and learns full meta-episodes at the spec's sizes (batch 4096, 100
meta-steps, 4 PPO epochs over all 409,600 samples, hidden 256) through the real trainer
code and reports the rollout and update times separately, after one untimed meta-episode.
On a GPU the trainer's numerics are used (deterministic algorithms), the clocks are read
after ``torch.cuda.synchronize``, and the peak GPU memory torch allocated is reported. An
M-FOS training is one seed (trainings are not batched): ``--seeds N`` times N trainings of
different seeds in turn and reports their mean. Also times M-MAML meta-training (outer
iterations of the shipped config) with ``--mmaml``. ``--json PATH`` writes one row per
workload for ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from bench_report import row, sync, write

from recip_tourney.agents.gaussian_ppo import GaussianActorCritic, GaussianPPO
from recip_tourney.device import DEVICE_CHOICES, describe, resolve_device_name
from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.pretrain import mmaml
from recip_tourney.pretrain.mfos import new_opponent, play_against_learner
from recip_tourney.tournament.schedule import Player

DEFAULT_PARAMS = {
    "nl": {"lr": 1.0},
    "lola": {"lr": 1.0, "lookahead": 1.0},
    "reciprocator": {},
}


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_mfos(
    opponent: str, episodes: int, batch: int, steps: int, device: str, seed: int = 0
) -> tuple[float, float]:
    """Mean seconds of the rollout and of the PPO update of a meta-episode vs ``opponent``."""
    game = AnalyticIPD(0.96, torch.float32, device)
    generator = torch.Generator().manual_seed(seed)
    net = GaussianActorCritic(10, 5, 256, generator, torch.float32, device)
    ppo = GaussianPPO(net)
    player = Player(opponent, DEFAULT_PARAMS.get(opponent, {}))
    rollouts, updates = [], []
    for _ in range(episodes + 1):  # the first one warms up
        sync(device)
        began = time.perf_counter()
        opp = new_opponent(player, game, 1.0, batch, [])
        rollout, reward, opp_reward = play_against_learner(
            net, opp, game, batch=batch, steps=steps, init_std=1.0, generator=generator
        )
        sync(device)
        middle = time.perf_counter()
        ppo.update(rollout)
        sync(device)
        rollouts.append(middle - began)
        updates.append(time.perf_counter() - middle)
    return sum(rollouts[1:]) / episodes, sum(updates[1:]) / episodes


def bench_mmaml(iterations: int, device: str) -> float:
    """Seconds per M-MAML outer iteration at the shipped sizes (10 inits, 100 unroll)."""
    mmaml.meta_train(iterations=1, batch=mmaml.DEFAULT_BATCH, device=device)  # warm-up
    sync(device)
    began = time.perf_counter()
    mmaml.meta_train(iterations=iterations, batch=mmaml.DEFAULT_BATCH, device=device)
    sync(device)
    return (time.perf_counter() - began) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opponent", default="nl", choices=sorted(DEFAULT_PARAMS))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    parser.add_argument("--seeds", type=int, default=1, help="trainings timed in turn")
    parser.add_argument("--mmaml", type=int, default=0, help="also time N M-MAML iterations")
    parser.add_argument("--json", default=None, help="write the figures here (JSON rows)")
    args = parser.parse_args()
    device = resolve_device_name(args.device)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if device == "cuda":  # as the trainer runs there (recip_tourney.pretrain.artifacts)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.cuda.reset_peak_memory_stats()
    print(f"{describe(device)}, torch {torch.__version__}")
    times = [bench_mfos(args.opponent, args.episodes, args.batch, args.steps, device, seed)
             for seed in range(args.seeds)]
    r = sum(t[0] for t in times) / args.seeds
    u = sum(t[1] for t in times) / args.seeds
    rows = [row(f"ipd-analytic mfos pretraining vs {args.opponent}, per meta-episode "
                f"(batch {args.batch}, {args.steps} steps, 4 epochs)", r + u, device,
                rollout_s=r, update_s=u, seeds=args.seeds, episodes=args.episodes)]
    print(f"M-FOS vs {args.opponent}: batch {args.batch}, {args.steps} meta-steps, 4 epochs, "
          "hidden 256")
    print(f"  rollout {r:.3f} s + PPO update {u:.3f} s = {r + u:.3f} s per meta-episode "
          f"(mean of {args.episodes} x {args.seeds} seed(s)); 1024 meta-episodes = "
          f"{(r + u) * 1024 / 60:.1f} min")
    if rows[0]["peak_gpu_mib"] is not None:
        print(f"  peak GPU memory {rows[0]['peak_gpu_mib']:.0f} MiB")
    print(f"  peak RSS {peak_rss_mib():.0f} MiB")
    if args.mmaml:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        per = bench_mmaml(args.mmaml, device)
        rows.append(row(f"ipd-analytic mmaml meta-training, per outer iteration (10 inits x "
                        f"batch {mmaml.DEFAULT_BATCH}, 100 steps)", per, device,
                        iterations=args.mmaml))
        print(f"M-MAML meta-training: {per:.3f} s per outer iteration (10 inits x batch "
              f"{mmaml.DEFAULT_BATCH}, 100 unrolled steps); 1000 iterations = "
              f"{per * 1000 / 60:.1f} min; peak RSS {peak_rss_mib():.0f} MiB")
    write(args.json, rows)


if __name__ == "__main__":
    main()
