"""M-FOS meta-training speed in IPD-Analytic: seconds per meta-episode and peak memory.

Run by hand (not a test): ``.venv/bin/python benchmarks/bench_mfos.py [--opponent nl]
[--episodes 3] [--batch 4096] [--threads 2]``. Plays and learns full meta-episodes at the
spec's sizes (batch 4096, 100 meta-steps, 4 PPO epochs over all 409,600 samples, hidden 256)
through the real trainer code and reports the rollout and update times separately. Also
times M-MAML meta-training (outer iterations of the shipped config) with ``--mmaml``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from recip_tourney.agents.gaussian_ppo import GaussianActorCritic, GaussianPPO
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


def bench_mfos(opponent: str, episodes: int, batch: int, steps: int) -> None:
    """Time full meta-episodes (rollout + PPO update) against ``opponent``."""
    game = AnalyticIPD(0.96, torch.float32)
    generator = torch.Generator().manual_seed(0)
    net = GaussianActorCritic(10, 5, 256, generator, torch.float32)
    ppo = GaussianPPO(net)
    player = Player(opponent, DEFAULT_PARAMS.get(opponent, {}))
    rollouts, updates = [], []
    for _ in range(episodes + 1):  # the first one warms up
        began = time.perf_counter()
        opp = new_opponent(player, game, 1.0, batch, [])
        rollout, reward, opp_reward = play_against_learner(
            net, opp, game, batch=batch, steps=steps, init_std=1.0, generator=generator
        )
        middle = time.perf_counter()
        ppo.update(rollout)
        rollouts.append(middle - began)
        updates.append(time.perf_counter() - middle)
    r, u = sum(rollouts[1:]) / episodes, sum(updates[1:]) / episodes
    print(f"M-FOS vs {opponent}: batch {batch}, {steps} meta-steps, 4 epochs, hidden 256")
    print(f"  rollout {r:.3f} s + PPO update {u:.3f} s = {r + u:.3f} s per meta-episode "
          f"(mean of {episodes}); 1024 meta-episodes = {(r + u) * 1024 / 60:.1f} min")
    print(f"  peak RSS {peak_rss_mib():.0f} MiB")


def bench_mmaml(iterations: int) -> None:
    """Time M-MAML outer iterations at the shipped sizes (10 inits, 100 unroll)."""
    began = time.perf_counter()
    mmaml.meta_train(iterations=iterations, batch=mmaml.DEFAULT_BATCH)
    per = (time.perf_counter() - began) / iterations
    print(f"M-MAML meta-training: {per:.3f} s per outer iteration (10 inits x batch "
          f"{mmaml.DEFAULT_BATCH}, 100 unrolled steps); 1000 iterations = {per * 1000 / 60:.1f} "
          f"min; peak RSS {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opponent", default="nl", choices=sorted(DEFAULT_PARAMS))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mmaml", type=int, default=0, help="also time N M-MAML iterations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    bench_mfos(args.opponent, args.episodes, args.batch, args.steps)
    if args.mmaml:
        bench_mmaml(args.mmaml)


if __name__ == "__main__":
    main()
