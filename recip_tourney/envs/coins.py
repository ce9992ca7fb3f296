"""Coins: the n-player Coin Game on a torus, as pure batched functions over explicit state.

``n`` players walk on a ``g x g`` torus (moves wrap around), each owning one coin that is
always somewhere on the grid. Every step all players move at once; a player standing on a
coin's cell after the move picks it up for +1, whoever owns it, and the owner of a coin
picked up by someone else loses ``n / (n - 1)`` per such player (-2 for two players, -1.5
for three). Every coin picked up reappears at a uniformly drawn cell, which may hold an
agent or another coin.

Cells are flat labels ``row * g + col``. Actions: 0 RIGHT, 1 LEFT, 2 DOWN, 3 UP, 4 STAY
(:data:`MOVES` gives each one's (row, col) step). A batch has any leading shape, typically
``(S, B)``: S seeds of B games each. Randomness is passed in as pre-drawn cells
(:func:`draw_cells`, one generator per seed), so that a seed's games never depend on which
other seeds share the batch and the draws made do not depend on what happened in a game.
The episode length is the caller's business: the state has no step counter.

Observations are one-hot planes, ``2n`` per player. The canonical order is agents
``0..n-1`` then coins ``0..n-1``. Player ``k`` sees them either

- ``"egocentric"`` (project default): the agent block and the coin block each rolled by
  ``-k``, so its own position comes first, then its own coin first;
- ``"faithful"``: all ``2n`` channels rolled by ``-2k``, as the reference code (Zhou et al.
  2024, ``coin_game.py``) does by mistake; for two players, player 1 sees
  ``[c0, c1, a0, a1]``.

Player 0's view is the canonical state in both layouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, NamedTuple

import torch

N_ACTIONS = 5
RIGHT, LEFT, DOWN, UP, STAY = range(N_ACTIONS)
ACTION_NAMES = ("RIGHT", "LEFT", "DOWN", "UP", "STAY")
#: The (row, col) step of each action; rows grow downwards.
MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0), (0, 0))
Layout = Literal["egocentric", "faithful"]
LAYOUTS: tuple[Layout, ...] = ("egocentric", "faithful")


class CoinsState(NamedTuple):
    """Positions of every game of a batch, as flat cell labels ``row * g + col``.

    Attributes
    ----------
    agents : Tensor of long, shape (..., n)
        Cell of each player.
    coins : Tensor of long, shape (..., n)
        Cell of each coin; coin ``c`` belongs to player ``c``.
    """

    agents: torch.Tensor
    coins: torch.Tensor

    @property
    def n_players(self) -> int:
        """Number of players (and of coins)."""
        return self.agents.shape[-1]


def mismatch_penalty(n_players: int) -> float:
    """What the owner of a coin loses per other player picking it up: ``n / (n - 1)``."""
    if n_players < 2:
        raise ValueError(f"Coins needs at least 2 players, got {n_players}")
    return n_players / (n_players - 1)


def draw_cells(
    generators: Sequence[torch.Generator],
    shape_per_seed: tuple[int, ...],
    cells: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform cell labels, drawn for each seed from its own generator.

    Parameters
    ----------
    generators : sequence of torch.Generator
        One generator per seed; seed ``s`` draws only from ``generators[s]``, so its cells
        are the same whichever other seeds are drawn beside it.
    shape_per_seed : tuple of int
        Shape of each seed's draw, e.g. ``(B, 2 n)`` for :func:`reset` or ``(B, n)`` for
        the respawn cells of one :func:`step`.
    cells : int
        Number of cells ``g * g``; labels are uniform on ``0 .. cells - 1``.
    device : torch.device or str, optional
        Where to put the result (default: the generators' device).

    Returns
    -------
    Tensor of long, shape (S, *shape_per_seed)
    """
    if not generators:
        raise ValueError("draw_cells needs at least one generator")
    draws = [
        torch.randint(cells, tuple(shape_per_seed), generator=gen, device=gen.device)
        for gen in generators
    ]
    out = torch.stack(draws)
    return out if device is None else out.to(device)


def reset(draws: torch.Tensor, n_players: int | None = None) -> CoinsState:
    """Start state from ``2 n`` uniform cells per game: agents first, then coins.

    Agents and coins are placed independently, so they may overlap (as in the reference);
    ``draws`` is typically ``draw_cells(generators, (B, 2 * n), g * g)``.

    Parameters
    ----------
    draws : Tensor of long, shape (..., 2 n)
        ``draws[..., :n]`` are the agents' cells, ``draws[..., n:]`` the coins'. The inverse
        of :func:`labels`.
    n_players : int, optional
        Expected ``n``, checked against ``draws`` when given.
    """
    width = draws.shape[-1]
    if width % 2 or (n_players is not None and width != 2 * n_players):
        expected = "2 n" if n_players is None else str(2 * n_players)
        raise ValueError(f"reset needs {expected} cells per game, got {width}")
    agents, coins = draws.split(draws.shape[-1] // 2, dim=-1)
    return CoinsState(agents.contiguous(), coins.contiguous())


@lru_cache(maxsize=32)
def _next_cell_table(grid: int, device: torch.device) -> torch.Tensor:
    """``table[cell, action]``: the cell reached from ``cell`` by ``action``, shape (g*g, 5)."""
    cell = torch.arange(grid * grid, device=device)
    row, col = (cell // grid).unsqueeze(-1), (cell % grid).unsqueeze(-1)
    step = torch.tensor(MOVES, device=device)
    return ((row + step[:, 0]) % grid) * grid + (col + step[:, 1]) % grid


def next_cells(cells: torch.Tensor, actions: torch.Tensor, grid: int) -> torch.Tensor:
    """Cells reached by taking ``actions`` from ``cells`` on the torus (broadcast shapes)."""
    table = _next_cell_table(grid, cells.device)
    return table.take(cells * N_ACTIONS + actions)


def torus_distance(a: torch.Tensor, b: torch.Tensor, grid: int) -> torch.Tensor:
    """Number of moves between cells ``a`` and ``b`` on the torus (broadcast shapes)."""
    dr = (a // grid - b // grid) % grid
    dc = (a % grid - b % grid) % grid
    return torch.minimum(dr, grid - dr) + torch.minimum(dc, grid - dc)


def step(
    state: CoinsState,
    actions: torch.Tensor,
    respawn_cells: torch.Tensor,
    grid: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[CoinsState, torch.Tensor, torch.Tensor]:
    """Play one joint move in every game.

    All players move at once. Then ``m[k, c]`` says whether player ``k`` stands on coin
    ``c``'s cell, and player ``k`` gets ``sum_c m[k, c] - n / (n - 1) * sum_{k' != k}
    m[k', k]``. Every coin with any player on it moves to its respawn cell; the others stay.

    Parameters
    ----------
    state : CoinsState
        Positions before the move, shape (..., n) each.
    actions : Tensor of long, shape (..., n)
        Each player's action, 0 RIGHT, 1 LEFT, 2 DOWN, 3 UP, 4 STAY.
    respawn_cells : Tensor of long, shape (..., n)
        A new cell for every coin, drawn every step whatever happens (so the draws do not
        depend on the game) and used only for the coins picked up.
    grid : int
        Side ``g`` of the torus.
    dtype : torch.dtype
        Floating type of the rewards.

    Returns
    -------
    new_state : CoinsState
        Positions after the move and the respawns.
    rewards : Tensor of ``dtype``, shape (..., n)
        Each player's reward.
    collected : Tensor of bool, shape (..., n, n)
        ``collected[..., k, c]``: player ``k`` picked up coin ``c`` this step.
    """
    penalty = mismatch_penalty(state.n_players)
    agents = next_cells(state.agents, actions, grid)
    collected = agents.unsqueeze(-1) == state.coins.unsqueeze(-2)
    picked = collected.sum(-1)
    on_coin = collected.sum(-2)
    taken_by_others = on_coin - collected.diagonal(dim1=-2, dim2=-1).long()
    rewards = picked.to(dtype) - penalty * taken_by_others.to(dtype)
    coins = torch.where(on_coin > 0, respawn_cells, state.coins)
    return CoinsState(agents, coins), rewards, collected


def labels(state: CoinsState) -> torch.Tensor:
    """Cells of agents ``0..n-1`` then coins ``0..n-1``, shape (..., 2 n), long."""
    return torch.cat([state.agents, state.coins], dim=-1)


def _one_hot(cells: torch.Tensor, grid: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot planes of ``cells``: shape (*cells.shape, g, g), contiguous."""
    out = torch.zeros((*cells.shape, grid * grid), dtype=dtype, device=cells.device)
    out.scatter_(-1, cells.unsqueeze(-1), 1)
    return out.view(*cells.shape, grid, grid)


def canonical(state: CoinsState, grid: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The canonical state (player 0's view): one-hot planes of :func:`labels`.

    Returns
    -------
    Tensor of ``dtype``, shape (..., 2 n, g, g)
        Channels: agents ``0..n-1``, then coins ``0..n-1``.
    """
    return _one_hot(labels(state), grid, dtype)


def channel_order(
    n_players: int, layout: Layout = "egocentric", device: torch.device | str | None = None
) -> torch.Tensor:
    """Which canonical channel each player sees in each of its channels.

    Returns
    -------
    Tensor of long, shape (n, 2 n)
        ``order[k, j]`` is the canonical channel (agents ``0..n-1``, coins ``n..2n-1``) in
        player ``k``'s channel ``j``. ``"egocentric"``: ``[(k + j) % n for j < n]`` then the
        same plus ``n``; ``"faithful"``: ``(j + 2 k) % 2n``.
    """
    n = n_players
    k = torch.arange(n, device=device).unsqueeze(-1)
    if layout == "egocentric":
        block = (k + torch.arange(n, device=device)) % n
        return torch.cat([block, block + n], dim=-1)
    if layout == "faithful":
        return (k * 2 + torch.arange(2 * n, device=device)) % (2 * n)
    raise ValueError(f"unknown Coins observation layout {layout!r}; choose one of {LAYOUTS}")


def observe(
    state: CoinsState,
    grid: int,
    layout: Layout = "egocentric",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Every player's observation: its ``2 n`` one-hot planes in the order of ``layout``.

    Parameters
    ----------
    state : CoinsState
        Positions, shape (..., n) each.
    grid : int
        Side ``g`` of the torus.
    layout : {"egocentric", "faithful"}
        Channel order of each player, see :func:`channel_order`.
    dtype : torch.dtype
        Floating type of the planes.

    Returns
    -------
    Tensor of ``dtype``, shape (..., n, 2 n, g, g), contiguous
        ``obs[..., k]`` is player ``k``'s observation.
    """
    all_labels = labels(state)
    order = channel_order(state.n_players, layout, all_labels.device)
    return _one_hot(all_labels[..., order], grid, dtype)


def greedy_action(
    state: CoinsState, player: int, grid: int,
    targets: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """One step of ``player`` along a shortest torus path to its nearest coin.

    The nearest coin is the one fewest moves away, the lowest index among equals; the move
    is the first action (in action order) that brings the player one move closer, or STAY
    when it already stands on a coin. The coin is picked up after ``d`` such steps if it
    does not move meanwhile, ``d`` being its distance.

    Parameters
    ----------
    state : CoinsState
        Positions, shape (..., n) each.
    player : int
        Whose move.
    grid : int
        Side ``g`` of the torus.
    targets : sequence of int or Tensor of long, optional
        The coins to go for (default: all), e.g. ``[player]`` for its own coin only; a
        tensor on the state's device spares a copy to the device at every step.

    Returns
    -------
    Tensor of long, shape (...)
    """
    pos = state.agents[..., player].unsqueeze(-1)
    if targets is not None and not isinstance(targets, torch.Tensor):
        targets = torch.tensor(list(targets), dtype=torch.long, device=state.coins.device)
    coins = state.coins if targets is None else state.coins.index_select(-1, targets)
    n_coins = coins.shape[-1]
    # Distances are scaled so that adding the index breaks ties towards the lowest index.
    coin_key = torus_distance(pos, coins, grid) * n_coins
    coin_key += torch.arange(n_coins, device=coins.device)
    target = coins.gather(-1, coin_key.argmin(-1, keepdim=True))
    every_action = torch.arange(N_ACTIONS, device=pos.device)
    action_key = torus_distance(next_cells(pos, every_action, grid), target, grid) * N_ACTIONS
    return (action_key + every_action).argmin(-1)
