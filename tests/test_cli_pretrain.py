"""``pretrain``, ``run`` with pretrained agents (cache, --no-pretrain) and ``plot``, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
from cli_invoke import cli, ok, one_line_error
from typer.testing import Result

from recip_tourney.pretrain.cache import ARTIFACT


def run(out: Path, cache: Path, *extra: object) -> Result:
    return cli("run", "--profile", "ci", "--jobs", 1, "--quiet", "--out", out, "--seeds", 1,
               "--agents", "mfos,nl", "--cache-dir", cache, *extra)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A cache holding the tiny M-FOS artifacts for a roster of mfos and nl."""
    cache = tmp_path_factory.mktemp("cache")
    results = []
    for against in ("nl", "mfos"):
        results.append(ok("pretrain", "mfos", "--against", against, "--profile", "ci",
                          "--cache-dir", cache))  # fmt: skip
    return cache, results[0]


def test_pretrain_logs_every_meta_episode_and_names_the_artifact(trained):
    cache, result = trained
    episodes = [line for line in result.stderr.splitlines() if line.startswith("episode ")]
    assert len(episodes) == 3 and "reward" in episodes[0] and "opponent_reward" in episodes[0]
    (folder,) = [p for p in (cache / "mfos").iterdir() if (p / "meta.json").is_file()
                 and json.loads((p / "meta.json").read_text())["key"]["against"]["name"] == "nl"]
    assert str(folder) in result.stdout


def test_run_uses_the_cache_without_training(trained, tmp_path):
    cache, _ = trained
    result = run(tmp_path / "out", cache, "--no-pretrain")
    assert result.exit_code == 0, result.output
    assert "training" not in result.stderr
    assert len(list((tmp_path / "out" / "matches").glob("*.json"))) == 4


def test_no_pretrain_with_a_missing_artifact_is_one_clear_error(tmp_path):
    line = one_line_error(run(tmp_path / "out", tmp_path / "empty", "--no-pretrain"))
    assert "not pretrained" in line and "recip-tourney pretrain mfos --against" in line


def test_run_trains_a_missing_artifact_with_a_notice(tmp_path):
    result = run(tmp_path / "out", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert "training M-FOS vs nl" in result.stderr
    assert "training M-FOS self-play" in result.stderr


def test_a_corrupt_artifact_is_reported_and_retrained_by_run(trained, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(trained[0], cache)
    for artifact in (cache / "mfos").glob(f"*/{ARTIFACT}"):
        artifact.write_bytes(b"garbage")
    result = run(tmp_path / "out", cache)
    assert result.exit_code == 0, result.output
    assert "moved to" in result.stderr and "retraining" in result.stderr
    assert any((cache / "corrupt").iterdir())
    fresh = run(tmp_path / "again", cache, "--no-pretrain")  # retrained artifacts are whole
    assert fresh.exit_code == 0, fresh.output


def test_pretrain_rejects_agents_without_training():
    line = one_line_error(cli("pretrain", "nl", "--profile", "ci"))
    assert "valid choices: mfos, mmaml" in line
    line = one_line_error(cli("pretrain", "mfos", "--against", "nobody", "--profile", "ci"))
    assert "unknown agent 'nobody'" in line


def test_pretrain_mmaml_trains_ours_even_when_the_tournament_uses_the_published(tmp_path):
    result = ok("pretrain", "mmaml", "--profile", "ci", "--cache-dir", tmp_path)
    iterations = [line for line in result.stderr.splitlines() if line.startswith("iteration ")]
    assert len(iterations) == 4 and "loss" in iterations[0]
    assert len(list((tmp_path / "mmaml").iterdir())) == 1


def _is_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.std() > 0


@pytest.mark.parametrize("kind", ["heatmap", "curves"])
def test_plot_a_results_directory(trained, tmp_path, kind):
    out = tmp_path / "out"
    assert run(out, trained[0], "--no-pretrain").exit_code == 0
    ok("plot", out, "--kind", kind, "-o", tmp_path / f"{kind}.png")
    _is_png(tmp_path / f"{kind}.png")
    ok("plot", out, "--kind", kind)  # default file inside the directory
    _is_png(out / f"{kind}.png")


def test_plot_a_training_log(trained, tmp_path):
    folder = next(p for p in (trained[0] / "mfos").iterdir() if (p / "log.jsonl").is_file())
    ok("plot", folder, "-o", tmp_path / "training.png")
    _is_png(tmp_path / "training.png")
    ok("plot", folder / "log.jsonl", "-o", tmp_path / "training.pdf")
    assert (tmp_path / "training.pdf").read_bytes()[:4] == b"%PDF"


def test_plot_errors_are_one_line(tmp_path):
    assert "valid choices" in one_line_error(cli("plot", tmp_path, "--kind", "pie"))
    assert "agent:opponent" in one_line_error(cli("plot", tmp_path, "--kind", "curves",
                                                  "--pairs", "nl"))


def test_meta_learner_pairings_are_identical_whatever_jobs(tmp_path):
    tables = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        result = cli("run", "--profile", "ci", "--jobs", jobs, "--quiet", "--out", out,
                     "--seeds", 2, "--agents", "mfos,nl,mmaml", "--cache-dir", tmp_path / "c")
        assert result.exit_code == 0, result.output
        tables.append(ok("table", out, "--format", "csv", "--table", "payoff").stdout)
    assert tables[0] == tables[1]


def test_an_unwritable_cache_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_line_error(cli("pretrain", "mfos", "--against", "nl", "--profile", "ci",
                              "--cache-dir", blocker / "cache"))  # fmt: skip
    assert "cannot write to the pretraining cache" in line
