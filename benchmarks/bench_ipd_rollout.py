"""IPD-Rollout speed: seconds per episode and peak memory at the paper's sizes.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_ipd_rollout.py                 # NL-NL and Reciprocator-NL
    .venv/bin/python benchmarks/bench_ipd_rollout.py --seeds 5 --episodes 100
    .venv/bin/python benchmarks/bench_ipd_rollout.py --device cuda --seeds 8 --json out.json

Times the real work unit (``play_match``: the episode rollout, recording, both agents' PPO
updates, with the worker's numerics: one torch thread, and on a GPU deterministic algorithms)
at B = 2048 games, T = 32 steps and the spec's PPO settings (10 full-batch epochs), with one
seed per match and with ``--seeds`` seeds batched in one match (as the tournament plays
them). Seconds per episode is the match time divided by the episodes: one episode of every
seed of the match (per seed-episode: also divided by the seeds); best of ``--repeat`` runs,
after one short untimed match (on a GPU: its start-up and kernels' first launches). On a GPU
the clock is read after the queued work is done (``play_match`` copies the records back at
its end, and ``torch.cuda.synchronize`` is called around it). Peak memory is the process's
maximum resident set size and, on a GPU, the peak memory torch allocated there for each
workload.
``--json PATH`` writes one row per timed workload for ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from bench_report import row, sync, write

from recip_tourney import registry
from recip_tourney.device import DEVICE_CHOICES, describe, resolve_device_name
from recip_tourney.tournament.match import play_match
from recip_tourney.tournament.schedule import MatchSpec, Player, round_robin

GAME = "ipd-rollout"
PAIRS = (("nl", "nl"), ("reciprocator", "nl"))


def match_spec(agent: str, opponent: str, seeds: int, episodes: int, device: str) -> MatchSpec:
    """The match of ``agent`` vs ``opponent`` with ``seeds`` seeds at the paper's sizes."""
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in (agent, opponent)]
    settings = {"batch": 2048, "steps": 32, "episodes": episodes, "table_last": 1,
                "device": device}
    specs = round_robin(GAME, settings, "bench", 0, players, seeds)
    return next(s for s in specs if (s.agent.name, s.opponent.name) == (agent, opponent))


def seconds_per_episode(
    agent: str, opponent: str, seeds: int, episodes: int, repeat: int, device: str
) -> float:
    """Best-of-``repeat`` wall time of one episode of ``agent`` vs ``opponent`` (all seeds)."""
    play_match(match_spec(agent, opponent, seeds, 2, device))  # warm-up, untimed
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()  # the peak of this workload alone
    spec = match_spec(agent, opponent, seeds, episodes, device)
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        records = play_match(spec)
        sync(device)
        best = min(best, time.perf_counter() - start)
        failed = [r["error"] for r in records if "error" in r]
        if failed:
            raise RuntimeError(f"{agent} vs {opponent} failed: {failed[0]}")
    return best / episodes


def main() -> None:
    """Print seconds per episode for NL vs NL and Reciprocator vs NL, then peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5, help="seeds batched in one match")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    parser.add_argument("--json", default=None, help="write the figures here (JSON rows)")
    args = parser.parse_args()
    device = resolve_device_name(args.device)
    where = describe(device)
    print(f"IPD-Rollout, B 2048, T 32, 10 PPO epochs; best of {args.repeat} x "
          f"{args.episodes} episodes; {where}, torch {torch.__version__}")
    rows = []
    for agent, opponent in PAIRS:
        for seeds in dict.fromkeys((1, args.seeds)):
            per = seconds_per_episode(agent, opponent, seeds, args.episodes, args.repeat, device)
            print(f"  {agent} vs {opponent}, {seeds} seed(s): {per:.4f} s per episode, "
                  f"{per / seeds:.4f} s per seed-episode")
            rows.append(row(f"ipd-rollout {agent} vs {opponent}, {seeds} seeds", per, device,
                            seeds=seeds, seconds_per_seed_episode=per / seeds,
                            episodes=args.episodes, batch=2048, steps=32))
            if row_peak := rows[-1]["peak_gpu_mib"]:
                print(f"    peak GPU memory {row_peak:.0f} MiB")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")
    write(args.json, rows)


if __name__ == "__main__":
    main()
