"""Coins value-influence estimator speed: seconds per fit and per influence evaluation.

Run by hand (not a test)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_influence.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_coins_influence.py --seeds 4 --profile

Fills the buffer of :class:`~recip_tourney.agents.coins_influence.CoinsVoI` with
``buffer_episodes`` (3) episodes of random play on the 3 x 3 torus (uniform actions, coins
collected and respawned as in the Coin Game), then times ``fit()`` (all seven models,
``samples`` per model, ``epochs`` epochs of ``minibatch``; spec 5.3.4) and ``influence()``
on one episode of ``steps`` x ``batch`` games per seed, best of ``--repeat``: wall time and
the process's CPU time (user + system; on a loaded machine the CPU time is the better guide
to the unloaded wall time of a one-thread run). Peak memory is the process's maximum
resident set size.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time

import torch

from recip_tourney.agents.coins_influence import CoinsVoI

MOVES = torch.tensor([[0, 1], [0, -1], [1, 0], [-1, 0], [0, 0]])  # right left down up stay


def random_episode(
    steps: int, seeds: int, batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An episode of uniformly random play: labels (T, S, B, 4), actions, rewards."""
    shape = (seeds, batch)
    labels = torch.randint(0, 9, (*shape, 4), generator=generator)
    states, actions, rewards = [], [], []
    for _ in range(steps):
        states.append(labels.clone())
        a = torch.randint(0, 5, (*shape, 2), generator=generator)
        rows = (labels[..., :2] // 3 + MOVES[a][..., 0]) % 3
        cols = (labels[..., :2] % 3 + MOVES[a][..., 1]) % 3
        labels[..., :2] = rows * 3 + cols
        on = labels[..., :2].unsqueeze(-1) == labels[..., 2:].unsqueeze(-2)  # [agent, coin]
        r = on.sum(-1).float()
        r -= 2.0 * (on & ~torch.eye(2, dtype=torch.bool)).sum(-2).float()
        taken = on.any(-2)
        labels[..., 2:] = torch.where(
            taken, torch.randint(0, 9, (*shape, 2), generator=generator), labels[..., 2:])
        actions.append(a)
        rewards.append(r)
    return torch.stack(states), torch.stack(actions), torch.stack(rewards)


def main() -> None:
    """Print seconds per fit and per influence evaluation, then peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--samples", type=int, default=65536)
    parser.add_argument("--minibatch", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--value-time", action="store_true", help="time-aware critic")
    parser.add_argument("--profile", action="store_true", help="cProfile one fit")
    parser.add_argument("--step-times", action="store_true",
                        help="time every training step of one more fit: on a loaded "
                             "machine, steps x the fastest step estimates an unloaded fit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the tournament's matches run (worker_numerics)

    generator = torch.Generator().manual_seed(0)
    estimator = CoinsVoI(
        [torch.Generator().manual_seed(s) for s in range(args.seeds)],
        samples=args.samples, minibatch=args.minibatch, epochs=args.epochs,
        value_time=args.value_time)
    for _ in range(estimator.buffer.maxlen or 1):
        episode = random_episode(args.steps, args.seeds, args.batch, generator)
        estimator.store(*episode)
    states, actions, _ = episode

    fit = influence = fit_cpu = influence_cpu = float("inf")
    for _ in range(args.repeat):
        start, cpu = time.perf_counter(), time.process_time()
        estimator.fit()
        fit = min(fit, time.perf_counter() - start)
        fit_cpu = min(fit_cpu, time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        estimator.influence(states, actions)
        influence = min(influence, time.perf_counter() - start)
        influence_cpu = min(influence_cpu, time.process_time() - cpu)
    if args.step_times:
        times = []
        step = estimator._step  # timing the private training step is the point

        def timed(*a: object) -> None:
            start = time.perf_counter()
            step(*a)
            times.append(time.perf_counter() - start)

        estimator._step = timed  # type: ignore[method-assign]
        estimator.fit()
        del estimator._step
        times.sort()
        print(f"  steps of a fit: {len(times)}; fastest {times[0] * 1e3:.1f} ms, median "
              f"{times[len(times) // 2] * 1e3:.1f} ms; {len(times)} x fastest = "
              f"{len(times) * times[0]:.2f} s")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(estimator.fit)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)

    print(f"CoinsVoI, {args.seeds} seed(s), buffer {len(estimator.buffer)} x "
          f"{args.steps} x {args.batch}, {args.samples} samples x {args.epochs} epochs / "
          f"{args.minibatch}, {args.threads} thread(s); best of {args.repeat}")
    print(f"  fit (7 models):        {fit:.3f} s wall, {fit_cpu:.3f} s CPU "
          f"({fit / args.seeds:.3f} s wall per seed)")
    print(f"  influence (1 episode): {influence:.3f} s wall, {influence_cpu:.3f} s CPU "
          f"({influence / args.seeds:.3f} s wall per seed)")
    print(f"  final losses (seed 0): {[round(v, 4) for v in estimator.losses()[0].tolist()]}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
