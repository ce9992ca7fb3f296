"""Mid-match checkpoints: an interrupted Coins match resumes from its last checkpoint, and
its records are the uninterrupted match's to the last bit.

Oracles: the same unit played without interruption; the count of episodes replayed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from recip_tourney.config import load_config
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.tournament import checkpoint as checkpoint_module
from recip_tourney.tournament.checkpoint import MatchCheckpoint, checkpoint_path
from recip_tourney.tournament.coins import CoinsMatch, play_coins
from recip_tourney.tournament.runner import attach_artifacts, schedule
from tests.cli_invoke import cli, ok, one_line_error
from tests.test_coins_protocol import make_spec
from tests.test_interruptions import command, payoff_csv

EPISODES = 6


class KilledError(Exception):
    """Stands for a kill between two episodes."""


def comparable(records: list[dict]) -> str:
    """Everything a record holds but its wall time, as stored (NaN compares equal)."""
    return json.dumps([{k: v for k, v in r.items() if k != "elapsed_s"} for r in records],
                      sort_keys=True)


def with_checkpoints(spec, folder: Path, every_s: float = 0.0):
    return dataclasses.replace(spec, checkpoints=str(folder), checkpoint_every_s=every_s)


def interrupt_after(monkeypatch, episodes: int) -> list[int]:
    """Make the match stop (raise) once ``episodes`` episodes were played in this process;
    returns the list of episodes played, by number."""
    played = []
    real = CoinsMatch.play_episode

    def play_episode(self):  # noqa: ANN001, ANN202
        if len(played) == episodes:
            raise KilledError
        out = real(self)
        played.append(self.episode)
        return out

    monkeypatch.setattr(CoinsMatch, "play_episode", play_episode)
    return played


def mfos_unit(tmp_path: Path):
    """An M-FOS-vs-NL unit of the ci profile, with its (freshly trained) artifacts."""
    cfg = load_config("coins", "ci", overrides=[f"settings.episodes={EPISODES}"])
    cfg = dataclasses.replace(cfg, roster=tuple(p for p in cfg.roster
                                                if p.name in ("mfos", "nl")))
    units = [u for u in schedule(cfg) if u.agent.name == "mfos" and u.opponent.name == "nl"]
    (unit,) = attach_artifacts(cfg, units, ArtifactCache(tmp_path / "cache", packaged=False),
                               train=True, console=Console(quiet=True), progress=False)
    return unit


@pytest.mark.parametrize("pair", [("reciprocator", "nl"), ("nl", "reciprocator"),
                                  ("reciprocator", "reciprocator"), ("greedy", "random")])
@pytest.mark.parametrize("stop", [1, 4])
def test_a_match_resumed_from_its_checkpoint_gives_the_uninterrupted_records(
        pair, stop, tmp_path, monkeypatch):
    # float32: a state restored inexactly would show in the last bits
    spec = make_spec(*pair, seeds=(5, 6), episodes=EPISODES, dtype="float32")
    expected = comparable(play_coins(spec))
    spec = with_checkpoints(spec, tmp_path)
    played = interrupt_after(monkeypatch, stop)
    with pytest.raises(KilledError):
        play_coins(spec)
    assert checkpoint_path(tmp_path, ["match-5", "match-6"]).exists()
    played.clear()
    monkeypatch.undo()
    played = interrupt_after(monkeypatch, EPISODES)  # counts, never stops
    assert comparable(play_coins(spec)) == expected
    assert played == list(range(stop + 1, EPISODES + 1)), "only the missing episodes replay"


def test_an_mfos_match_resumes_to_the_same_records(tmp_path, monkeypatch):
    unit = mfos_unit(tmp_path)
    expected = comparable(play_coins(unit))
    unit = with_checkpoints(unit, tmp_path / "checkpoints")
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KilledError):
        play_coins(unit)
    monkeypatch.undo()
    assert comparable(play_coins(unit)) == expected


def test_checkpoints_are_written_no_more_often_than_asked(tmp_path, monkeypatch):
    spec = with_checkpoints(make_spec("nl", "random", seeds=(3,), episodes=EPISODES),
                            tmp_path, every_s=3600.0)
    interrupt_after(monkeypatch, 4)
    with pytest.raises(KilledError):
        play_coins(spec)
    assert not list(tmp_path.iterdir()), "an hour has not passed: no checkpoint"


@pytest.mark.parametrize("damage", ["truncated", "other code", "other unit"])
def test_an_unusable_checkpoint_is_ignored_and_the_match_starts_over(
        damage, tmp_path, monkeypatch):
    spec = make_spec("reciprocator", "nl", seeds=(7,), episodes=EPISODES)
    expected = comparable(play_coins(spec))
    spec = with_checkpoints(spec, tmp_path)
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KilledError):
        play_coins(spec)
    monkeypatch.undo()
    path = checkpoint_path(tmp_path, ["match-7"])
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "other code":
        monkeypatch.setattr(checkpoint_module, "code_digest", lambda: "edited sources")
    else:  # the same file found under another unit's name
        path.rename(checkpoint_path(tmp_path, ["match-8"]))
        spec = dataclasses.replace(spec, seeds=(dataclasses.replace(spec.seeds[0],
                                                                    match_id="match-8"),))
    played = interrupt_after(monkeypatch, EPISODES)
    records = play_coins(spec)
    assert played == list(range(1, EPISODES + 1)), "started over"
    if damage != "other unit":
        assert comparable(records) == expected


def test_a_checkpoint_that_cannot_be_written_leaves_the_match_running(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the checkpoint folder should be")
    spec = make_spec("nl", "nl", seeds=(2,), episodes=3)
    expected = comparable(play_coins(spec))
    assert comparable(play_coins(with_checkpoints(spec, blocked))) == expected
    assert not MatchCheckpoint(with_checkpoints(spec, blocked)).path.exists()


# -- the command line --------------------------------------------------------------------

RUN = ["--game", "coins", "--profile", "ci", "--agents", "reciprocator,nl", "--seeds", "1",
       "--episodes", "20", "--jobs", "1", "--quiet"]


def test_a_killed_run_resumes_its_match_from_the_checkpoint_to_the_same_table(tmp_path):
    reference = tmp_path / "reference"
    ok("run", *RUN, "--out", reference, "--checkpoint-every", "0")
    assert not (reference / "checkpoints").exists()
    out = tmp_path / "run"
    folder = out / "checkpoints"
    process = subprocess.Popen(
        command("run", *RUN, "--out", out, "--checkpoint-every", "0.0001"),
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(folder.glob("*.pt")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.5)  # a few more episodes, then a crash
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stored = len(list((out / "matches").glob("*.json")))
    assert stored < 4, "the kill came too late to test anything"
    plan = ok("run", *RUN, "--out", out, "--dry-run", "--calibrate", "0").stdout
    assert "resumes from its checkpoint after episode" in plan
    resumed = ok("run", *RUN, "--out", out, "--checkpoint-every", "0")
    assert "1 unfinished match unit(s) have checkpoints" in resumed.stderr
    assert payoff_csv(out) == payoff_csv(reference)
    assert not list(folder.glob("*")), "checkpoints of stored matches are deleted"


def test_a_negative_checkpoint_interval_is_a_one_line_error(tmp_path):
    line = one_line_error(cli("run", *RUN, "--out", tmp_path / "x", "--checkpoint-every", "-1"))
    assert "--checkpoint-every" in line
