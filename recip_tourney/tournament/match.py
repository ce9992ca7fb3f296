"""Play one work unit in a worker: the entry point joblib calls."""

from __future__ import annotations

import ctypes
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch

from recip_tourney import registry
from recip_tourney.device import describe, resolve_device
from recip_tourney.tournament.records import failed_record, nonfinite_reward
from recip_tourney.tournament.schedule import MatchSpec


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _load_libc()


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (glibc ``malloc_trim``).

    Long matches allocate and free megabyte-sized tensors every episode; glibc keeps the
    freed blocks in a heap that fragments, and a 1000-episode IPD-Rollout match grew to
    several GiB without this (with it, it stays under 300 MiB at no measurable cost when
    called every few episodes). A no-op where there is no glibc.
    """
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def _thread_numerics() -> None:
    # The thread count and flush-to-zero are per thread (OpenMP's and the FPU's state):
    # a pool thread must set them itself to compute what the match's own thread would.
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


class SidePool:
    """Run a few independent, single-threaded computations of a match side by side.

    Each task runs exactly as it would alone (one torch thread, flush-to-zero), so results
    do not depend on ``threads``; with ``threads`` 1 the tasks simply run in order. Torch
    releases the GIL inside its kernels, so Python threads are enough.
    """

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._pool = (ThreadPoolExecutor(threads - 1, initializer=_thread_numerics)
                      if threads > 1 else None)

    def run(self, tasks: Sequence[Callable[[], Any]]) -> list[Any]:
        """Call every task; return their results in order (the first runs in this thread)."""
        if self._pool is None or len(tasks) < 2:
            return [task() for task in tasks]
        futures = [self._pool.submit(task) for task in tasks[1:]]
        first = tasks[0]()
        return [first, *(f.result() for f in futures)]

    def close(self) -> None:
        """Stop the pool's threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@contextmanager
def worker_numerics(device: torch.device | str = "cpu") -> Iterator[None]:
    """One torch thread and flush-to-zero for denormal floats, for the duration of a match.

    Parallelism comes from joblib workers; one thread each keeps ``--jobs N`` from
    oversubscribing the cores and keeps results identical whatever N is. Learners drive
    sigmoids into saturation, and products of tiny probabilities fall below 1e-38 (float32
    denormals), which the CPU handles tens of times slower; flushing them to zero changes no
    number above that scale and makes long runs about 25% faster. On cuda, torch's
    deterministic algorithms are on (a scatter-add then sums in a fixed order, so the same
    seed gives the same numbers run after run). Restored on exit, so a caller's own process
    is left as it was (flush-to-zero is off by default).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if torch.device(device).type == "cuda":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def play_match(spec: MatchSpec) -> list[dict[str, Any]]:
    """Play ``spec`` with its game's protocol; one record per seed, with the wall time.

    A match that raises, or whose rewards are not finite (a diverging learner), comes back
    as failed records (:func:`~recip_tourney.tournament.records.failed_record`) instead of
    stopping the tournament: the other matches go on and the tables leave it out.
    """
    start = time.perf_counter()
    try:
        device = resolve_device(spec.settings.get("device", "cpu"))
        where = describe(device)
        with worker_numerics(device):
            records = registry.game(spec.game).play(spec)
    except Exception as exc:  # noqa: BLE001 - any error fails this match only, and is kept
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        where = traceback.format_exc()
        return [failed_record(spec, slot, error, where) for slot in spec.seeds]
    elapsed = time.perf_counter() - start
    slots = {slot.match_id: slot for slot in spec.seeds}
    for i, record in enumerate(records):
        problem = nonfinite_reward(record)
        if problem is not None:
            records[i] = failed_record(spec, slots[record["match_id"]],
                                       f"non-finite reward: {problem}")
        records[i]["elapsed_s"] = elapsed / len(records)
        records[i].update(where)
    return records
