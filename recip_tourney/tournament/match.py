"""Play one work unit in a worker: the entry point joblib calls."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from recip_tourney import registry
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


@contextmanager
def worker_numerics() -> Iterator[None]:
    """One torch thread and flush-to-zero for denormal floats, for the duration of a match.

    Parallelism comes from joblib workers; one thread each keeps ``--jobs N`` from
    oversubscribing the cores and keeps results identical whatever N is. Learners drive
    sigmoids into saturation, and products of tiny probabilities fall below 1e-38 (float32
    denormals), which the CPU handles tens of times slower; flushing them to zero changes no
    number above that scale and makes long runs about 25% faster. Restored on exit, so a
    caller's own process is left as it was (flush-to-zero is off by default).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def play_match(spec: MatchSpec) -> list[dict[str, Any]]:
    """Play ``spec`` with its game's protocol; one record per seed, with the wall time."""
    with worker_numerics():
        start = time.perf_counter()
        records = registry.game(spec.game).play(spec)
        elapsed = time.perf_counter() - start
    for record in records:
        record["elapsed_s"] = elapsed / len(records)
    return records
