"""IPD-Analytic speed: seconds per update and peak memory, and a 7-agent tournament's wall time.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_ipd_analytic.py            # all figures
    .venv/bin/python benchmarks/bench_ipd_analytic.py --no-tournament

Per-update figures time the real work unit (``play_match``: exact evaluation, recording,
both agents' updates, with the worker's numerics: one torch thread, denormals flushed) at
batch 8192, 100 updates (the paper's run length). Peak memory is the process's maximum
resident set size.
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

from recip_tourney import registry
from recip_tourney.tournament.match import play_match
from recip_tourney.tournament.schedule import Player, round_robin

GAME = "ipd-analytic"


def seconds_per_update(agent: str, opponent: str, batch: int, updates: int, repeat: int) -> float:
    """Best-of-``repeat`` wall time of one update of ``agent`` vs ``opponent``."""
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in (agent, opponent)]
    settings = {"batch": batch, "updates": updates, "warmup_updates": 0}
    specs = round_robin(GAME, settings, "bench", 0, players, 1)
    spec = next(s for s in specs if (s.agent.name, s.opponent.name) == (agent, opponent))
    play_match(spec)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        play_match(spec)
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
    args = parser.parse_args()
    print(f"torch {torch.__version__}, 1 thread, batch {args.batch}, {args.updates} updates")
    for agent, opponent in (("nl", "nl"), ("lola", "nl"), ("reciprocator", "nl")):
        sec = seconds_per_update(agent, opponent, args.batch, args.updates, args.repeat)
        print(f"{agent:>12} vs {opponent:<4} {sec * 1e3:7.3f} ms per update")
    print(f"peak memory (RSS): {peak_rss_mib():.0f} MiB")
    if not args.no_tournament:
        wall = tournament_seconds(args.jobs)
        print(f"tournament of {TOURNAMENT_AGENTS}, --jobs {args.jobs}: {wall:.1f} s wall "
              "(incl. start-up)")


if __name__ == "__main__":
    main()
