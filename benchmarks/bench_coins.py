"""Coins speed: seconds per steady-state episode and peak memory at the paper's sizes.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_coins.py                  # NL-NL and Reciprocator-NL
    .venv/bin/python benchmarks/bench_coins.py --episodes 8 --pairs reciprocator:nl

Plays the real match (:class:`~recip_tourney.tournament.coins.CoinsMatch`: rollout of B = 1024
games x T = 32 steps, recording, the shared influence estimator on its schedule, both agents'
PPO updates with 40 epochs) under the worker's numerics (one torch thread per computation),
one seed, with ``--threads`` cores for the match's independent computations (the two
learners' updates, the estimator's model groups: the numbers do not depend on it). The
first ``--warmup`` episodes (the estimator's warm-up, when nobody learns, and its first fits)
are played but not timed; the figure is the mean over the next ``--episodes`` episodes, which
cover whole refit periods (the estimator refits every 2 episodes), so it is the steady-state
cost per episode. Peak memory is the process's maximum resident set size; ``--device`` runs
on a GPU where there is one.
"""

from __future__ import annotations

import argparse
import resource
import time

from recip_tourney import registry
from recip_tourney.tournament.coins import CoinsMatch, CoinsSettings
from recip_tourney.tournament.match import SidePool, usable_cores, worker_numerics
from recip_tourney.tournament.schedule import MatchSpec, Player, SeedSlot

GAME = "coins"


def seconds_per_episode(agent: str, opponent: str, warmup: int, episodes: int,
                        device: str, threads: int) -> tuple[float, list[float]]:
    """Mean seconds per timed episode of ``agent`` vs ``opponent`` and every episode's time."""
    players = [Player(n, registry.agent(GAME, n).params().model_dump()) for n in (agent, opponent)]
    settings = CoinsSettings(episodes=warmup + episodes, device=device)
    spec = MatchSpec(GAME, settings.model_dump(), "bench", players[0], players[1],
                     (SeedSlot(0, 1, "bench"),))
    times = []
    with worker_numerics():
        pool = SidePool(threads)
        match = CoinsMatch(spec, settings, pool)
        for _ in range(warmup + episodes):
            start = time.perf_counter()
            match.play_episode()
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
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="cores of the match (a tournament worker gets cores / jobs); "
                        "default: all this process may use")
    args = parser.parse_args()
    print(f"Coins, B 1024, T 32, 40 PPO epochs, estimator 7 models x 20 epochs every 2 episodes;"
          f" mean of {args.episodes} episodes after {args.warmup}, device {args.device},"
          f" {args.threads} thread(s)")
    for pair in args.pairs.split(","):
        agent, opponent = pair.split(":")
        mean, times = seconds_per_episode(agent, opponent, args.warmup, args.episodes,
                                          args.device, args.threads)
        print(f"  {agent} vs {opponent}: {mean:.2f} s per episode "
              f"(each: {', '.join(f'{t:.2f}' for t in times)})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
