"""Runs that are killed, run twice at once, diverge, or cannot write: nothing computed is lost.

Oracles: an uninterrupted run of the same config (tables equal to the last bit); every
stored file is a valid record; the error line a user sees.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recip_tourney.tournament import store as store_module
from recip_tourney.tournament.store import ResultsDir, validate_match
from tests.cli_invoke import cli, ok, one_line_error

#: 9 pairings x 2 seeds, about 2 s on 2 workers: kills land before, between and during
#: the matches' writes.
ROLLOUT = ["--game", "ipd-rollout", "--profile", "ci", "--agents", "nl,reciprocator,tft",
           "--jobs", "2", "--quiet"]
TRIALS = 20


def command(*args: object) -> list[str]:
    """``recip-tourney ARGS`` as a separate process."""
    return [sys.executable, "-c", "from recip_tourney.cli import main; main()",
            *(str(a) for a in args)]


def payoff_csv(out: Path) -> str:
    return ok("table", out, "--format", "csv", "--table", "payoff").stdout


def assert_every_file_is_a_whole_record(out: Path) -> None:
    for file in (out / "matches").glob("*.json"):
        assert validate_match(json.loads(file.read_text()), file.stem) is None, file


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, float]:
    """The uninterrupted run's table, and how long its process runs after its manifest
    appears (the span over which kills are drawn)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    process = subprocess.Popen(command("run", *ROLLOUT, "--out", out),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "run.json").exists() and process.poll() is None:
        time.sleep(0.01)
    began = time.monotonic()
    assert process.wait() == 0
    return payoff_csv(out), time.monotonic() - began


def test_sigkill_at_random_points_then_resume_gives_the_same_table(reference, tmp_path):
    table, span = reference
    rng = random.Random(2026)
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        process = subprocess.Popen(command("run", *ROLLOUT, "--out", out),
                                   start_new_session=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while not (out / "run.json").exists() and process.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, span))
        os.killpg(process.pid, signal.SIGKILL)  # the run and its workers, as a crash would
        process.wait()
        assert_every_file_is_a_whole_record(out)
        stored = len(list((out / "matches").glob("*.json")))
        resumed = ok("run", *ROLLOUT, "--out", out)
        assert "corrupt" not in resumed.stderr
        if stored:
            assert f"resuming: {stored} of 18" in resumed.stderr
        assert payoff_csv(out) == table, f"trial {trial}: {stored} stored before the kill"
        assert not list((out / "matches").glob(".*.tmp")), "a killed write's temporary file"


def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "busy"
    first = subprocess.Popen(command("run", *ROLLOUT, "--out", out), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    while not (out / ".lock.owner").exists():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.01)
    line = one_line_error(cli("run", *ROLLOUT, "--out", out))
    assert f"another recip-tourney run (pid {first.pid}" in line and str(out) in line
    assert first.wait() == 0
    assert_every_file_is_a_whole_record(out)
    assert len(list((out / "matches").glob("*.json"))) == 18


def test_a_held_lock_refuses_even_a_forced_run(tmp_path):
    out = tmp_path / "held"
    ok("run", *ROLLOUT, "--out", out)
    before = sorted(p.name for p in tmp_path.iterdir())
    with ResultsDir(out).lock():
        line = one_line_error(cli("run", *ROLLOUT, "--out", out, "--force",
                                  "--set", "settings.batch=32"))
    assert "is writing to" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing moved aside


DIVERGING = ["--game", "ipd-analytic", "--profile", "ci", "--agents", "nl,tft", "--jobs", "1",
             "--quiet", "--set", "agents.nl.lr=inf"]


def test_a_diverging_match_is_recorded_as_failed_and_the_rest_go_on(tmp_path):
    out = tmp_path / "nan"
    result = cli("run", *DIVERGING, "--out", out)
    assert result.exit_code == 1, result.output
    assert "6 of 8 matches failed" in result.stderr
    assert "failed (2 of 2 seeds)" in result.stdout
    assert "-1.000 ± 0.000 / -1.000 ± 0.000" in result.stdout  # tft vs tft still played
    failed = [json.loads(f.read_text()) for f in (out / "matches").glob("*.json")]
    failed = [r for r in failed if r.get("status") == "failed"]
    assert len(failed) == 6
    assert all("non-finite reward" in r["error"] and "nan" in r["error"] for r in failed)
    csv = payoff_csv(out)
    assert "n_failed" in csv and "nan" not in csv.lower()
    markdown = ok("table", out, "--format", "markdown", "--table", "payoff").stdout
    assert "Failed matches (in no mean):" in markdown
    # a rerun keeps the failures (exit 1 again) without replaying them; --retry-failed does
    again = cli("run", *DIVERGING, "--out", out)
    assert again.exit_code == 1 and "0 matches played, 8 reused" in again.stderr
    retried = cli("run", *DIVERGING, "--out", out, "--retry-failed")
    assert retried.exit_code == 1 and "6 matches played, 2 reused" in retried.stderr


def test_an_error_inside_a_match_is_recorded_with_the_error(tmp_path):
    out = tmp_path / "overflow"
    result = cli("run", *DIVERGING[:-1], "agents.nl.lr=1e300", "--set",
                 "settings.dtype=float32", "--out", out)
    assert result.exit_code == 1
    failed = [json.loads(f.read_text()) for f in (out / "matches").glob("*.json")]
    failed = [r for r in failed if r.get("status") == "failed"]
    assert failed and all(r["error"].startswith("RuntimeError: ") for r in failed)
    assert all("Traceback" in r["traceback"] for r in failed)


def failing_writes(monkeypatch, code: int, after: int) -> None:
    """Writes of match files fail with ``code`` after ``after`` of them succeeded."""
    real = store_module.atomic_write_json
    done = []

    def write(path: Path, obj: object) -> None:
        if path.parent.name == "matches":
            if len(done) >= after:
                raise OSError(code, os.strerror(code), str(path))
            done.append(path)
        real(path, obj)

    monkeypatch.setattr(store_module, "atomic_write_json", write)


@pytest.mark.parametrize(("code", "remedy"), [(errno.ENOSPC, "free some space"),
                                              (errno.EACCES, "fix the permissions")])
def test_a_full_disk_or_a_permission_error_keeps_what_was_written(
    monkeypatch, tmp_path, code, remedy
):
    out = tmp_path / "full"
    failing_writes(monkeypatch, code, after=3)
    line = one_line_error(cli("run", *ROLLOUT, "--out", out))
    assert os.strerror(code) in line and remedy in line
    assert "the 3 match results already in" in line and "run the same command again" in line
    assert_every_file_is_a_whole_record(out)
    assert len(list((out / "matches").glob("*.json"))) == 3
    monkeypatch.undo()
    resumed = ok("run", *ROLLOUT, "--out", out)
    assert "resuming: 3 of 18" in resumed.stderr
    clean = tmp_path / "clean"
    ok("run", *ROLLOUT, "--out", clean)
    assert payoff_csv(out) == payoff_csv(clean)
