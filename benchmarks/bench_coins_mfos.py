"""Coins M-FOS training speed: seconds per meta-episode and peak memory.

Run by hand (not a test)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_mfos.py           # spec sizes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_mfos.py --meta-episodes 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_mfos.py --batch 64 --profile

Plays real meta-episodes of the trainer (:mod:`recip_tourney.pretrain.mfos_coins`) against a
fresh opponent from the paper config (default ``nl``: H = 32, 40 epochs, one PPO update per
inner episode) at the spec's sizes: ``train_batch`` 512 games, 16 inner episodes of 32
steps, M-FOS n = 16 and K = 16 epochs, float32, one torch thread. Reports per meta-episode
the wall time split into M-FOS acting (+ conditioning), the opponent's acting and updates
(the rest of the match), and M-FOS's PPO update; then the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time
from collections import defaultdict

import torch

from recip_tourney.config import load_config
from recip_tourney.pretrain import mfos_coins as training
from recip_tourney.tournament.schedule import Player


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--inner", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--opponent", default="nl")
    parser.add_argument("--meta-episodes", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config("coins", "paper")
    key = {
        "seed": 1,
        "settings": {"steps": args.steps, "grid": 3, "layout": "egocentric", "dtype": "float32"},
        "mfos": {**cfg.agent_params["mfos"], "inner_episodes": args.inner,
                 "train_batch": args.batch, "epochs": args.epochs, "hidden": args.hidden},
    }
    key["mfos"].pop("train_seed")
    (learner,) = training._learners(key, 1)
    settings = training.settings_of(key)
    opponent = Player(args.opponent, cfg.agent_params.get(args.opponent, {}))
    clock: dict[str, float] = defaultdict(float)

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock[name] += time.perf_counter() - start
        return wrapper

    learner.act = timed("mfos_act", learner.act)
    learner.end_episode = timed("mfos_condition", learner.end_episode)
    print(f"M-FOS vs {args.opponent}: B {args.batch}, {args.inner} x {args.steps} steps, "
          f"n {args.hidden}, K {args.epochs}, table {learner.nets.table}")
    profiler = cProfile.Profile() if args.profile else None
    for episode in range(args.meta_episodes):
        clock.clear()
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        reward, other = training.play_meta_episode([learner], opponent, settings,
                                                   training._seed(key, episode), args.inner)
        played = time.perf_counter() - start
        start = time.perf_counter()
        learner.update()
        updated = time.perf_counter() - start
        if profiler:
            profiler.disable()
        others = played - clock["mfos_act"] - clock["mfos_condition"]
        print(f"meta-episode {episode}: {played + updated:.1f} s = M-FOS acting "
              f"{clock['mfos_act']:.1f} + conditioning {clock['mfos_condition']:.1f} + "
              f"opponent and game {others:.1f} + M-FOS update {updated:.1f} "
              f"(reward {reward:.3f}, opponent {other:.3f})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
