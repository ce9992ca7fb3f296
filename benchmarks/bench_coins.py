"""Coins speed: seconds per steady-state episode and peak memory at the paper's sizes.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_coins.py                  # NL-NL and Reciprocator-NL
    .venv/bin/python benchmarks/bench_coins.py --episodes 8 --pairs reciprocator:nl
    .venv/bin/python benchmarks/bench_coins.py --device cuda --seeds 8 --json coins.json

Plays the real match (:class:`~recip_tourney.tournament.coins.CoinsMatch`: rollout of B = 1024
games x T = 32 steps, recording, the shared influence estimator on its schedule, both agents'
PPO updates with 40 epochs) under the worker's numerics (one torch thread per computation),
``--seeds`` seeds in one batch (default one), with ``--threads`` cores for the match's
independent computations (the two learners' updates, the estimator's model groups: the
numbers do not depend on it). The first ``--warmup`` episodes (the estimator's warm-up, when
nobody learns, and its first fits) are played but not timed; the figure is the mean over the
next ``--episodes`` episodes, which cover whole refit periods (the estimator refits every 2
episodes), so it is the steady-state cost per episode (of the whole batch of seeds; the cost
per seed is that over ``--seeds``). Peak memory is the process's maximum resident set size,
and on a GPU (``--device cuda``, or ``auto`` where there is one) also the most GPU memory
torch held for the pairing (``torch.cuda.max_memory_allocated``); there the clock is read
after the GPU has finished the episode. ``--json PATH`` also writes the figures, one entry
per pairing, for a driver script.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import bench_report
import torch

from recip_tourney import registry
from recip_tourney.agents.coins_ppo_graph import graphs_enabled
from recip_tourney.device import resolve_device
from recip_tourney.tournament.coins import CoinsMatch, CoinsSettings
from recip_tourney.tournament.match import SidePool, usable_cores, worker_numerics
from recip_tourney.tournament.schedule import MatchSpec, Player, SeedSlot

GAME = "coins"
MIB = 1 << 20


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (so that the clock measures it); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_episode(agent: str, opponent: str, warmup: int, episodes: int,
                        device: torch.device, threads: int, seeds: int = 1
                        ) -> tuple[float, list[float]]:
    """Mean seconds per timed episode of ``agent`` vs ``opponent`` and every episode's time."""
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in (agent, opponent)]
    settings = CoinsSettings(episodes=warmup + episodes, device=device.type)
    slots = tuple(SeedSlot(i, 1 + i, f"bench-{i}") for i in range(seeds))
    spec = MatchSpec(GAME, settings.model_dump(), "bench", players[0], players[1], slots)
    times = []
    with worker_numerics(device):
        pool = SidePool(threads)
        match = CoinsMatch(spec, settings, pool)
        for _ in range(warmup + episodes):
            synchronize(device)
            start = time.perf_counter()
            match.play_episode()
            synchronize(device)
            times.append(time.perf_counter() - start)
        pool.close()
    timed = times[warmup:]
    return sum(timed) / len(timed), times


def main() -> None:
    """Print seconds per steady-state episode for each pairing, then peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6, help="timed episodes (even)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed first episodes")
    parser.add_argument("--pairs", default="nl:nl,reciprocator:nl")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--seeds", type=int, default=1, help="seeds in one batch")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="cores of the match (a tournament worker gets cores / jobs); "
                        "default: all this process may use")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"Coins, B 1024, T 32, 40 PPO epochs, estimator 7 models x 20 epochs every 2 episodes;"
          f" mean of {args.episodes} episodes after {args.warmup}, device {device.type},"
          f" {args.threads} thread(s)" + (f", {args.seeds} seeds" if args.seeds > 1 else ""))
    results = []
    for pair in args.pairs.split(","):
        agent, opponent = pair.split(":")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        mean, times = seconds_per_episode(agent, opponent, args.warmup, args.episodes,
                                          device, args.threads, args.seeds)
        gpu_mib = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None
        memory = f", peak GPU memory {gpu_mib:.0f} MiB" if gpu_mib is not None else ""
        print(f"  {agent} vs {opponent}: {mean:.2f} s per episode "
              f"(each: {', '.join(f'{t:.2f}' for t in times)}){memory}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        graphs = " (CUDA graphs)" if graphs_enabled(device) else ""
        results.append(bench_report.row(
            f"coins {agent} vs {opponent}{graphs}", mean, device,
            peak_memory_mib=gpu_mib if gpu_mib is not None else rss, seeds=args.seeds,
            episode_seconds=times, warmup=args.warmup))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")
    bench_report.write(args.json, results)


if __name__ == "__main__":
    main()
