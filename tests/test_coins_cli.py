"""Coins from the command line: a tiny real tournament, its tables, figures and errors."""

from __future__ import annotations

import json

import pytest

from tests.cli_invoke import cli, ok, one_line_error

ROSTER = "nl,reciprocator,greedy"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("coins") / "run"
    ok("run", "--game", "coins", "--profile", "ci", "--agents", ROSTER, "--out", out,
       "--quiet", "--set", "seeds=1")
    return out


def test_run_plays_every_ordered_pairing_and_records_the_config(results):
    manifest = json.loads((results / "run.json").read_text())
    assert manifest["game"] == "coins"
    assert manifest["config"]["settings"]["influence"]["epochs"] == 2
    assert len(list((results / "matches").glob("*.json"))) == 9


def test_table_says_what_a_coins_cell_is(results):
    text = ok("table", results, "--format", "markdown").stdout
    assert "episode return" in text and "per step" not in text
    assert "reciprocator" in text


def test_cooperation_table_holds_the_own_coin_share_and_coins(results):
    text = ok("table", results, "--table", "cooperation", "--format", "csv").stdout
    assert "own_share" in text and "coins" in text


def test_figures_render(results, tmp_path):
    for kind in ("heatmap", "curves", "figure4"):
        out = tmp_path / f"{kind}.png"
        ok("plot", results, "--kind", kind, "-o", out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_reuses_everything(results):
    again = ok("run", "--game", "coins", "--profile", "ci", "--agents", ROSTER, "--out",
               results, "--quiet", "--set", "seeds=1")
    assert "9 of 9" in again.output


def test_a_larger_torus_plays_the_reciprocator_with_the_future_value_estimator(tmp_path):
    """Off 3 x 3 the match estimates influence as the reference trainer does there
    (ValueOfInfluence, spec 5.3.2), and the Reciprocator's logs are filled."""
    out = tmp_path / "g4"
    ok("run", "--game", "coins", "--profile", "ci", "--agents", "reciprocator,nl", "--out", out,
       "--quiet", "--set", "seeds=1", "--set", "settings.grid=4")
    records = [json.loads(f.read_text()) for f in (out / "matches").glob("*.json")]
    record = next(r for r in records if (r["agent"], r["opponent"]) == ("reciprocator", "nl"))
    influence = record["curves"]["agent.influence_on_other"]
    assert all(v == v for v in influence[2:]) and any(v != 0 for v in influence[2:])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--agents", "nl,tft"], "unknown agent 'tft' for game coins"),
        (["--set", "settings.layout=mirrored"], "settings.layout"),
        (["--set", "settings.influence.epochs=0"], "settings.influence.epochs"),
        (["--set", "agents.reciprocator.rr_type=kind"], "rr_type"),
        (["--set", "settings.device=tpu"], "settings.device"),
        (["--set", "settings.grid=4", "--set", "settings.influence.model=transition"],
         "transition enumerates the next states of a 3x3 torus, not 4x4"),
    ],
)
def test_bad_coins_input_is_one_line(tmp_path, args, needle):
    message = one_line_error(cli("run", "--game", "coins", "--profile", "ci", "--out",
                                 tmp_path / "x", "--quiet", *args))
    assert needle in message
