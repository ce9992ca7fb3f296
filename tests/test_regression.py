"""Spec of recip_tourney.tables.regression: payoff tables against a golden CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recip_tourney.errors import UserError
from recip_tourney.tables import ResultSet, compare, load_golden, render

ATOL = 1e-6


@pytest.fixture
def rs(results_path: Path) -> ResultSet:
    return ResultSet.from_dir(results_path)


@pytest.fixture
def golden_path(rs: ResultSet, tmp_path: Path) -> Path:
    path = tmp_path / "golden.csv"
    path.write_text(render.render_payoff(rs, "csv", "sem"), encoding="utf-8")
    return path


def test_identical_tables_pass(rs: ResultSet, golden_path: Path) -> None:
    report = compare(rs.payoff(), load_golden(golden_path), ATOL)
    assert report.ok
    assert report.failures.empty
    assert report.n_cells_checked == 4
    assert report.text() == "all 4 cells within atol=1e-06"


def test_a_cell_moved_by_twice_atol_fails_alone(rs: ResultSet, golden_path: Path) -> None:
    golden = load_golden(golden_path)
    moved = (golden.agent == "lola") & (golden.opponent == "nl")
    golden.loc[moved, "reward_mean"] += 2 * ATOL
    report = compare(rs.payoff(), golden, ATOL)
    assert not report.ok
    assert report.failures[["agent", "opponent", "column"]].values.tolist() == [
        ["lola", "nl", "reward_mean"]
    ]
    failure = report.failures.iloc[0]
    assert failure.expected == pytest.approx(-1.25 + 2 * ATOL)
    assert failure.actual == -1.25
    assert failure["diff"] == pytest.approx(-2 * ATOL)
    text = report.text()
    assert text.splitlines()[0] == "1 of 4 cells moved beyond atol=1e-06:"
    table_row = next(line for line in text.splitlines() if "reward_mean" in line)
    assert "lola" in table_row and "nl" in table_row


def test_a_move_within_atol_passes(rs: ResultSet, golden_path: Path) -> None:
    golden = load_golden(golden_path)
    golden["opponent_reward_mean"] -= 0.5 * ATOL
    assert compare(rs.payoff(), golden, ATOL).ok


def test_cells_on_one_side_only_fail(rs: ResultSet, golden_path: Path) -> None:
    golden = load_golden(golden_path)
    golden = golden[~((golden.agent == "a_b") & (golden.opponent == "nl"))]
    extra = golden.iloc[[0]].assign(agent="ghost")
    golden = pd.concat([golden, extra], ignore_index=True)
    report = compare(rs.payoff(), golden, ATOL)
    failures = report.failures.set_index(["agent", "opponent"])["column"].to_dict()
    assert failures == {("a_b", "nl"): "missing in golden", ("ghost", "nl"): "missing in actual"}
    assert report.n_cells_checked == 5
    assert report.text().startswith("2 of 5 cells moved beyond atol=1e-06:")


def test_n_seeds_must_match_exactly(rs: ResultSet, golden_path: Path) -> None:
    golden = load_golden(golden_path)
    golden.loc[0, "n_seeds"] += 1
    report = compare(rs.payoff(), golden, ATOL)
    assert report.failures["column"].tolist() == ["n_seeds"]
    # a golden file without n_seeds only checks the rewards
    assert compare(rs.payoff(), golden.drop(columns="n_seeds"), ATOL).ok


def test_golden_names_are_text(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("agent,opponent,reward_mean,opponent_reward_mean\nNA,null,-1.0,\n")
    golden = load_golden(path)
    assert golden.loc[0, "agent"] == "NA" and golden.loc[0, "opponent"] == "null"
    assert pd.isna(golden.loc[0, "opponent_reward_mean"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "cannot read golden file"),
        ('agent,opponent\n"nl,lola\n', "cannot read golden file"),
        ("agent,opponent,reward_mean\nnl,lola,-1\n", "lacks column(s) opponent_reward_mean"),
        ("agent,opponent,reward_mean,opponent_reward_mean\nnl,lola,x,-1\n", "not numeric"),
        (
            "agent,opponent,reward_mean,opponent_reward_mean\nnl,lola,-1,-1\nnl,lola,-1,-1\n",
            "two rows for nl vs lola",
        ),
    ],
)
def test_bad_golden_files_are_one_line_user_errors(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "golden.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_golden(path)
    assert "\n" not in str(info.value)
