"""IPD-Rollout speed: seconds per episode and peak memory at the paper's sizes.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_ipd_rollout.py                 # NL-NL and Reciprocator-NL
    .venv/bin/python benchmarks/bench_ipd_rollout.py --seeds 5 --episodes 100

Times the real work unit (``play_match``: the episode rollout, recording, both agents' PPO
updates, with the worker's numerics: one torch thread) at B = 2048 games, T = 32 steps and
the spec's PPO settings (10 full-batch epochs), with one seed per match and with ``--seeds``
seeds batched in one match (as the tournament plays them). Seconds per episode is the match
time divided by the episodes (and, batched, also by the seeds); best of ``--repeat`` runs.
Peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import resource
import time

from recip_tourney import registry
from recip_tourney.tournament.match import play_match
from recip_tourney.tournament.schedule import Player, round_robin

GAME = "ipd-rollout"
PAIRS = (("nl", "nl"), ("reciprocator", "nl"))


def seconds_per_episode(
    agent: str, opponent: str, seeds: int, episodes: int, repeat: int
) -> float:
    """Best-of-``repeat`` wall time of one episode of ``agent`` vs ``opponent`` (all seeds)."""
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in (agent, opponent)]
    settings = {"batch": 2048, "steps": 32, "episodes": episodes, "table_last": 1}
    specs = round_robin(GAME, settings, "bench", 0, players, seeds)
    spec = next(s for s in specs if (s.agent.name, s.opponent.name) == (agent, opponent))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        play_match(spec)
        best = min(best, time.perf_counter() - start)
    return best / episodes


def main() -> None:
    """Print seconds per episode for NL vs NL and Reciprocator vs NL, then peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5, help="seeds batched in one match")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"IPD-Rollout, B 2048, T 32, 10 PPO epochs; best of {args.repeat} x "
          f"{args.episodes} episodes")
    for agent, opponent in PAIRS:
        one = seconds_per_episode(agent, opponent, 1, args.episodes, args.repeat)
        many = seconds_per_episode(agent, opponent, args.seeds, args.episodes, args.repeat)
        print(f"  {agent} vs {opponent}: {one:.4f} s per episode (one seed); "
              f"{many / args.seeds:.4f} s per seed-episode with {args.seeds} seeds batched")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
