"""PyTorch's default initial draws of ``nn.Linear`` / ``nn.Conv2d`` / ``nn.GRU`` weights.

Every such parameter starts uniform on ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``
(:func:`default_bound`; ``nn.GRU`` takes ``fan_in = H`` for all its parameters). Two draw
streams are used, and they are not interchangeable (the same generator gives different
numbers):

* :func:`kaiming_weight` and :func:`default_bias` are the modules' own draws
  (``kaiming_uniform_`` with ``a = sqrt 5``, then ``uniform_``) in the parameter's dtype, so
  an estimator seeded like ``torch.manual_seed`` equals freshly built modules bit for bit
  (the value-influence estimator, :mod:`recip_tourney.agents.influence_models`);
* :func:`seeded_uniform` draws every seed's parameter from its own generator in float64,
  scaled to the bound (the Coins PPO networks, :mod:`recip_tourney.agents.coins_gru`).

Every draw is made on its generator's device (the CPU for the seeds' ``torch.Generator``),
whatever torch's default device; callers move the result where their parameters live, so a
seed's initial weights are the same numbers on every device.
"""

from __future__ import annotations

import math

import torch


def default_bound(fan_in: int) -> float:
    """``1 / sqrt(fan_in)``: the half-width of the default uniform draws."""
    return 1.0 / math.sqrt(fan_in)


def kaiming_weight(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype
                   ) -> torch.Tensor:
    """``nn.Linear`` / ``nn.Conv2d``'s default weight draw (``kaiming_uniform_``, a = sqrt 5:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = ``prod(shape[1:])``)."""
    weight = torch.empty(shape, dtype=dtype, device=generator.device)
    return torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)


def default_bias(size: int, fan_in: int, generator: torch.Generator, dtype: torch.dtype
                 ) -> torch.Tensor:
    """``nn.Linear`` / ``nn.Conv2d``'s default bias draw, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = default_bound(fan_in)
    bias = torch.empty(size, dtype=dtype, device=generator.device)
    return bias.uniform_(-bound, bound, generator=generator)


def seeded_uniform(
    shape: tuple[int, ...], bound: float, generators: list[torch.Generator]
) -> torch.Tensor:
    """U(-bound, bound) draws of ``shape`` for every seed, from its own generator: (S, ...),
    float64, on the generators' device (``torch.rand`` scaled; cast to the parameters' dtype
    and moved to their device by the caller)."""
    draws = [torch.rand(shape, generator=g, dtype=torch.float64, device=g.device)
             for g in generators]
    return (torch.stack(draws) * 2 - 1) * bound
