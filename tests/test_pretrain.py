"""The pretraining cache and the M-FOS trainer: keys, verification, retraining, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recip_tourney.agents.base import PairingContext, agent_class
from recip_tourney.agents.gaussian_ppo import GaussianActorCritic
from recip_tourney.config import load_config
from recip_tourney.envs.ipd_analytic import AnalyticIPD
from recip_tourney.errors import UserError
from recip_tourney.pretrain import mfos as mfos_training
from recip_tourney.pretrain.artifacts import ensure
from recip_tourney.pretrain.cache import ARTIFACT, META, ArtifactCache
from recip_tourney.tournament.schedule import Player


def specs_for(against: str, *extra: str, **overrides: object):
    sets = [f"agents.mfos.{k}={v}" for k, v in overrides.items()]
    cfg = load_config("ipd-analytic", "ci", overrides=[*sets, *extra])
    me = Player("mfos", cfg.agent_params["mfos"])
    opponent = Player(against, cfg.agent_params[against])
    pairing = PairingContext(me, opponent, cfg.settings.model_dump(), cfg.agent_params)
    return agent_class("ipd-analytic", "mfos").artifacts(pairing)


def cache_at(path: Path) -> ArtifactCache:
    return ArtifactCache(path, packaged=False)


def test_key_digest_changes_with_what_determines_the_artifact():
    base = specs_for("nl")[0].digest
    assert specs_for("nl")[0].digest == base
    assert specs_for("lola")[0].digest != base
    assert specs_for("nl", lr=0.001)[0].digest != base
    assert specs_for("nl", meta_episodes=4)[0].digest != base
    assert len({s.digest for s in specs_for("nl", train_seeds=3)}) == 3


def test_mfos_against_mmaml_depends_on_the_mmaml_artifact():
    (spec,) = specs_for("mmaml", "agents.mmaml.init=trained")
    assert [r.kind for r in spec.requires] == ["mmaml"]
    (published,) = specs_for("mmaml")
    assert published.requires == () and published.digest != spec.digest


def test_missing_artifact_without_training_names_the_command(tmp_path):
    with pytest.raises(UserError, match="recip-tourney pretrain mfos --against nl"):
        ensure(specs_for("nl"), cache_at(tmp_path), train=False, progress=False)


def test_trains_once_then_loads_the_verified_artifact(tmp_path):
    specs = specs_for("nl")
    first = ensure(specs, cache_at(tmp_path), progress=False)
    folder = tmp_path / "mfos" / specs[0].digest
    meta = json.loads((folder / META).read_text())
    assert meta["digest"] == specs[0].digest and meta["key"]["against"]["name"] == "nl"
    assert meta["command"] == "recip-tourney pretrain mfos --against nl"
    lines = (folder / "log.jsonl").read_text().splitlines()
    assert len(lines) == 1 + specs[0].key["mfos"]["meta_episodes"]
    stamp = (folder / ARTIFACT).stat().st_mtime_ns
    again = ensure(specs, cache_at(tmp_path), train=False, progress=False)
    assert (folder / ARTIFACT).stat().st_mtime_ns == stamp
    for name, value in first[specs[0].digest]["player0"].items():
        assert torch.equal(value, again[specs[0].digest]["player0"][name])


@pytest.mark.parametrize("damage", ["bytes", "meta", "missing"])
def test_a_corrupt_artifact_is_moved_aside_and_retrained(tmp_path, damage):
    specs = specs_for("nl")
    good = ensure(specs, cache_at(tmp_path), progress=False)[specs[0].digest]
    folder = tmp_path / "mfos" / specs[0].digest
    if damage == "bytes":
        (folder / ARTIFACT).write_bytes(b"not a torch file")
    elif damage == "meta":
        (folder / META).write_text("{ half")
    else:
        (folder / ARTIFACT).unlink()
    cache = cache_at(tmp_path)
    assert cache.load("mfos", specs[0].digest) is None
    assert "retraining" in cache.notices[0]
    assert len(list((tmp_path / "corrupt").iterdir())) == 1
    with pytest.raises(UserError):
        ensure(specs, cache_at(tmp_path), train=False, progress=False)
    retrained = ensure(specs, cache_at(tmp_path), progress=False)[specs[0].digest]
    for name, value in good["player0"].items():  # deterministic: the same artifact again
        assert torch.equal(value, retrained["player0"][name])


def test_an_artifact_under_another_key_is_not_used(tmp_path):
    nl, lola = specs_for("nl")[0], specs_for("lola")[0]
    ensure([nl], cache_at(tmp_path), progress=False)
    (tmp_path / "mfos" / nl.digest).rename(tmp_path / "mfos" / lola.digest)
    cache = cache_at(tmp_path)
    assert cache.load("mfos", lola.digest) is None
    assert "names another key" in cache.notices[0]


def test_packaged_artifacts_are_read_but_never_moved(tmp_path, monkeypatch):
    specs = specs_for("nl")
    ensure(specs, cache_at(tmp_path / "shipped"), progress=False)
    monkeypatch.setattr("recip_tourney.pretrain.cache.packaged_root", lambda: tmp_path / "shipped")
    cache = ArtifactCache(tmp_path / "user")
    assert cache.load("mfos", specs[0].digest) is not None
    (tmp_path / "shipped" / "mfos" / specs[0].digest / ARTIFACT).write_bytes(b"x")
    cache = ArtifactCache(tmp_path / "user")
    assert cache.load("mfos", specs[0].digest) is None
    assert (tmp_path / "shipped" / "mfos" / specs[0].digest).exists()


def test_an_interrupted_training_resumes_to_the_same_artifact(tmp_path, monkeypatch):
    monkeypatch.setattr(mfos_training, "CHECKPOINT_EVERY", 1)
    specs = specs_for("nl", meta_episodes=4)
    whole = ensure(specs, cache_at(tmp_path / "whole"), progress=False)[specs[0].digest]

    original = mfos_training.play_against_learner
    calls = {"n": 0}

    def dies_in_episode_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(mfos_training, "play_against_learner", dies_in_episode_three)
    with pytest.raises(KeyboardInterrupt):
        ensure(specs, cache_at(tmp_path / "cut"), progress=False)
    assert (tmp_path / "cut" / "mfos" / specs[0].digest / "checkpoint.pt").is_file()
    replayed = {"n": 0}

    def counted(*args, **kwargs):
        replayed["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(mfos_training, "play_against_learner", counted)
    resumed = ensure(specs, cache_at(tmp_path / "cut"), progress=False)[specs[0].digest]
    assert replayed["n"] == 2  # episodes 0 and 1 came from the checkpoint
    assert not (tmp_path / "cut" / "corrupt").exists()  # a checkpoint is not a corrupt artifact
    for name, value in whole["player0"].items():
        assert torch.equal(value, resumed["player0"][name])
    folder = tmp_path / "cut" / "mfos" / specs[0].digest
    assert not (folder / "checkpoint.pt").exists()
    assert len((folder / "log.jsonl").read_text().splitlines()) == 1 + 4


def test_self_play_curriculum_trains_two_players(tmp_path):
    (spec,) = specs_for("mfos", curriculum_decay=0.5, meta_episodes=3)
    payload = ensure([spec], cache_at(tmp_path), progress=False)[spec.digest]
    assert set(payload) == {"player0", "player1"}
    log = [json.loads(x) for x in (tmp_path / "mfos" / spec.digest / "log.jsonl").open()][1:]
    # lambda = 0.5, 0, -0.5: the last two meta-episodes are certainly self-play
    assert [row["self_play"] for row in log][1:] == [True, True]


def test_meta_episode_rewards_and_the_reciprocator_swap():
    game = AnalyticIPD(0.96, torch.float64)
    net = GaussianActorCritic(10, 5, 8, torch.Generator().manual_seed(0), torch.float64)
    out = {}
    for swap in (False, True):
        opponent = mfos_training.new_opponent(Player("nl", {"lr": 1.0}), game, 1.0, 6, [])
        out[swap] = mfos_training.play_against_learner(
            net, opponent, game, batch=6, steps=4, init_std=1.0,
            generator=torch.Generator().manual_seed(3), swap_rewards=swap,
        )  # fmt: skip
    (plain, mine, theirs), (swapped, mine2, theirs2) = out[False], out[True]
    assert (mine, theirs) == (mine2, theirs2)  # logged rewards are always the true ones
    assert plain.rewards.mean().item() == pytest.approx(mine)
    assert swapped.rewards.mean().item() == pytest.approx(theirs)
    assert plain.states.shape == (4 * 6, 10) and plain.actions.shape == (4 * 6, 5)
