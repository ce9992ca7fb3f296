"""Spec of the Coins environment (the n-player Coin Game on a g x g torus).

- Cells are flat labels ``row * g + col``; actions 0 RIGHT (0, +1), 1 LEFT (0, -1),
  2 DOWN (+1, 0), 3 UP (-1, 0), 4 STAY, all wrapping around the edges.
- After the simultaneous move, every player on a coin's cell gets +1 per coin there (own or
  other); the owner of a coin loses n / (n - 1) per *other* player on it (-2 for n = 2,
  -1.5 for n = 3). Every coin with a player on it moves to its pre-drawn respawn cell; the
  others stay.
- Observations: 2n one-hot planes per player. Canonical order [a0..a(n-1), c0..c(n-1)];
  "egocentric" rolls each block by -k for player k, "faithful" rolls all 2n channels by -2k
  (the reference code). The canonical state is player 0's view; argmax of its planes gives
  ``labels`` = [agents, coins].
- Randomness is pre-drawn per seed from that seed's generator.
- ``greedy_action`` walks a shortest torus path to the nearest coin.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recip_tourney.envs import coins as env

RIGHT, LEFT, DOWN, UP, STAY = 0, 1, 2, 3, 4
#: The (row, col) step of each action, restated from the spec.
STEP = {RIGHT: (0, 1), LEFT: (0, -1), DOWN: (1, 0), UP: (-1, 0), STAY: (0, 0)}
G = 3


# ----------------------------------------------------------------------------- helpers


def cell(row: int, col: int, g: int = G) -> int:
    return row * g + col


def state(agents: list[int], coins: list[int]) -> env.CoinsState:
    """One game (no batch dims)."""
    return env.CoinsState(torch.tensor(agents), torch.tensor(coins))


def play(
    agents: list[int],
    coins: list[int],
    actions: list[int],
    respawn: list[int] | None = None,
    g: int = G,
) -> tuple[env.CoinsState, list[float], torch.Tensor]:
    """One step of one game; respawn cells default to 8, 7, ... (recognisable)."""
    n = len(agents)
    respawn = respawn if respawn is not None else [g * g - 1 - c for c in range(n)]
    new, rewards, collected = env.step(
        state(agents, coins), torch.tensor(actions), torch.tensor(respawn), g
    )
    return new, rewards.tolist(), collected


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def plane(cell_label: int, g: int = G) -> torch.Tensor:
    """The one-hot g x g plane of one cell."""
    out = torch.zeros(g, g)
    out[divmod(cell_label, g)] = 1.0
    return out


def bfs_distances(g: int) -> list[list[int]]:
    """All-pairs move counts on the g x g torus by breadth-first search (oracle)."""
    dist = []
    for start in range(g * g):
        d = {start: 0}
        frontier = [start]
        while frontier:
            nxt = []
            for c in frontier:
                r, k = divmod(c, g)
                for dr, dc in STEP.values():
                    n_cell = cell((r + dr) % g, (k + dc) % g, g)
                    if n_cell not in d:
                        d[n_cell] = d[c] + 1
                        nxt.append(n_cell)
            frontier = nxt
        dist.append([d[c] for c in range(g * g)])
    return dist


# ----------------------------------------------------------------------------- moves


@pytest.mark.parametrize("g", [2, 3, 4])
def test_every_action_from_every_cell_wraps_around_the_torus(g: int) -> None:
    for r, c, a in itertools.product(range(g), range(g), range(5)):
        dr, dc = STEP[a]
        got = env.next_cells(torch.tensor(cell(r, c, g)), torch.tensor(a), g).item()
        assert got == cell((r + dr) % g, (c + dc) % g, g)


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        ((1, 2), RIGHT, (1, 0)),
        ((1, 0), LEFT, (1, 2)),
        ((2, 1), DOWN, (0, 1)),
        ((0, 1), UP, (2, 1)),
        ((0, 0), STAY, (0, 0)),
        ((2, 2), RIGHT, (2, 0)),
        ((2, 2), DOWN, (0, 2)),
        ((0, 0), UP, (2, 0)),
        ((0, 0), LEFT, (0, 2)),
        ((1, 1), RIGHT, (1, 2)),
    ],
)
def test_edge_moves_on_3x3(start, action, end) -> None:
    free = [c for c in range(G * G) if c not in (cell(*start), cell(*end))]
    new, rewards, _ = play([cell(*start), cell(*start)], free[:2], [action, STAY])
    assert new.agents.tolist() == [cell(*end), cell(*start)]
    assert rewards == [0.0, 0.0]


def test_moves_are_simultaneous_and_players_may_share_a_cell() -> None:
    new, rewards, _ = play([cell(0, 0), cell(0, 2)], [cell(2, 2), cell(2, 2)], [RIGHT, LEFT])
    assert new.agents.tolist() == [cell(0, 1), cell(0, 1)]
    assert rewards == [0.0, 0.0]


# ----------------------------------------------------------------------------- rewards


def test_own_coin_gives_plus_one() -> None:
    new, rewards, collected = play(
        [cell(0, 0), cell(2, 2)], [cell(0, 1), cell(1, 1)], [RIGHT, STAY]
    )
    assert rewards == [1.0, 0.0]
    assert collected.tolist() == [[True, False], [False, False]]


def test_other_players_coin_gives_plus_one_to_collector_and_minus_two_to_owner() -> None:
    _, rewards, collected = play([cell(0, 0), cell(2, 2)], [cell(1, 1), cell(0, 1)], [RIGHT, STAY])
    assert rewards == [1.0, -2.0]
    assert collected.tolist() == [[False, True], [False, False]]
    _, rewards, _ = play([cell(2, 2), cell(0, 0)], [cell(0, 1), cell(1, 1)], [STAY, RIGHT])
    assert rewards == [-2.0, 1.0]


def test_both_players_land_on_coin_0() -> None:
    # Player 0: +1 for its coin, -2 because player 1 also took it; player 1: +1.
    _, rewards, collected = play([cell(0, 0), cell(0, 2)], [cell(0, 1), cell(2, 2)], [RIGHT, LEFT])
    assert rewards == [-1.0, 1.0]
    assert collected.tolist() == [[True, False], [True, False]]


def test_both_players_land_on_coin_1() -> None:
    _, rewards, _ = play([cell(0, 0), cell(0, 2)], [cell(2, 2), cell(0, 1)], [RIGHT, LEFT])
    assert rewards == [1.0, -1.0]


def test_a_player_standing_on_both_coins_takes_both() -> None:
    # Player 0 takes its own (+1) and player 1's (+1); player 1 loses 2.
    new, rewards, collected = play(
        [cell(1, 1), cell(2, 2)],
        [cell(1, 1), cell(1, 1)],
        [STAY, STAY],
        respawn=[cell(0, 0), cell(0, 2)],
    )
    assert rewards == [2.0, -2.0]
    assert collected.tolist() == [[True, True], [False, False]]
    assert new.coins.tolist() == [cell(0, 0), cell(0, 2)]
    # Player 1 on both coins: +2 for itself, -2 for player 0.
    _, rewards, _ = play([cell(2, 2), cell(1, 1)], [cell(1, 1), cell(1, 1)], [STAY, STAY])
    assert rewards == [-2.0, 2.0]


def test_both_players_on_both_coins() -> None:
    # Each takes two coins (+2) and loses 2 for the other taking its coin.
    _, rewards, collected = play([cell(1, 1), cell(1, 1)], [cell(1, 1), cell(1, 1)], [STAY, STAY])
    assert rewards == [0.0, 0.0]
    assert collected.all()


def test_three_players_penalty_is_one_and_a_half() -> None:
    # Player 1 takes player 0's coin: +1 to player 1, -1.5 to player 0.
    _, rewards, collected = play(
        [cell(0, 0), cell(1, 0), cell(2, 2)],
        [cell(1, 1), cell(2, 1), cell(0, 2)],
        [STAY, RIGHT, STAY],
    )
    assert rewards == [-1.5, 1.0, 0.0]
    assert collected[1].tolist() == [True, False, False]
    # Players 1 and 2 both take player 0's coin: -3 for player 0.
    _, rewards, _ = play(
        [cell(0, 0), cell(1, 0), cell(1, 2)],
        [cell(1, 1), cell(2, 1), cell(0, 2)],
        [STAY, RIGHT, LEFT],
    )
    assert rewards == [-3.0, 1.0, 1.0]
    assert env.mismatch_penalty(2) == 2.0 and env.mismatch_penalty(3) == 1.5


def test_no_coin_no_reward_and_one_player_rejected() -> None:
    _, rewards, collected = play([0, 1], [5, 6], [STAY, STAY])
    assert rewards == [0.0, 0.0] and not collected.any()
    with pytest.raises(ValueError):
        play([0], [1], [STAY])


def test_reward_dtype_is_selectable() -> None:
    s = state([0, 1], [1, 5])
    a, r = torch.tensor([RIGHT, STAY]), torch.tensor([8, 8])
    assert env.step(s, a, r, G)[1].dtype == torch.float32
    assert env.step(s, a, r, G, dtype=torch.float64)[1].dtype == torch.float64


# ----------------------------------------------------------------------------- respawn


def test_only_collected_coins_respawn_exactly_at_the_given_cell() -> None:
    new, _, _ = play(
        [cell(0, 0), cell(2, 0)],
        [cell(0, 1), cell(1, 1)],
        [RIGHT, STAY],
        respawn=[cell(2, 2), cell(0, 2)],
    )
    assert new.coins.tolist() == [cell(2, 2), cell(1, 1)]


def test_respawn_may_land_under_a_player_who_then_takes_it_by_staying() -> None:
    new, _, _ = play(
        [cell(0, 0), cell(2, 0)],
        [cell(0, 1), cell(1, 1)],
        [RIGHT, STAY],
        respawn=[cell(0, 1), cell(2, 2)],
    )
    assert new.coins.tolist() == [cell(0, 1), cell(1, 1)]
    new2, rewards, _ = env.step(new, torch.tensor([STAY, STAY]), torch.tensor([4, 4]), G)
    assert rewards.tolist() == [1.0, 0.0]
    assert new2.coins.tolist() == [4, cell(1, 1)]


def test_step_does_not_modify_its_input() -> None:
    s = state([0, 1], [1, 2])
    before = [t.clone() for t in s]
    env.step(s, torch.tensor([RIGHT, RIGHT]), torch.tensor([8, 8]), G)
    assert all(torch.equal(a, b) for a, b in zip(s, before, strict=True))


def test_batched_step_equals_game_by_game() -> None:
    gen = torch.Generator().manual_seed(3)
    s = env.reset(torch.randint(9, (4, 5, 6), generator=gen))
    actions = torch.randint(5, (4, 5, 3), generator=gen)
    respawn = torch.randint(9, (4, 5, 3), generator=gen)
    new, rewards, collected = env.step(s, actions, respawn, G)
    assert new.agents.shape == (4, 5, 3) and rewards.shape == (4, 5, 3)
    assert collected.shape == (4, 5, 3, 3) and collected.dtype == torch.bool
    for i, j in itertools.product(range(4), range(5)):
        one = env.CoinsState(s.agents[i, j], s.coins[i, j])
        n1, r1, c1 = env.step(one, actions[i, j], respawn[i, j], G)
        assert torch.equal(n1.agents, new.agents[i, j]) and torch.equal(n1.coins, new.coins[i, j])
        assert torch.equal(r1, rewards[i, j]) and torch.equal(c1, collected[i, j])


# ----------------------------------------------------------------------------- reset, RNG


def test_draw_cells_of_a_seed_do_not_depend_on_the_other_seeds() -> None:
    alone = env.draw_cells(gens(7), (5, 4), 9)
    batch = env.draw_cells(gens(3, 7, 11), (5, 4), 9)
    assert alone.shape == (1, 5, 4) and batch.shape == (3, 5, 4)
    assert alone.dtype == torch.long
    assert torch.equal(alone[0], batch[1])
    assert torch.equal(env.draw_cells(gens(3), (5, 4), 9)[0], batch[0])
    assert int(batch.min()) >= 0 and int(batch.max()) < 9


def test_draw_cells_is_uniform_over_cells() -> None:
    draws = env.draw_cells(gens(0), (9000,), 9)
    counts = torch.bincount(draws.flatten(), minlength=9)
    assert counts.min() > 850 and counts.max() < 1150


def test_reset_splits_agents_then_coins_and_allows_overlaps() -> None:
    s = env.reset(torch.tensor([[4, 4, 4, 0]]))
    assert s.agents.tolist() == [[4, 4]] and s.coins.tolist() == [[4, 0]]
    assert s.n_players == 2
    draws = env.draw_cells(gens(1, 2), (8, 6), 9)
    s3 = env.reset(draws)
    assert s3.agents.shape == (2, 8, 3) and torch.equal(env.labels(s3), draws)
    assert torch.equal(env.reset(draws, 3).coins, s3.coins)
    with pytest.raises(ValueError):
        env.reset(draws, 2)
    with pytest.raises(ValueError):
        env.reset(torch.zeros(4, 5, dtype=torch.long))


# ----------------------------------------------------------------------------- observations

A, C = "a", "c"
#: Which object each player sees in each channel, per layout and number of players.
LAYOUT_TABLE = {
    ("egocentric", 2): [[A + "0", A + "1", C + "0", C + "1"], [A + "1", A + "0", C + "1", C + "0"]],
    ("faithful", 2): [[A + "0", A + "1", C + "0", C + "1"], [C + "0", C + "1", A + "0", A + "1"]],
    ("egocentric", 3): [
        ["a0", "a1", "a2", "c0", "c1", "c2"],
        ["a1", "a2", "a0", "c1", "c2", "c0"],
        ["a2", "a0", "a1", "c2", "c0", "c1"],
    ],
    ("faithful", 3): [
        ["a0", "a1", "a2", "c0", "c1", "c2"],
        ["a2", "c0", "c1", "c2", "a0", "a1"],
        ["c1", "c2", "a0", "a1", "a2", "c0"],
    ],
}


@pytest.mark.parametrize(("layout", "n"), list(LAYOUT_TABLE))
def test_observation_channels_of_every_player(layout: str, n: int) -> None:
    # All 2n objects on distinct cells so every plane is identifiable.
    agents, coins = [8, 0, 5][:n], [3, 7, 1][:n]
    where = {f"a{k}": agents[k] for k in range(n)} | {f"c{k}": coins[k] for k in range(n)}
    obs = env.observe(state(agents, coins), G, layout=layout)
    assert obs.shape == (n, 2 * n, G, G) and obs.dtype == torch.float32
    for k, names in enumerate(LAYOUT_TABLE[(layout, n)]):
        for j, name in enumerate(names):
            assert torch.equal(obs[k, j], plane(where[name])), (k, j, name)


def test_canonical_is_player_0s_view_in_both_layouts() -> None:
    s = env.reset(env.draw_cells(gens(1, 2), (7, 6), 16))
    can = env.canonical(s, 4)
    assert can.shape == (2, 7, 6, 4, 4)
    assert torch.equal(can, env.observe(s, 4, layout="faithful")[..., 0, :, :, :])
    assert torch.equal(can, env.observe(s, 4, layout="egocentric")[..., 0, :, :, :])


def test_observation_shape_dtype_and_contiguity_with_leading_dims() -> None:
    s = env.reset(env.draw_cells(gens(1, 2), (5, 4), 9))
    obs = env.observe(s, G, dtype=torch.float64)
    assert obs.shape == (2, 5, 2, 4, G, G) and obs.dtype == torch.float64
    assert obs.is_contiguous() and env.canonical(s, G).is_contiguous()
    assert torch.equal(obs.sum((-2, -1)), torch.ones(2, 5, 2, 4, dtype=torch.float64))


def test_labels_round_trip() -> None:
    s = env.reset(env.draw_cells(gens(5, 6), (11, 6), 9))
    lab = env.labels(s)
    assert lab.shape == (2, 11, 6) and lab.dtype == torch.long
    assert torch.equal(env.canonical(s, G).flatten(-2).argmax(-1), lab)
    back = env.reset(lab)
    assert torch.equal(back.agents, s.agents) and torch.equal(back.coins, s.coins)


def test_unknown_layout_is_rejected() -> None:
    with pytest.raises(ValueError, match="egocentric"):
        env.observe(state([0, 1], [2, 3]), G, layout="mirror")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- greedy


def all_states(n: int, g: int) -> env.CoinsState:
    """Every placement of n agents and n coins on the g x g torus, one per game."""
    grids = torch.cartesian_prod(*[torch.arange(g * g)] * (2 * n))
    return env.reset(grids)


@pytest.mark.parametrize("g", [3, 4])
def test_torus_distance_matches_breadth_first_search(g: int) -> None:
    cells = torch.arange(g * g)
    got = env.torus_distance(cells.unsqueeze(-1), cells, g)
    assert got.tolist() == bfs_distances(g)


@pytest.mark.parametrize("g", [3, 4])
@pytest.mark.parametrize("player", [0, 1])
def test_greedy_action_is_optimal_in_every_two_player_state(g: int, player: int) -> None:
    dist = torch.tensor(bfs_distances(g))
    s = all_states(2, g)
    act = env.greedy_action(s, player, g)
    pos = s.agents[:, player]
    nearest = dist[pos.unsqueeze(-1), s.coins].min(-1).values
    after = dist[env.next_cells(pos, act, g).unsqueeze(-1), s.coins].min(-1).values
    # Brute force: the best any action could do.
    every = env.next_cells(pos.unsqueeze(-1), torch.arange(5), g)
    best = dist[every.unsqueeze(-1), s.coins.unsqueeze(-2)].min(-1).values.min(-1).values
    assert torch.equal(after, best)
    assert torch.equal(after, (nearest - 1).clamp(min=0))
    assert torch.equal(act == STAY, nearest == 0)


def test_greedy_action_tie_breaks_lowest_coin_then_action_order() -> None:
    # Player 0 at (1, 1): coin 0 at (1, 0) and coin 1 at (1, 2) both 1 move away -> LEFT.
    assert env.greedy_action(state([4, 0], [3, 5]), 0, G).item() == LEFT
    # Coin diagonally down-right: RIGHT comes before DOWN.
    assert env.greedy_action(state([0, 4], [4, 7]), 0, G).item() == RIGHT
    # Own coin only.
    assert env.greedy_action(state([4, 0], [3, 5]), 0, G, targets=[1]).item() == RIGHT


@pytest.mark.parametrize(("n", "g"), [(2, 3), (3, 5)])
def test_greedy_player_reaches_a_coin_within_its_distance(n: int, g: int) -> None:
    s = env.reset(env.draw_cells(gens(9), (400, 2 * n), g * g)[0])
    others_off_coins = ~(s.agents[:, 1:].unsqueeze(-1) == s.coins.unsqueeze(-2)).any((-2, -1))
    s = env.CoinsState(s.agents[others_off_coins], s.coins[others_off_coins])
    d0 = env.torus_distance(s.agents[:, :1], s.coins, g).min(-1).values
    reached_at = torch.full_like(d0, -1)
    respawn = torch.zeros_like(s.coins)
    for t in range(g):  # the largest distance on the torus is 2 * (g // 2) <= g
        actions = torch.full_like(s.agents, STAY)
        actions[:, 0] = env.greedy_action(s, 0, g)
        s, _, collected = env.step(s, actions, respawn, g)
        first = collected[:, 0].any(-1) & (reached_at < 0)
        reached_at[first] = t + 1
    at_start = d0 == 0
    assert torch.equal(reached_at[~at_start], d0[~at_start])
    assert torch.equal(reached_at[at_start], torch.ones_like(d0[at_start]))  # STAY picks it up


# ----------------------------------------------------------------------------- properties


@st.composite
def games(draw: st.DrawFn) -> tuple[int, int, torch.Tensor, ...]:
    """n, g, then agents, coins, actions and respawn cells of a small batch of games."""
    n = draw(st.integers(2, 4))
    g = draw(st.integers(2, 5))
    batch = draw(st.integers(1, 5))

    def cells(hi: int) -> torch.Tensor:
        row = st.lists(st.integers(0, hi - 1), min_size=n, max_size=n)
        return torch.tensor(draw(st.lists(row, min_size=batch, max_size=batch)))

    return n, g, cells(g * g), cells(g * g), cells(5), cells(g * g)


@settings(max_examples=60, deadline=None)
@given(games())
def test_step_properties(game) -> None:
    n, g, agents, coins, actions, respawn = game
    s = env.CoinsState(agents, coins)
    new, rewards, collected = env.step(s, actions, respawn, g, dtype=torch.float64)
    penalty = n / (n - 1)
    taken = collected.sum((-2, -1))
    taken_from_others = taken - collected.diagonal(dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(
        rewards.sum(-1), taken.double() - penalty * taken_from_others.double()
    )
    # Player by player: +1 per coin under it, -penalty per other player on its own coin.
    for k in range(n):
        on_own = collected[..., :, k].sum(-1) - collected[..., k, k].long()
        torch.testing.assert_close(
            rewards[..., k], collected[..., k, :].sum(-1).double() - penalty * on_own.double()
        )
    # Collected means standing on it after the move; only collected coins move.
    moved = env.next_cells(agents, actions, g)
    assert torch.equal(new.agents, moved)
    assert torch.equal(collected, moved.unsqueeze(-1) == coins.unsqueeze(-2))
    hit = collected.any(-2)
    assert torch.equal(new.coins[hit], respawn[hit]) and torch.equal(new.coins[~hit], coins[~hit])
    for layout in env.LAYOUTS:
        obs = env.observe(new, g, layout=layout)
        assert obs.shape == (*agents.shape[:-1], n, 2 * n, g, g)
        assert torch.equal(obs.sum((-2, -1)), torch.ones(obs.shape[:-2]))
        assert set(obs.unique().tolist()) <= {0.0, 1.0}
