"""Shared fixtures: small synthetic tournaments written through the real results store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from recip_tourney.tournament.store import RUN_SCHEMA, ResultsDir

GAME = "ipd-analytic"
SETTINGS_HASH = "9f00d"
STATE_NAMES = ("overall", "start", "CC", "CD", "DC", "DD")
#: The tidy payoff table's columns, in order, exactly as the issue specifies them.
PAYOFF_COLUMNS = [
    "agent",
    "opponent",
    "reward_mean",
    "reward_sem",
    "reward_std",
    "reward_ci95_low",
    "reward_ci95_high",
    "opponent_reward_mean",
    "opponent_reward_sem",
    "opponent_reward_std",
    "opponent_reward_ci95_low",
    "opponent_reward_ci95_high",
    "n_seeds",
]


def make_record(
    agent: str,
    opponent: str,
    seed_index: int,
    reward: float,
    opponent_reward: float,
    p_cooperate: float = 0.5,
    opponent_p_cooperate: float = 0.5,
) -> dict[str, Any]:
    """A valid match record; every state of a side gets the same P(cooperate) except
    ``start``, which gets half of it (so state columns are distinguishable)."""
    match_id = hashlib.sha1(f"{agent}|{opponent}|{seed_index}".encode()).hexdigest()[:16]

    def side(p: float) -> dict[str, float]:
        return {state: p / 2 if state == "start" else p for state in STATE_NAMES}

    return {
        "schema": "recip-tourney/match/1",
        "match_id": match_id,
        "game": GAME,
        "settings_hash": SETTINGS_HASH,
        "agent": agent,
        "opponent": opponent,
        "agent_params": {},
        "opponent_params": {},
        "seed_index": seed_index,
        "seed": 1000 + seed_index,
        "summary": {"reward": reward, "opponent_reward": opponent_reward},
        "cooperation": {"agent": side(p_cooperate), "opponent": side(opponent_p_cooperate)},
        "curves": {"reward": [reward - 1, reward], "opponent_reward": [0.0, opponent_reward]},
        "elapsed_s": 0.01,
    }


def make_manifest(roster: Sequence[str]) -> dict[str, Any]:
    """A run manifest as ``ResultsDir.prepare`` expects it."""
    return {
        "schema": RUN_SCHEMA,
        "game": GAME,
        "settings_hash": SETTINGS_HASH,
        "config": {"roster": list(roster)},
    }


def store(path: Path, roster: Sequence[str], records: Sequence[dict[str, Any]]) -> Path:
    """Write a manifest and records with the real store code; returns ``path``."""
    results = ResultsDir(path)
    results.prepare(make_manifest(roster))
    for record in records:
        results.write_match(record)
    return path


def small_tournament_records() -> list[dict[str, Any]]:
    """Roster nl, lola; ``a_b`` is not in the roster and so is shown last.

    - nl vs lola, 3 seeds: rewards -1, -2, -3 (opponent always -0.5), P(C) 0.2, 0.4, 0.6
    - lola vs nl, 1 seed: -1.25 / -1.5 (spreads NaN)
    - nl vs nl, 2 seeds: -1 / -1 and -1.5 / -1.5
    - a_b vs nl, 2 seeds
    Pairings lola vs lola, nl vs a_b, ... are missing.
    """
    return [
        make_record("nl", "lola", 0, -1.0, -0.5, 0.2, 0.9),
        make_record("nl", "lola", 2, -3.0, -0.5, 0.6, 0.9),
        make_record("nl", "lola", 1, -2.0, -0.5, 0.4, 0.9),
        make_record("lola", "nl", 0, -1.25, -1.5, 0.3, 0.1),
        make_record("nl", "nl", 0, -1.0, -1.0),
        make_record("nl", "nl", 1, -1.5, -1.5),
        make_record("a_b", "nl", 0, -2.0, -2.5),
        make_record("a_b", "nl", 1, -2.5, -3.0),
    ]


@pytest.fixture
def results_path(tmp_path: Path) -> Path:
    """A results directory holding :func:`small_tournament_records`."""
    return store(tmp_path / "results", ["nl", "lola"], small_tournament_records())


@pytest.fixture
def write_results(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``write_results(roster, records)`` stores them in a fresh directory."""
    counter = iter(range(10**6))

    def write(roster: Sequence[str], records: Sequence[dict[str, Any]]) -> Path:
        return store(tmp_path / f"results{next(counter)}", roster, records)

    return write


_TINY: dict[str, list[dict[str, Any]]] = {}


def tiny_artifacts(name: str) -> list[dict[str, Any]]:
    """Artifacts of agent ``name`` against itself with the ci profile's tiny budgets.

    M-MAML uses its trained initialisations here (the shipped config uses the published).

    Trained once per test session into a temporary cache (a second or two each).
    """
    if name not in _TINY:
        import tempfile

        from recip_tourney.agents.base import PairingContext, agent_class
        from recip_tourney.config import load_config
        from recip_tourney.pretrain.artifacts import ensure
        from recip_tourney.pretrain.cache import ArtifactCache
        from recip_tourney.tournament.schedule import Player

        cfg = load_config("ipd-analytic", "ci", overrides=["agents.mmaml.init=trained"])
        me = Player(name, cfg.agent_params[name])
        pairing = PairingContext(me, me, cfg.settings.model_dump(), cfg.agent_params)
        specs = agent_class("ipd-analytic", name).artifacts(pairing)
        cache = ArtifactCache(Path(tempfile.mkdtemp(prefix="tiny-artifacts-")), packaged=False)
        payloads = ensure(specs, cache, progress=False)
        _TINY[name] = [payloads[s.digest] for s in specs]
    return _TINY[name]


@pytest.fixture(autouse=True, scope="session")
def _private_pretraining_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never write to the user's cache: RECIP_TOURNEY_CACHE points to a temp dir."""
    import os

    os.environ["RECIP_TOURNEY_CACHE"] = str(tmp_path_factory.mktemp("pretraining-cache"))


# -- devices ---------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` need CUDA: without it they are skipped, saying why."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch sees none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def strict_device() -> Any:
    """Make tensors created without an explicit device land on torch's ``meta`` device.

    A match run with ``device="cpu"`` under this fixture fails wherever the code creates a
    tensor without naming the match's device and mixes it with the match's own tensors:
    exactly what would break on cuda, found on a machine without a GPU.
    """
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)
