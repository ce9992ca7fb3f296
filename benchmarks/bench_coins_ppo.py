"""Coins PPO speed: seconds per update and per acting episode, and peak memory.

Run by hand (not a test)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_ppo.py            # paper sizes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_ppo.py --seeds 5
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_ppo.py --profile

Times one agent of the 2-player Coin Game (4 observation channels, 3 x 3 grid, H = 32) at
B = 1024 games, T = 32 steps and the spec's 40 full-batch epochs, in float32, on random
one-hot observations, actions and rewards: :meth:`CoinsPPO.update` on one episode, and one
acting episode (``begin_episode`` then T calls of ``act``). Best of ``--repeat`` runs; with
``--seeds`` S > 1 the per-seed time is also printed. Peak memory is the process's maximum
resident set size.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from recip_tourney.agents.coins_ppo import CoinsPPO, ConvGRUNets

CHANNELS, GRID, HIDDEN = 4, 3, 32


def episode(
    steps: int, seeds: int, batch: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random one-hot observations (T, S, B, 4, 3, 3), actions and rewards (T, S, B)."""
    cells = torch.randint(0, GRID * GRID, (steps, seeds, batch, CHANNELS), generator=gen)
    obs = torch.zeros(steps, seeds, batch, CHANNELS, GRID * GRID)
    obs.scatter_(-1, cells.unsqueeze(-1), 1)
    actions = torch.randint(0, 5, (steps, seeds, batch), generator=gen)
    rewards = torch.randint(-2, 2, (steps, seeds, batch), generator=gen).float()
    return obs.view(steps, seeds, batch, CHANNELS, GRID, GRID), actions, rewards


def best_of(repeat: int, run) -> tuple[float, float]:
    """Smallest wall time and smallest process CPU time of ``repeat`` calls of ``run``.

    On a shared machine the wall time includes the time other processes held the core; the
    CPU time does not (it still includes their effect on caches and memory bandwidth).
    """
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    """Print seconds per update and per acting episode, then peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dense", action="store_true", help="per-sample encoder, no table")
    parser.add_argument("--profile", action="store_true", help="torch.profiler of one update")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    gens = [torch.Generator().manual_seed(s) for s in range(args.seeds)]
    nets = ConvGRUNets(CHANNELS, HIDDEN, gens, torch.float32, grid=GRID)
    ppo = CoinsPPO(nets, epochs=args.epochs, table=False if args.dense else None)
    obs, actions, rewards = episode(args.steps, args.seeds, args.batch, gen)
    noise = torch.rand(args.steps, args.seeds, args.batch, generator=gen)

    def act() -> None:
        ppo.begin_episode(args.batch)
        for t in range(args.steps):
            ppo.act(obs[t], noise[t])

    def update() -> None:
        ppo.update(obs, actions, rewards)

    mode = "dense" if args.dense else ("table" if ppo.table else "dense")
    print(f"Coins PPO ({mode} encoder), S {args.seeds}, B {args.batch}, T {args.steps}, "
          f"{args.epochs} epochs, {torch.get_num_threads()} thread(s); best of {args.repeat}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        update()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            update()
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=25))
    act()
    timings = {"acting episode": best_of(args.repeat, act), "update": best_of(args.repeat, update)}
    for label, (wall, cpu) in timings.items():
        per_seed = (f" (per seed: wall {wall / args.seeds:.3f} s, CPU {cpu / args.seeds:.3f} s)"
                    if args.seeds > 1 else "")
        print(f"  {label}: wall {wall:.3f} s, CPU {cpu:.3f} s{per_seed}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
