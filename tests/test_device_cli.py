"""The device option: ``--device cpu|cuda|auto`` on ``run`` and ``pretrain``, what a run
records about where it ran, and the refusals (these run on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_invoke import cli, ok, one_line_error

from recip_tourney.config import load_config
from recip_tourney.device import describe, resolve_device_name

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
TINY = ("--game", "ipd-analytic", "--profile", "ci", "--agents", "nl,tft", "--seeds", "1",
        "--quiet", "--jobs", "1")


@pytest.mark.parametrize("game", ["ipd-analytic", "ipd-rollout", "coins"])
def test_every_game_has_the_device_setting_default_cpu(game: str) -> None:
    cfg = load_config(game, "ci")
    assert cfg.settings.device == "cpu"
    assert cfg.device == "cpu"


@pytest.mark.parametrize("game", ["ipd-analytic", "ipd-rollout", "coins"])
def test_the_device_is_not_part_of_the_settings_hash(game: str) -> None:
    # a results directory may hold matches played on the CPU and on a GPU (README)
    cpu = load_config(game, "ci", None, ["settings.device=cpu"])
    auto = load_config(game, "ci", None, ["settings.device=auto"])
    assert cpu.settings_hash == auto.settings_hash
    assert auto.to_dict()["settings"]["device"] == "auto"


def test_run_records_the_device_in_run_json_and_every_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok("run", *TINY, "--device", "cpu", "--out", out)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["runs"][0]["device"] == "cpu"
    assert manifest["config"]["settings"]["device"] == "cpu"
    records = [json.loads(f.read_text()) for f in (out / "matches").glob("*.json")]
    assert records and all(r["device"] == "cpu" and "gpu" not in r for r in records)


def test_auto_resolves_to_what_torch_sees(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok("run", *TINY, "--device", "auto", "--out", out)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["runs"][0]["device"] == expected
    assert resolve_device_name("auto") == expected


@no_cuda
@pytest.mark.parametrize("command", [
    ("run", *TINY, "--device", "cuda"),
    ("run", *TINY, "--set", "settings.device=cuda"),
    ("run", "--game", "coins", "--profile", "ci", "--device", "cuda", "--dry-run"),
    ("pretrain", "mfos", "--profile", "ci", "--against", "nl", "--device", "cuda"),
])
def test_cuda_without_a_gpu_is_one_line(command: tuple[str, ...], tmp_path: Path) -> None:
    line = one_line_error(cli(*command, "--out", tmp_path / "out")
                             if command[0] == "run" else
                             cli(*command, "--cache-dir", tmp_path / "cache"))
    assert "cuda" in line and "--device cpu" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["run", "pretrain"])
def test_an_unknown_device_names_the_choices(command: str, tmp_path: Path) -> None:
    args = (TINY if command == "run" else ("mfos", "--profile", "ci"))
    line = one_line_error(cli(command, *args, "--device", "tpu"))
    assert "unknown device 'tpu'" in line and "cpu, cuda, auto" in line


def test_describe_names_the_gpu_only_on_cuda() -> None:
    assert describe("cpu") == {"device": "cpu"}
