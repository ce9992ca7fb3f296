"""What every benchmark reports with ``--json``: one row per workload, for ``gpu_check.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def peak_gpu_mib(device: torch.device | str) -> float | None:
    """Peak GPU memory allocated by this process so far, in MiB (None on the CPU)."""
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def sync(device: torch.device | str) -> None:
    """Wait for the GPU's queued work (so that a clock read counts it); no-op on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def row(workload: str, seconds_per_episode: float, device: torch.device | str,
        **extra: Any) -> dict[str, Any]:
    """One benchmark figure with where it was measured."""
    device = torch.device(device)
    out = {"workload": workload, "seconds_per_episode": seconds_per_episode,
           "device": device.type, "torch": torch.__version__,
           "peak_gpu_mib": peak_gpu_mib(device)}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    return {**out, **extra}


def write(path: str | Path | None, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON to ``path`` (nothing when ``path`` is None)."""
    if path is not None:
        Path(path).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
