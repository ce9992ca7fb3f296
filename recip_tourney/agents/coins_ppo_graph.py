"""One Coins PPO epoch's gradient, captured once as a CUDA graph and replayed.

A Coins PPO update (:class:`~recip_tourney.agents.coins_ppo.CoinsPPO`) is 40 full-batch
epochs, each a forward pass of both networks over the episode (a 32-step GRU recurrence),
the loss's gradient at the outputs and the backward pass through time: about a thousand
small kernels per epoch, whose launch cost, not their arithmetic, is the time on a GPU.
Every epoch but the first (which fixes the acting policy's log-probabilities) and the last
(which logs diagnostics) does the same work on tensors at the same addresses, so the
gradient is captured once as a CUDA graph over static input buffers and replayed: the
buffers take each update's inputs (one copy each), the graph writes the gradient into the
workspace, and Adam steps eagerly as on the CPU. The graph runs exactly the kernels the
eager epoch runs, so numbers do not change (``tests/test_device_coins.py``, GPU tests).

On the CPU there is nothing to capture: :class:`EpochGradient` with ``capture=False``
calls the same function over the same static buffers, which the CPU tests use to check
the buffers' wiring bit for bit.

Capture is opt-in for now: ``RECIP_TOURNEY_CUDA_GRAPHS=1`` turns it on. It is checked by
the GPU tests and measured by ``make gpu-check`` (both with and without), and becomes the
default once a GPU run has shown it equal to the eager epochs. A capture that fails falls
back to eager epochs with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

#: Environment switch: ``1`` captures the PPO epochs on a GPU as CUDA graphs.
ENV_SWITCH = "RECIP_TOURNEY_CUDA_GRAPHS"


def graphs_enabled(device: torch.device) -> bool:
    """Whether PPO epochs on ``device`` are captured as CUDA graphs."""
    return device.type == "cuda" and os.environ.get(ENV_SWITCH, "0") == "1"


class EpochGradient:
    """``gradient(inputs) -> Tensor``, run over static copies of its inputs.

    Parameters
    ----------
    gradient : callable
        ``gradient(**inputs)`` computes one epoch's gradient at the current parameters and
        returns it in a buffer that outlives the call (the workspace's). It must not
        synchronise with the host and must read nothing that changes between updates except
        ``inputs`` and the parameters (updated in place).
    inputs : dict of Tensor or None
        The first update's inputs; their shapes, dtypes and devices are fixed from then on.
        Entries in ``shared`` are read where they are (their contents never change);
        the others are copied into buffers of their own.
    shared : set of str
        Inputs that stay the same tensor across updates (e.g. the encoder's table rows).
    capture : bool
        Capture a CUDA graph (the inputs must be on a CUDA device) or call ``gradient``.
    """

    def __init__(self, gradient: Callable[..., torch.Tensor],
                 inputs: dict[str, torch.Tensor | None], shared: frozenset[str] = frozenset(),
                 capture: bool = True) -> None:
        self._gradient = gradient
        self.shared = shared
        self.static: dict[str, torch.Tensor | None] = {
            k: (v if v is None or k in shared else v.clone()) for k, v in inputs.items()
        }
        self.key = self.signature(inputs)
        self.graph: Any = None
        self.output: torch.Tensor | None = None
        if capture:
            self._capture()

    @staticmethod
    def signature(inputs: dict[str, torch.Tensor | None]) -> tuple:
        """What must not change for the buffers (and a graph) to be reused."""
        return tuple((k, None if v is None else (tuple(v.shape), v.dtype, v.device))
                     for k, v in sorted(inputs.items()))

    def _call(self) -> torch.Tensor:
        return self._gradient(**self.static)

    def _capture(self) -> None:
        # warm up on a side stream (lazy initialisations must not be captured), then capture;
        # thread_local: a match's other learner may launch work from its own thread meanwhile
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._call()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = self._call()

    def load(self, inputs: dict[str, torch.Tensor | None]) -> None:
        """Take an update's inputs (same signature as the first)."""
        for key, value in inputs.items():
            if key in self.shared or value is None:
                continue
            buffer = self.static[key]
            assert buffer is not None
            buffer.copy_(value, non_blocking=True)

    def __call__(self) -> torch.Tensor:
        """The gradient at the current parameters, for the loaded inputs."""
        if self.graph is None:
            return self._call()
        self.graph.replay()
        assert self.output is not None
        return self.output
