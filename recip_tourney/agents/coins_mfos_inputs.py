"""The meta-state of the Coins M-FOS meta-agent and the table of its canonical inputs
(rollout spec 4.6; the networks are :mod:`recip_tourney.agents.coins_mfos_nets`).

**Meta-state.** At every step M-FOS sees 7 planes of the g x g torus: its own 4-channel
observation (the match's layout, own position first when egocentric), then its reward of the
previous step, the other player's reward of the previous step and an inner-episode-start
flag, each tiled over the grid (the original M-FOS's 7-channel meta-state). At the first step
of an inner episode both rewards are 0 and the flag is 1 (the original's reset step); the
flag is 0 afterwards. An input is given by its 4 observation cells and a *code*, the index
of its 3 scalars in :func:`reward_levels`.

**Table.** The convs commute with translations of the torus (the tiled planes are
invariant), so table mode evaluates the encoder once per update on a fixed universe
(:func:`universe`): one representative per translation orbit (own position at cell 0;
``g^6`` of them) times each code; :func:`orbit_rows` finds a sample's row.
"""

from __future__ import annotations

import functools

import torch

from recip_tourney.agents.torus_conv import torus_shift
from recip_tourney.device import check
from recip_tourney.envs import coins as env

OBS_CHANNELS = 4
CHANNELS = OBS_CHANNELS + 3
TABLE_LIMIT = 1 << 14
"""Largest number of orbit representatives evaluated as a table when ``table`` is None."""


def representatives(grid: int) -> int:
    """Rows of the table's universe before translations: codes x ``g^6`` orbits."""
    return len(_levels()) * (grid * grid) ** (OBS_CHANNELS - 1)


def table_pays(grid: int, samples: int | None = None) -> bool:
    """Whether table mode is worth it: a small enough universe (the 3 x 3 grid), and, when
    ``samples`` (the inputs evaluated per weight change) is given, fewer representatives
    than samples."""
    reps = representatives(grid)
    return reps <= TABLE_LIMIT and (samples is None or reps <= samples)


@functools.lru_cache(maxsize=1)
def _levels() -> tuple[tuple[float, float, float], ...]:
    # every coincidence pattern of 2 agents and 2 coins is realised on 4 cells; STAY moves
    # nobody, so env.step pays what standing there pays
    cells = torch.cartesian_prod(*[torch.arange(4, device="cpu")] * 4)
    state = env.CoinsState(cells[:, :2], cells[:, 2:])
    stay = torch.full_like(state.agents, env.STAY)
    rewards = env.step(state, stay, state.coins, 2, dtype=torch.float64)[1]
    pairs = sorted({(a, b) for a, b in rewards.tolist()})
    return tuple((a, b, 0.0) for a, b in pairs) + ((0.0, 0.0, 1.0),)


def reward_levels(device: torch.device | str = "cpu") -> torch.Tensor:
    """Every ``(own reward, other's reward, start flag)`` of a 2-player meta-state, (R, 3),
    float64 on ``device`` (made once per device: do not modify it).

    The reward pairs one Coins step can pay (11), flag 0, then the start code ``(0, 0, 1)``
    (index :func:`start_code`). Found by playing every coincidence of the two agents and the
    two coins through :func:`recip_tourney.envs.coins.step`.
    """
    return _level_table(torch.device(device))


@functools.lru_cache(maxsize=8)
def _level_table(device: torch.device) -> torch.Tensor:
    return torch.tensor(_levels(), dtype=torch.float64, device=device)


def start_code() -> int:
    """The code of an inner episode's first step."""
    return len(_levels()) - 1


def codes_of(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """The codes (long, same shape) of a previous step's rewards ``own`` and ``other``
    (checked without a host synchronisation on a GPU:
    :func:`~recip_tourney.device.check`)."""
    pairs = reward_levels(own.device)[:-1, :2]
    pair = torch.stack((own, other), dim=-1).to(torch.float64)
    match = (pair.unsqueeze(-2) == pairs).all(-1)
    check(match.any(-1).all(), "a reward pair that no Coins step pays (is this 2-player Coins?)")
    return match.long().argmax(-1)


def episode_codes(rewards: torch.Tensor, me: int) -> torch.Tensor:
    """Codes (T, ...) of an episode's steps from its rewards (T, 2, ...) by slot: the start
    code, then each previous step's (own, other's) rewards."""
    codes = torch.full(rewards[:, 0].shape, start_code(), dtype=torch.long,
                       device=rewards.device)
    codes[1:] = codes_of(rewards[:-1, me], rewards[:-1, 1 - me])
    return codes


def previous_rewards(before: env.CoinsState, after: env.CoinsState, grid: int) -> torch.Tensor:
    """The rewards (..., n) of the step that took the game from ``before`` to ``after``.

    A step pays for the agents' positions after the move against the coins before it (the
    respawns change only coins), so :func:`recip_tourney.envs.coins.step` with everybody
    standing still at ``after``'s positions in front of ``before``'s coins pays exactly that.
    """
    state = env.CoinsState(after.agents, before.coins)
    stay = torch.full_like(after.agents, env.STAY)
    return env.step(state, stay, before.coins, grid, dtype=torch.float64)[1]


def observation_cells(obs: torch.Tensor) -> torch.Tensor:
    """Cells (..., 4) of one-hot observation planes (..., 4, g, g)."""
    return obs.flatten(-2).argmax(-1)


def torus_translations(grid: int, device: torch.device | str = "cpu"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``shift[tau, x]``: cell x moved by the translation taking cell 0 to cell tau, and
    ``unshift`` with ``unshift[tau, shift[tau, x]] = x``; both (g^2, g^2) on ``device``
    (made once per grid and device: do not modify them)."""
    return _translations(grid, torch.device(device))


@functools.lru_cache(maxsize=8)
def _translations(grid: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    shift = torus_shift(grid, device)
    return shift, torch.argsort(shift, dim=1)


def orbit_rows(cells: torch.Tensor, codes: torch.Tensor, grid: int) -> torch.Tensor:
    """Table rows (long) of inputs given by their cells (..., 4) and codes (...).

    Row ``(code * g^6 + rho) * g^2 + tau``: ``tau`` is channel 0's cell, ``rho`` the cells of
    channels 1-3 moved back by that translation, in base g^2.
    """
    cellcount = grid * grid
    unshift = torus_translations(grid, cells.device)[1]
    tau = cells[..., 0]
    rho = torch.zeros_like(tau)
    for ch in range(OBS_CHANNELS - 1, 0, -1):
        rho = rho * cellcount + unshift[tau, cells[..., ch]]
    return (codes * cellcount ** (OBS_CHANNELS - 1) + rho) * cellcount + tau


def dense_inputs(cells: torch.Tensor, codes: torch.Tensor, grid: int,
                 dtype: torch.dtype) -> torch.Tensor:
    """The 7 planes (..., 7 g^2), flattened channel-major, of cells (..., 4) and codes."""
    cellcount = grid * grid
    planes = torch.zeros(*cells.shape, cellcount, dtype=dtype, device=cells.device)
    planes.scatter_(-1, cells.unsqueeze(-1), 1)
    scalars = reward_levels(cells.device).to(dtype)[codes]
    tiled = scalars.unsqueeze(-1).expand(*codes.shape, 3, cellcount)
    return torch.cat([planes, tiled], dim=-2).flatten(-2)


def universe(grid: int, dtype: torch.dtype, device: torch.device | str = "cpu"
             ) -> torch.Tensor:
    """Inputs of the table's representatives, (R g^6, 7 g^2), in row order // g^2, on
    ``device`` (made once per grid, dtype and device: do not modify it)."""
    return _universe(grid, dtype, torch.device(device))


@functools.lru_cache(maxsize=8)
def _universe(grid: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    cellcount = grid * grid
    reps = cellcount ** (OBS_CHANNELS - 1)
    rho = torch.arange(reps, device=device)
    cells = torch.zeros(reps, OBS_CHANNELS, dtype=torch.long, device=device)
    for ch in range(1, OBS_CHANNELS):
        cells[:, ch] = (rho // cellcount ** (ch - 1)) % cellcount
    codes = torch.arange(len(_levels()), device=device).repeat_interleave(reps)
    return dense_inputs(cells.repeat(len(_levels()), 1), codes, grid, dtype)

