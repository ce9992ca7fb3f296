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

_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)


def _fixed_mmap_threshold() -> None:
    """Serve large allocations from mmap (glibc): freed tensors go back to the system.

    glibc raises its mmap threshold as large blocks are freed, after which the tensors a
    long match allocates every episode come from the heap, which fragments: a 1000-episode
    IPD-Rollout match grew to several GiB. A fixed threshold (128 KiB, glibc's initial one)
    keeps a worker's memory flat. No-op where there is no glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


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
    _fixed_mmap_threshold()
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
