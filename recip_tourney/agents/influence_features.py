"""Inputs of the Coins value-influence estimator: state labels, one-hot states, features.

A canonical state ``s_t`` of the 2-player 3 x 3 Coin Game is four cell labels
``[a0, a1, c0, c1]`` (0..8: agent 0, agent 1, coin 0, coin 1), or their one-hot planes
``vec(s_t)`` (36 numbers, channel ``k`` at ``9 k + l_k``). The estimator's models read
``x_t = [a^0_t, a^1_t, vec(s_t), tau_t]`` (39 features: raw action indices as floats, spec 8
item 18, the one-hot state, the steps remaining ``tau_t = T - 1 - t``); a fit gathers its
minibatches from one table of all buffer samples (:class:`SampleTables`), whose rows carry
a constant 1 after ``x`` (the first layers' biases).

Used by :mod:`recip_tourney.agents.influence_models` and
:mod:`recip_tourney.agents.coins_influence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

GRID = 3
CELLS = GRID * GRID  # 9
CHANNELS = 4  # agent 0, agent 1, coin 0, coin 1
PLAYERS = 2
N_ACTIONS = 5
STATE_FEATURES = CHANNELS * CELLS  # 36
FEATURES = PLAYERS + STATE_FEATURES + 1  # 39: [a0, a1, vec(s), tau]
TAU = FEATURES - 1
#: Columns of the estimator's sample tables: ``x`` and a constant 1 that carries the first
#: layers' biases (so each first layer is one matrix product, its bias a weight column).
COLUMNS = FEATURES + 1
ONE = FEATURES
N_STATES = CELLS**CHANNELS  # 6561


def state_labels(states: torch.Tensor) -> torch.Tensor:
    """Cell labels ``[a0, a1, c0, c1]`` (0..8) of states.

    Parameters
    ----------
    states : Tensor
        Labels already (integer, ``(..., 4)``) or one-hot states, ``(..., 4, 3, 3)`` or
        ``(..., 36)`` (the argmax of each channel is taken).

    Returns
    -------
    Tensor of long, (..., 4)
    """
    if not states.is_floating_point():
        return states.long()
    if states.shape[-2:] == (GRID, GRID):
        states = states.flatten(-3)
    return states.unflatten(-1, (CHANNELS, CELLS)).argmax(-1)


def one_hot_states(labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``vec(s)`` of cell labels: ``(..., 4)`` -> ``(..., 36)``, channel ``k`` at ``9 k + l_k``."""
    out = torch.zeros(*labels.shape[:-1], STATE_FEATURES, dtype=dtype, device=labels.device)
    offsets = torch.arange(0, STATE_FEATURES, CELLS, device=labels.device)
    return out.scatter_(-1, labels.long() + offsets, 1.0)


def features(labels: torch.Tensor, actions: torch.Tensor, tau: torch.Tensor | float,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Joint-action input ``x = [a^0, a^1, vec(s), tau]`` of the estimator (spec 5.3.1).

    Parameters
    ----------
    labels : Tensor of long, (..., 4)
    actions : Tensor of long, (..., 2)
        Action indices 0..4, fed as raw floats (not one-hot).
    tau : Tensor broadcastable to ``labels.shape[:-1]``, or float
        Steps remaining.

    Returns
    -------
    Tensor, (..., 39), on the labels' device
    """
    out = torch.empty(*labels.shape[:-1], FEATURES, dtype=dtype, device=labels.device)
    out[..., :PLAYERS] = actions
    out[..., PLAYERS:TAU] = one_hot_states(labels, dtype)
    out[..., TAU] = tau
    return out


def all_states(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
               ) -> torch.Tensor:
    """``vec(S(l))`` of the 6561 label tuples, (6561, 36) on ``device``, flat index
    ``729 l0 + 81 l1 + 9 l2 + l3`` (the order of a 4-way Cartesian product)."""
    grid = torch.cartesian_prod(*[torch.arange(CELLS, device=device)] * CHANNELS)
    return one_hot_states(grid, dtype)



def with_one(x: torch.Tensor) -> torch.Tensor:
    """``x`` with a last column of ones."""
    return torch.cat((x, x.new_ones(*x.shape[:-1], 1)), dim=-1)


@dataclass(frozen=True)
class SampleTables:
    """A fit's data: every seed's buffer samples in one table, rows ``s N + t nB + b``."""

    x: torch.Tensor  # (S N, 40): inputs with tau = T - 1 - t, and a 1
    rewards: torch.Tensor  # (S N, 2)
    returns: torch.Tensor  # (S N, 2)
    next_labels: torch.Tensor  # (S N, 4): labels of row + nB (zero past the last step)
    value_keys: torch.Tensor  # (S N,): V's input as a number: state (x T + tau, value_time)
    steps: int  # T
    rows: int  # N = T nB, samples of V and R per seed
    transitions: int  # (T - 1) nB, samples of P per seed

    @classmethod
    def build(cls, episodes: Sequence[dict[str, torch.Tensor]], dtype: torch.dtype,
              value_time: bool) -> SampleTables:
        """The tables of stored episodes (``labels``, ``actions``, ``rewards``, ``returns``,
        each ``(T, S, B, ...)``), side by side: rows ``s N + t nB + b``."""
        cat = {k: torch.cat([e[k] for e in episodes], dim=2) for k in episodes[0]}
        steps, seeds, games = cat["labels"].shape[:3]

        def rows(x: torch.Tensor) -> torch.Tensor:
            return x.transpose(0, 1).reshape(seeds * steps * games, *x.shape[3:])

        labels = cat["labels"].long()
        device = labels.device
        tau = (steps - 1 - torch.arange(steps, dtype=dtype, device=device)).view(-1, 1, 1)
        x = with_one(features(labels, cat["actions"], tau, dtype))
        next_labels = torch.zeros_like(labels)
        next_labels[:-1] = labels[1:]
        powers = CELLS ** torch.arange(CHANNELS - 1, -1, -1, device=device)
        keys = (labels * powers).sum(-1)  # (T, S, nB)
        if value_time:
            keys = keys * steps + tau.long()
        return cls(rows(x), rows(cat["rewards"]), rows(cat["returns"]), rows(next_labels),
                   rows(keys), steps, steps * games, (steps - 1) * games)
