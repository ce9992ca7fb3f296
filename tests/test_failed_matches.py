"""Failed matches in the tables: shown as failed, counted, and in no mean or spread."""

from __future__ import annotations

import math

from recip_tourney.tables import render
from recip_tourney.tables.regression import compare
from recip_tourney.tables.results import ResultSet
from tests.conftest import make_record, store


def failed(agent: str, opponent: str, seed_index: int, error: str) -> dict:
    record = make_record(agent, opponent, seed_index, 0.0, 0.0)
    for key in ("summary", "cooperation", "curves"):
        del record[key]
    return {**record, "status": "failed", "error": error, "traceback": "Traceback ..."}


def result_set(tmp_path) -> ResultSet:
    records = [
        make_record("nl", "tft", 0, -1.0, -1.0),
        make_record("nl", "tft", 1, -2.0, -2.0),
        failed("nl", "tft", 2, "non-finite reward: the reward became nan at update 3"),
        failed("tft", "nl", 0, "RuntimeError: boom"),
        make_record("tft", "tft", 0, -1.0, -1.0),
    ]
    return ResultSet.from_dir(store(tmp_path / "run", ["nl", "tft"], records))


def test_a_failed_seed_is_counted_and_left_out_of_the_mean(tmp_path):
    rs = result_set(tmp_path)
    payoff = rs.payoff().set_index(["agent", "opponent"])
    assert payoff.loc[("nl", "tft"), "reward_mean"] == -1.5  # the two finished seeds only
    assert payoff.loc[("nl", "tft"), "n_seeds"] == 2 and payoff.loc[("nl", "tft"), "n_failed"] == 1
    assert payoff.loc[("tft", "nl"), "n_seeds"] == 0 and payoff.loc[("tft", "nl"), "n_failed"] == 1
    assert math.isnan(payoff.loc[("tft", "nl"), "reward_mean"])
    assert list(rs.failures["error"]) == [
        "non-finite reward: the reward became nan at update 3", "RuntimeError: boom"]
    assert len(rs.per_seed) == 3 and len(rs.records) == 3


def test_the_tables_say_which_matches_failed(tmp_path):
    rs = result_set(tmp_path)
    matrix = render.payoff_matrix(rs, "sem")
    assert matrix.loc["nl", "tft"].endswith("(1 failed)")
    assert matrix.loc["tft", "nl"] == "failed (1 of 1 seeds)"
    markdown = render.render_payoff(rs, "markdown")
    assert "- tft vs nl, seed 0: RuntimeError: boom" in markdown
    latex = render.render_payoff(rs, "latex")
    assert "% failed: nl vs tft, seed 2: non-finite reward" in latex
    assert '"failed": [' in render.render_json(rs)


def test_a_failed_cell_fails_the_golden_check(tmp_path):
    rs = result_set(tmp_path)
    golden = rs.payoff().assign(n_seeds=[2, 1, 1], reward_mean=[-1.5, -1.0, -1.0],
                                opponent_reward_mean=[-1.5, -1.0, -1.0])
    report = compare(rs.payoff(), golden.drop(columns="n_failed"), atol=1e-6)
    failing = set(zip(report.failures["agent"], report.failures["opponent"], strict=True))
    assert failing == {("tft", "nl")}
