"""``run --dry-run``: the schedule and its calibrated cost, with nothing run or written."""

from __future__ import annotations

from tests.cli_invoke import cli, ok, one_line_error

ROLLOUT = ["--game", "ipd-rollout", "--profile", "ci", "--agents", "nl,reciprocator,tft",
           "--jobs", "2", "--quiet"]


def test_dry_run_prints_the_schedule_and_its_cost_and_writes_nothing(tmp_path):
    out = tmp_path / "planned"
    result = ok("run", *ROLLOUT, "--out", out, "--dry-run", "--calibrate", "2")
    assert not out.exists()
    assert "18 matches scheduled: 0 already stored (0 of them failed), 18 to play." in (
        result.stdout)
    assert "Estimated cost:" in result.stdout and "wall time on 2 workers" in result.stdout
    assert "s / episode" in result.stdout and "reciprocator" in result.stdout


def test_dry_run_counts_what_is_stored_and_can_skip_the_calibration(tmp_path):
    out = tmp_path / "partial"
    ok("run", "--game", "ipd-rollout", "--profile", "ci", "--agents", "nl,tft", "--quiet",
       "--out", out)
    result = ok("run", *ROLLOUT, "--out", out, "--dry-run", "--calibrate", "0")
    assert "18 matches scheduled: 8 already stored (0 of them failed), 10 to play." in (
        result.stdout)
    assert "No estimate (--calibrate 0)." in result.stdout


def test_dry_run_refuses_what_the_run_would_refuse(tmp_path):
    out = tmp_path / "other"
    ok("run", *ROLLOUT, "--out", out)
    line = one_line_error(cli("run", *ROLLOUT, "--out", out, "--dry-run",
                              "--set", "settings.batch=32"))
    assert "different settings" in line


def test_dry_run_does_not_train_what_is_missing(tmp_path):
    result = ok("run", "--game", "ipd-analytic", "--profile", "ci", "--agents", "nl,mfos",
                "--out", tmp_path / "x", "--cache-dir", tmp_path / "empty-cache", "--dry-run",
                "--calibrate", "1")
    assert "not timed: not pretrained yet" in result.stdout
    assert "6 matches are not in the estimate" in result.stdout
    assert not (tmp_path / "empty-cache" / "mfos").exists()
