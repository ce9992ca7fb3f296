"""Play one work unit in a worker: the entry point joblib calls."""

from __future__ import annotations

import time
from typing import Any

import torch

from recip_tourney import registry
from recip_tourney.tournament.schedule import MatchSpec


def play_match(spec: MatchSpec) -> list[dict[str, Any]]:
    """Play ``spec`` with its game's protocol; one record per seed, with the wall time.

    Torch is held to one thread: parallelism comes from joblib workers, and one thread
    per worker keeps ``--jobs N`` from oversubscribing the cores and keeps results identical
    whatever N is.
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    records = registry.game(spec.game).play(spec)
    elapsed = time.perf_counter() - start
    for record in records:
        record["elapsed_s"] = elapsed / len(records)
    return records
