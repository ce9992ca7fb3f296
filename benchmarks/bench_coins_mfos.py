"""Coins M-FOS training speed: seconds per meta-episode and peak memory.

Run by hand (not a test)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_mfos.py           # spec sizes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_mfos.py --meta-episodes 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_mfos.py --batch 64 --profile
    .venv/bin/python benchmarks/bench_coins_mfos.py --device cuda --seeds 4 --json mfos.json

Plays real meta-episodes of the trainer (:mod:`recip_tourney.pretrain.mfos_coins`) against a
fresh opponent from the paper config (default ``nl``: H = 32, 40 epochs, one PPO update per
inner episode) at the spec's sizes: ``train_batch`` 512 games, 16 inner episodes of 32
steps, M-FOS n = 16 and K = 16 epochs, float32, one torch thread, on ``--device``, with
``--seeds`` seeds in one batch (a training plays one). Reports per meta-episode the wall
time split into M-FOS acting (+ conditioning), the opponent's acting and updates (the rest
of the match), and M-FOS's PPO update; then the process's peak resident memory and, on a
GPU, the most GPU memory torch held (the clock is read after the GPU has finished; the
split of the play is then host time, only indicative, as the GPU runs the work queued by one
part during another).
``--json PATH`` also writes the figures (the mean over the meta-episodes) for a driver.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time
from collections import defaultdict
from pathlib import Path

import bench_report
import torch

from recip_tourney.agents.coins_agent import CoinsSetup
from recip_tourney.agents.coins_mfos import MFOSCoinsParams, MFOSLearner
from recip_tourney.agents.coins_mfos_nets import table_pays
from recip_tourney.config import load_config
from recip_tourney.device import resolve_device
from recip_tourney.pretrain import mfos_coins as training
from recip_tourney.tournament.schedule import Player

MIB = 1 << 20


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (so that the clock measures it); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def learner_of(key: dict, device: torch.device, seeds: int) -> MFOSLearner:
    """The trainer's learner (:func:`~recip_tourney.pretrain.mfos_coins._learners`), with
    ``seeds`` seeds."""
    if seeds == 1:
        return training._learners(key, 1, device)[0]
    params = MFOSCoinsParams(**key["mfos"])
    dtype, grid, steps = getattr(torch, key["settings"]["dtype"]), 3, key["settings"]["steps"]
    table = table_pays(grid, params.inner_episodes * steps * params.train_batch)
    generators = [torch.Generator().manual_seed(1000 + s) for s in range(seeds)]
    return MFOSLearner(params, CoinsSetup(generators, dtype, device, 2, grid, me=0), table)


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
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--seeds", type=int, default=1, help="seeds in one batch")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    cfg = load_config("coins", "paper")
    key = {
        "seed": 1,
        "settings": {"steps": args.steps, "grid": 3, "layout": "egocentric", "dtype": "float32"},
        "mfos": {**cfg.agent_params["mfos"], "inner_episodes": args.inner,
                 "train_batch": args.batch, "epochs": args.epochs, "hidden": args.hidden},
    }
    key["mfos"].pop("train_seed")
    learner = learner_of(key, device, args.seeds)
    settings = training.settings_of(key, device)
    opponent = Player(args.opponent, cfg.agent_params.get(args.opponent, {}))
    clock: dict[str, float] = defaultdict(float)

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()  # host time: on a GPU, the time to queue the work
            try:
                return fn(*a, **k)
            finally:
                clock[name] += time.perf_counter() - start
        return wrapper

    learner.act = timed("mfos_act", learner.act)
    learner.end_episode = timed("mfos_condition", learner.end_episode)
    print(f"M-FOS vs {args.opponent}: B {args.batch}, {args.inner} x {args.steps} steps, "
          f"n {args.hidden}, K {args.epochs}, table {learner.nets.table}, device {device.type}"
          + (f", {args.seeds} seeds" if args.seeds > 1 else ""))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    profiler = cProfile.Profile() if args.profile else None
    totals = []
    for episode in range(args.meta_episodes):
        clock.clear()
        if profiler:
            profiler.enable()
        synchronize(device)
        start = time.perf_counter()
        reward, other = training.play_meta_episode([learner], opponent, settings,
                                                   training._seed(key, episode), args.inner,
                                                   seeds=args.seeds)
        synchronize(device)
        played = time.perf_counter() - start
        start = time.perf_counter()
        learner.update()
        synchronize(device)
        updated = time.perf_counter() - start
        totals.append(played + updated)
        if profiler:
            profiler.disable()
        others = played - clock["mfos_act"] - clock["mfos_condition"]
        print(f"meta-episode {episode}: {played + updated:.1f} s = M-FOS acting "
              f"{clock['mfos_act']:.1f} + conditioning {clock['mfos_condition']:.1f} + "
              f"opponent and game {others:.1f} + M-FOS update {updated:.1f} "
              f"(reward {reward:.3f}, opponent {other:.3f})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    gpu_mib = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None
    if gpu_mib is not None:
        print(f"peak GPU memory {gpu_mib:.0f} MiB")
    bench_report.write(args.json, [bench_report.row(
        f"coins mfos training vs {args.opponent}, per meta-episode",
        sum(totals) / len(totals), device,
        peak_memory_mib=gpu_mib if gpu_mib is not None else peak, seeds=args.seeds,
        meta_episode_seconds=totals)])
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
