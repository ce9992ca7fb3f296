"""Where a match's tensors live: the ``device`` setting every game shares.

``cpu`` (the default) runs the code path the goldens were made with. ``cuda`` puts every
tensor of a match (networks, optimiser state, estimators, games) on the GPU; the random
draws stay on the seeds' CPU generators and are copied over once per episode, so a seed's
games are the same on either device and do not depend on its batch-mates. ``auto`` picks
cuda when torch sees one. GPU numbers are close to the CPU's but not bit-identical, so the
device is part of a run's settings: a results directory holds one device's matches.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch

# cuBLAS gives the same bits run after run only with a fixed workspace; it must be set before
# the first product on the GPU (torch's deterministic mode, on in GPU matches, asks for it).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

#: The values of ``settings.device`` and of ``--device``.
DeviceName = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("cpu", "cuda", "auto")


class NoCudaError(RuntimeError):
    """cuda was asked for where torch sees no CUDA device."""


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    return torch.cuda.is_available()


def resolve_device_name(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one raises.

    Raises
    ------
    NoCudaError
        ``cuda`` was asked for and torch sees no CUDA device.
    ValueError
        ``name`` is not one of :data:`DEVICE_CHOICES`.
    """
    if name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cuda" and not cuda_available():
        raise NoCudaError(
            f"device cuda asked for, but torch {torch.__version__} sees no CUDA device "
            "(a CPU build of torch, or no GPU); use --device cpu or auto"
        )
    return name


def resolve_device(name: str) -> torch.device:
    """:func:`resolve_device_name` as a ``torch.device``."""
    return torch.device(resolve_device_name(name))


def describe(device: torch.device | str) -> dict[str, Any]:
    """What a record says about where it was computed: the device and, on cuda, the GPU."""
    device = torch.device(device)
    info: dict[str, Any] = {"device": device.type}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    return info


def upload(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` (on the CPU: draws of the seeds' generators, index plans) on ``device``.

    A plain copy to a GPU first waits for all the work queued there; this one is made from
    pinned memory, asynchronously (the pinned block is kept until the copy is done), so the
    host keeps queueing work. Elsewhere it is ``tensor.to(device)``.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def check(condition: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` where the one-element boolean ``condition`` is False,
    without a host synchronisation on an accelerator.

    On the CPU the check is immediate (a ValueError, as any argument check). On a GPU it is
    ``torch._assert_async``: the work goes on without waiting for the device, and a failed
    check surfaces as a device-side assertion at the next synchronisation (the end of the
    episode at the latest), which aborts the match.
    """
    if condition.device.type == "cpu":
        if not bool(condition):
            raise ValueError(message)
    else:
        torch._assert_async(condition, message)
