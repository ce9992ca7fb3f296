"""Spec of recip_tourney.tournament.schedule: the round-robin schedule, seeds and match ids.

A tournament of n agents and s seeds is n*n work units (every ordered pairing, self-play
included), each holding s seed slots. A slot's seed and match id come from a stable key of
what shapes that match, so they never move when the roster grows, is reordered, or gets
more seeds; any change to an agent's parameters gives its matches new seeds and ids.
"""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from recip_tourney.tournament.schedule import (
    MatchSpec,
    Player,
    derive_seed,
    match_id,
    round_robin,
)

GAME = "ipd-analytic"
SETTINGS = {"gamma": 0.96, "batch": 64}
SETTINGS_HASH = "0123456789abcdef"

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
param_values = st.one_of(
    st.integers(-5, 5),
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from(["as_implemented", "corrected"]),
    st.booleans(),
)
params = st.dictionaries(st.sampled_from(["lr", "tau", "mode", "k"]), param_values, max_size=3)


@st.composite
def players(draw: st.DrawFn, min_size: int = 1, max_size: int = 5) -> list[Player]:
    """A roster: distinct names, each with its parameter dict."""
    roster_names = draw(st.lists(names, min_size=min_size, max_size=max_size, unique=True))
    return [Player(name, draw(params)) for name in roster_names]


master_seeds = st.integers(0, 2**32)
seed_counts = st.integers(1, 4)


def schedule(roster: list[Player], n_seeds: int, master_seed: int = 0) -> list[MatchSpec]:
    return round_robin(GAME, SETTINGS, SETTINGS_HASH, master_seed, roster, n_seeds)


def by_pairing(specs: list[MatchSpec]) -> dict[tuple[str, str], MatchSpec]:
    return {(spec.agent.name, spec.opponent.name): spec for spec in specs}


def slots(spec: MatchSpec) -> list[tuple[int, int, str]]:
    return [(s.index, s.seed, s.match_id) for s in spec.seeds]


@given(players(), seed_counts, master_seeds)
def test_every_ordered_pairing_once_with_all_seeds(
    roster: list[Player], n_seeds: int, master_seed: int
) -> None:
    specs = schedule(roster, n_seeds, master_seed)
    n = len(roster)
    assert len(specs) == n * n
    pairings = [(spec.agent.name, spec.opponent.name) for spec in specs]
    assert sorted(pairings) == sorted((a.name, b.name) for a in roster for b in roster)
    for p in roster:  # self-play included
        assert (p.name, p.name) in pairings
    for spec in specs:
        assert spec.game == GAME
        assert spec.settings == SETTINGS
        assert spec.settings_hash == SETTINGS_HASH
        assert [s.index for s in spec.seeds] == list(range(n_seeds))
    ids = [s.match_id for spec in specs for s in spec.seeds]
    assert len(ids) == n * n * n_seeds
    assert len(set(ids)) == len(ids)


@given(players(), seed_counts, master_seeds)
def test_seeds_are_63_bit_and_ids_file_name_safe(
    roster: list[Player], n_seeds: int, master_seed: int
) -> None:
    for spec in schedule(roster, n_seeds, master_seed):
        for slot in spec.seeds:
            assert 0 <= slot.seed < 2**63
            assert slot.match_id.isalnum() and slot.match_id.isascii()
            assert slot.seed == derive_seed(
                GAME, master_seed, spec.agent, spec.opponent, slot.index
            )
            assert slot.match_id == match_id(SETTINGS_HASH, spec.agent, spec.opponent, slot.index)


@given(players(min_size=2, max_size=6), seed_counts, st.randoms(use_true_random=False))
def test_adding_or_reordering_agents_keeps_every_pairings_seeds_and_ids(
    roster: list[Player], n_seeds: int, rng: Any
) -> None:
    full = by_pairing(schedule(roster, n_seeds))
    subset = roster[: len(roster) // 2 or 1]
    for pairing, spec in by_pairing(schedule(subset, n_seeds)).items():
        assert slots(spec) == slots(full[pairing])
    shuffled = list(roster)
    rng.shuffle(shuffled)
    reordered = by_pairing(schedule(shuffled, n_seeds))
    assert reordered.keys() == full.keys()
    for pairing, spec in reordered.items():
        assert slots(spec) == slots(full[pairing])


@given(players(max_size=4), st.integers(1, 3), st.integers(1, 3))
def test_adding_seeds_keeps_the_first_seeds(roster: list[Player], k: int, extra: int) -> None:
    few = by_pairing(schedule(roster, k))
    more = by_pairing(schedule(roster, k + extra))
    for pairing, spec in few.items():
        assert slots(more[pairing])[:k] == slots(spec)
        assert len(more[pairing].seeds) == k + extra


@given(players(min_size=2, max_size=4), st.integers(2, 4), master_seeds)
def test_seeds_differ_between_directions_and_seed_indices(
    roster: list[Player], n_seeds: int, master_seed: int
) -> None:
    specs = by_pairing(schedule(roster, n_seeds, master_seed))
    all_seeds = [s.seed for spec in specs.values() for s in spec.seeds]
    assert len(set(all_seeds)) == len(all_seeds)
    a, b = roster[0].name, roster[1].name
    forward = [s.seed for s in specs[a, b].seeds]
    backward = [s.seed for s in specs[b, a].seeds]
    assert set(forward).isdisjoint(backward)
    assert len(set(forward)) == n_seeds


@given(players(min_size=2, max_size=4), seed_counts, master_seeds)
def test_the_master_seed_changes_every_seed_but_no_match_id(
    roster: list[Player], n_seeds: int, master_seed: int
) -> None:
    base = by_pairing(schedule(roster, n_seeds, master_seed))
    other = by_pairing(schedule(roster, n_seeds, master_seed + 1))
    for pairing, spec in base.items():
        for mine, theirs in zip(spec.seeds, other[pairing].seeds, strict=True):
            assert mine.seed != theirs.seed
            # the settings hash (which includes the master seed) keys the ids
            assert mine.match_id == theirs.match_id


@given(players(min_size=2, max_size=4), seed_counts, param_values)
def test_changing_an_agents_params_changes_its_matches_only(
    roster: list[Player], n_seeds: int, new_value: Any
) -> None:
    changed = roster[0]
    new_params = {**changed.params, "changed_key": new_value}
    edited = [Player(changed.name, new_params), *roster[1:]]
    before = by_pairing(schedule(roster, n_seeds))
    after = by_pairing(schedule(edited, n_seeds))
    for pairing, spec in before.items():
        old_slots, new_slots = spec.seeds, after[pairing].seeds
        if changed.name in pairing:
            for old, new in zip(old_slots, new_slots, strict=True):
                assert old.seed != new.seed
                assert old.match_id != new.match_id
        else:
            assert slots(spec) == slots(after[pairing])


@given(players(max_size=3), seed_counts)
def test_param_key_order_does_not_matter(roster: list[Player], n_seeds: int) -> None:
    flipped = [Player(p.name, dict(reversed(list(p.params.items())))) for p in roster]
    assert [slots(s) for s in schedule(roster, n_seeds)] == [
        slots(s) for s in schedule(flipped, n_seeds)
    ]


def test_settings_hash_keys_the_match_ids() -> None:
    a, b = Player("nl", {"lr": 1.0}), Player("tft", {})
    assert match_id("aaaa", a, b, 0) != match_id("bbbb", a, b, 0)
    assert match_id("aaaa", a, b, 0) == match_id("aaaa", Player("nl", {"lr": 1.0}), b, 0)
    assert derive_seed("g1", 0, a, b, 0) != derive_seed("g2", 0, a, b, 0)


@settings(max_examples=50)
@given(players(max_size=3), st.integers(1, 4), st.data())
def test_without_drops_exactly_the_finished_ids(
    roster: list[Player], n_seeds: int, data: st.DataObject
) -> None:
    specs = schedule(roster, n_seeds)
    every_id = sorted(s.match_id for spec in specs for s in spec.seeds)
    finished = set(data.draw(st.lists(st.sampled_from(every_id), unique=True)))
    finished |= set(data.draw(st.lists(st.text(min_size=1, max_size=5), max_size=2)))
    for spec in specs:
        left = spec.without(finished)
        kept = [s for s in spec.seeds if s.match_id not in finished]
        if not kept:
            assert left is None
            continue
        assert left is not None
        assert left.seeds == tuple(kept)
        assert (left.game, left.settings, left.settings_hash) == (
            spec.game,
            spec.settings,
            spec.settings_hash,
        )
        assert (left.agent, left.opponent) == (spec.agent, spec.opponent)
    # the original specs are unchanged (frozen data)
    assert sorted(s.match_id for spec in specs for s in spec.seeds) == every_id


def test_without_nothing_finished_is_the_same_spec_and_all_finished_is_none() -> None:
    (spec,) = schedule([Player("nl", {"lr": 1.0})], 3)
    assert spec.without(set()) == spec
    assert spec.without({s.match_id for s in spec.seeds}) is None


@given(players(max_size=3), seed_counts)
def test_specs_survive_pickling(roster: list[Player], n_seeds: int) -> None:
    for spec in schedule(roster, n_seeds):
        copy = pickle.loads(pickle.dumps(spec))
        assert copy == spec
        assert slots(copy) == slots(spec)
        assert copy.agent.params == spec.agent.params
