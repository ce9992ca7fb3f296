"""IPD-Analytic speed: seconds per update and peak memory, and a 7-agent tournament's wall time.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_ipd_analytic.py            # all figures
    .venv/bin/python benchmarks/bench_ipd_analytic.py --no-tournament
    .venv/bin/python benchmarks/bench_ipd_analytic.py --no-tournament --device cuda --seeds 8

Per-update figures time the real work unit (``play_match``: exact evaluation, recording,
both agents' updates, with the worker's numerics: one torch thread, denormals flushed, on a
GPU deterministic algorithms) at batch 8192, 100 updates (the paper's run length), with
``--seeds`` seeds in one match (the figure is per update of the whole match). On a GPU the
clock is read after ``torch.cuda.synchronize``. Peak memory is the process's maximum
resident set size and, on a GPU, the peak memory torch allocated there. ``--json PATH``
writes the per-update figures (one row per pairing) for ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_report import row, sync, write

from recip_tourney import registry
from recip_tourney.device import DEVICE_CHOICES, describe, resolve_device_name
from recip_tourney.tournament.match import play_match
from recip_tourney.tournament.schedule import Player, round_robin

GAME = "ipd-analytic"


def seconds_per_update(
    agent: str, opponent: str, batch: int, updates: int, repeat: int, device: str = "cpu",
    seeds: int = 1,
) -> float:
    """Best-of-``repeat`` wall time of one update of ``agent`` vs ``opponent`` (all seeds)."""
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in (agent, opponent)]
    settings = {"batch": batch, "updates": updates, "warmup_updates": 0, "device": device}
    specs = round_robin(GAME, settings, "bench", 0, players, seeds)
    spec = next(s for s in specs if (s.agent.name, s.opponent.name) == (agent, opponent))
    play_match(spec)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        play_match(spec)
        sync(device)
        best = min(best, (time.perf_counter() - start) / updates)
    return best


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: The tournament timed: the agents that need no pretraining (M-FOS's training is timed by
#: ``bench_mfos.py``), as in the figures of part 1.
TOURNAMENT_AGENTS = "nl,lola,reciprocator,tft,allc,alld,random"


def tournament_seconds(jobs: int) -> float:
    """Wall time of ``recip-tourney run --game ipd-analytic --jobs N`` into a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "recip_tourney.cli",
            "run",
            "--game",
            GAME,
            "--jobs",
            str(jobs),
            "--out",
            str(Path(tmp) / "out"),
            "--quiet",
            "--agents",
            TOURNAMENT_AGENTS,
            "--no-pretrain",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    """Print the figures the README reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-tournament", action="store_true")
    parser.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    parser.add_argument("--seeds", type=int, default=1, help="seeds batched in one match")
    parser.add_argument("--json", default=None, help="write the figures here (JSON rows)")
    args = parser.parse_args()
    device = resolve_device_name(args.device)
    print(f"torch {torch.__version__}, 1 thread, batch {args.batch}, {args.updates} updates, "
          f"{args.seeds} seed(s), {describe(device)}")
    rows = []
    for agent, opponent in (("nl", "nl"), ("lola", "nl"), ("reciprocator", "nl")):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sec = seconds_per_update(agent, opponent, args.batch, args.updates, args.repeat,
                                 device, args.seeds)
        rows.append(row(f"ipd-analytic {agent} vs {opponent}, {args.seeds} seeds, per update "
                        f"(batch {args.batch})", sec, device, seeds=args.seeds))
        print(f"{agent:>12} vs {opponent:<4} {sec * 1e3:7.3f} ms per update")
    print(f"peak memory (RSS): {peak_rss_mib():.0f} MiB")
    write(args.json, rows)
    if not args.no_tournament:
        wall = tournament_seconds(args.jobs)
        print(f"tournament of {TOURNAMENT_AGENTS}, --jobs {args.jobs}: {wall:.1f} s wall "
              "(incl. start-up)")


if __name__ == "__main__":
    main()
