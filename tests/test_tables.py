"""Spec of recip_tourney.tables: result set, payoff/cooperation frames and their renderings."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    PAYOFF_COLUMNS,
    SETTINGS_HASH,
    make_manifest,
    make_record,
    small_tournament_records,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from scipy import stats

from recip_tourney.errors import UserError
from recip_tourney.tables import STATES, ResultSet, render
from recip_tourney.tables.cooperation import COOPERATION_COLUMNS


@pytest.fixture
def rs(results_path: Path) -> ResultSet:
    return ResultSet.from_dir(results_path)


def cell(frame: pd.DataFrame, agent: str, opponent: str) -> pd.Series:
    rows = frame[(frame["agent"] == agent) & (frame["opponent"] == opponent)]
    assert len(rows) == 1
    return rows.iloc[0]


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of the markdown table in ``text`` (header first, separator dropped)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [rows[0], *rows[2:]]


# ------------------------------------------------------------------------------ result set
def test_agents_follow_roster_then_sorted_others(rs: ResultSet) -> None:
    assert rs.game == "ipd-analytic"
    assert rs.settings_hash == SETTINGS_HASH
    assert rs.agents == ["nl", "lola", "a_b"]


def test_per_seed_has_one_row_per_record_in_display_order(rs: ResultSet) -> None:
    assert list(rs.per_seed.columns) == [
        "agent",
        "opponent",
        "seed_index",
        "seed",
        "reward",
        "opponent_reward",
    ]
    assert len(rs.per_seed) == len(small_tournament_records())
    nl_lola = rs.per_seed[(rs.per_seed.agent == "nl") & (rs.per_seed.opponent == "lola")]
    assert nl_lola["seed_index"].tolist() == [0, 1, 2]
    assert nl_lola["reward"].tolist() == [-1.0, -2.0, -3.0]
    pairs = list(dict.fromkeys(zip(rs.per_seed.agent, rs.per_seed.opponent, strict=True)))
    assert pairs == [("nl", "nl"), ("nl", "lola"), ("lola", "nl"), ("a_b", "nl")]


def test_empty_results_dir_is_a_user_error(write_results) -> None:
    path = write_results(["nl"], [])
    with pytest.raises(UserError, match="no finished matches in"):
        ResultSet.from_dir(path)


def test_missing_results_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no results directory"):
        ResultSet.from_dir(tmp_path / "nowhere")


def test_corrupt_match_file_is_a_user_error_naming_the_file(results_path: Path) -> None:
    bad = results_path / "matches" / "deadbeef.json"
    bad.write_text('{"schema": "recip-tourney/match/1", "trunc', encoding="utf-8")
    with pytest.raises(UserError, match="deadbeef.json"):
        ResultSet.from_dir(results_path)


def test_records_of_other_settings_are_refused() -> None:
    record = make_record("nl", "lola", 0, -1.0, -1.0) | {"settings_hash": "other"}
    with pytest.raises(UserError, match="refusing to mix"):
        ResultSet.from_records([record], make_manifest(["nl", "lola"]))


def test_a_seed_stored_twice_is_refused() -> None:
    records = [make_record("nl", "lola", 0, -1.0, -1.0), make_record("nl", "lola", 0, -2.0, -1.0)]
    with pytest.raises(UserError, match="seed index 0"):
        ResultSet.from_records(records, make_manifest(["nl", "lola"]))


def test_curves_in_long_form(rs: ResultSet) -> None:
    curves = rs.curves("reward")
    first = curves[(curves.agent == "nl") & (curves.opponent == "lola") & (curves.seed_index == 2)]
    assert first["update"].tolist() == [0, 1]
    assert first["value"].tolist() == [-4.0, -3.0]
    with pytest.raises(UserError, match="no match has a 'nope' curve"):
        rs.curves("nope")


# ---------------------------------------------------------------------------- payoff frame
def test_payoff_columns_and_rows(rs: ResultSet) -> None:
    payoff = rs.payoff()
    assert list(payoff.columns) == PAYOFF_COLUMNS
    pairs = list(zip(payoff.agent, payoff.opponent, strict=True))
    assert pairs == [("nl", "nl"), ("nl", "lola"), ("lola", "nl"), ("a_b", "nl")]


def test_payoff_statistics_by_hand(rs: ResultSet) -> None:
    row = cell(rs.payoff(), "nl", "lola")  # rewards -1, -2, -3
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert row.n_seeds == 3
    assert row.reward_mean == pytest.approx(-2.0)
    assert row.reward_std == pytest.approx(1.0)
    assert row.reward_sem == pytest.approx(1 / math.sqrt(3))
    assert row.reward_ci95_low == pytest.approx(-2.0 - half)
    assert row.reward_ci95_high == pytest.approx(-2.0 + half)
    # a constant reward has zero spread, and a zero-width interval
    assert row.opponent_reward_mean == pytest.approx(-0.5)
    assert row.opponent_reward_std == 0.0
    assert row.opponent_reward_ci95_low == row.opponent_reward_ci95_high == pytest.approx(-0.5)


def test_one_seed_gives_nan_spreads_not_zero(rs: ResultSet) -> None:
    row = cell(rs.payoff(), "lola", "nl")
    assert row.n_seeds == 1
    assert row.reward_mean == -1.25
    assert row.opponent_reward_mean == -1.5
    for value in ("reward", "opponent_reward"):
        for suffix in ("sem", "std", "ci95_low", "ci95_high"):
            assert np.isnan(row[f"{value}_{suffix}"]), f"{value}_{suffix}"


# ----------------------------------------------------------------------- cooperation frame
def test_cooperation_rows_and_state_order(rs: ResultSet) -> None:
    coop = rs.cooperation()
    assert list(coop.columns) == COOPERATION_COLUMNS
    assert STATES == ("overall", "start", "CC", "CD", "DC", "DD")
    assert len(coop) == 4 * len(STATES)
    for _, group in coop.groupby(["agent", "opponent"], sort=False):
        assert tuple(group["state"]) == STATES
    pairs = list(dict.fromkeys(zip(coop.agent, coop.opponent, strict=True)))
    assert pairs == [("nl", "nl"), ("nl", "lola"), ("lola", "nl"), ("a_b", "nl")]


def test_cooperation_statistics(rs: ResultSet) -> None:
    coop = rs.cooperation()
    nl_lola = coop[(coop.agent == "nl") & (coop.opponent == "lola")].set_index("state")
    # agent P(C) 0.2, 0.4, 0.6 over seeds ("start" is half of it), opponent always 0.9
    assert nl_lola.loc["CC", "p_cooperate_mean"] == pytest.approx(0.4)
    assert nl_lola.loc["CC", "p_cooperate_std"] == pytest.approx(0.2)
    assert nl_lola.loc["start", "p_cooperate_mean"] == pytest.approx(0.2)
    assert nl_lola.loc["DD", "opponent_p_cooperate_mean"] == pytest.approx(0.9)
    assert nl_lola.loc["DD", "opponent_p_cooperate_sem"] == 0.0
    assert (nl_lola["n_seeds"] == 3).all()
    lola_nl = coop[(coop.agent == "lola") & (coop.opponent == "nl")]
    assert lola_nl["p_cooperate_sem"].isna().all()


# -------------------------------------------------------------------------------- markdown
def test_markdown_payoff_matrix_layout(rs: ResultSet) -> None:
    text = render.render_payoff(rs, "markdown", "sem")
    assert text.splitlines()[0].startswith("ipd-analytic: average reward per step, mean ± SEM")
    header, *rows = markdown_rows(text)
    assert header[1:] == ["nl", "lola", "a_b"]
    assert [row[0] for row in rows] == ["nl", "lola", "a_b"]
    by_name = {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}
    assert by_name["nl"]["lola"] == "-2.000 ± 0.577 / -0.500 ± 0.000"
    assert by_name["lola"]["nl"] == "-1.250 ± n/a / -1.500 ± n/a"
    assert by_name["lola"]["lola"] == ""  # never played


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("mean", "-2.000 / -0.500"),
        ("sem", "-2.000 ± 0.577 / -0.500 ± 0.000"),
        ("std", "-2.000 ± 1.000 / -0.500 ± 0.000"),
        ("ci95", "-2.000 [-4.48, 0.48] / -0.500 [-0.50, -0.50]"),
    ],
)
def test_markdown_cell_text_per_stat(rs: ResultSet, stat: str, expected: str) -> None:
    header, nl_row, *_ = markdown_rows(render.render_payoff(rs, "markdown", stat))
    assert nl_row[header.index("lola")] == expected


def test_markdown_cooperation_matrix(rs: ResultSet) -> None:
    text = render.render_cooperation(rs, "markdown", "mean")
    assert "P(cooperate)" in text.splitlines()[0]
    header, *rows = markdown_rows(text)
    assert header[1:] == list(STATES)
    assert [row[0] for row in rows] == ["nl vs nl", "nl vs lola", "lola vs nl", "a_b vs nl"]
    assert rows[1][1:3] == ["0.400", "0.200"]  # kept as text, not re-parsed as 0.4


def test_unknown_format_or_stat_is_a_user_error(rs: ResultSet) -> None:
    with pytest.raises(UserError, match="markdown, csv, latex, json"):
        render.render_payoff(rs, "html", "sem")
    with pytest.raises(UserError, match="mean, sem, std, ci95"):
        render.render_cooperation(rs, "markdown", "iqr")


# ----------------------------------------------------------------------------------- latex
def test_latex_is_a_booktabs_tabular_with_escaped_names(write_results) -> None:
    records = [
        make_record("a_b", "x&y%", 0, -1.0, -2.0),
        make_record("a_b", "x&y%", 1, -1.5, -2.5),
        make_record("x&y%", "a_b", 0, -2.0, -1.0),
    ]
    rs = ResultSet.from_dir(write_results(["a_b", "x&y%"], records))
    text = render.render_payoff(rs, "latex", "sem")
    body = text[text.index(r"\begin{tabular}") :]
    assert body.rstrip().endswith(r"\end{tabular}")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == 1
    assert r"a\_b" in text and r"x\&y\%" in text
    assert "a_b" not in body and "x&y" not in body
    assert r"-1.250 $\pm$ 0.250 / -2.250 $\pm$ 0.250" in text
    assert "±" not in body
    # every row has one cell per opponent: names' "&" did not add columns
    rows = body.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert [row.replace(r"\&", "").count("&") for row in rows] == [2, 2]
    cooperation = render.render_cooperation(rs, "latex", "ci95")
    assert r"a\_b vs x\&y\%" in cooperation and r"\bottomrule" in cooperation


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("stat", ["sem", "ci95"])
def test_latex_compiles_with_booktabs(write_results, tmp_path, stat) -> None:
    records = [
        make_record("a_b", "x&y%", 0, -1.0, -2.0),
        make_record("a_b", "x&y%", 1, -1.5, -2.5),
        make_record("x&y%", "a_b", 0, -2.0, -1.0),
    ]
    rs = ResultSet.from_dir(write_results(["a_b", "x&y%"], records))
    tables = render.render_payoff(rs, "latex", stat) + render.render_cooperation(rs, "latex", stat)
    document = (
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        + tables
        + "\n\\end{document}\n"
    )
    (tmp_path / "t.tex").write_text(document, encoding="utf-8")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0


# ---------------------------------------------------------------------------- csv and json
def test_csv_round_trips_exactly(rs: ResultSet) -> None:
    text = render.render_payoff(rs, "csv", "sem")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(text)), rs.payoff(), check_exact=True)
    coop = render.render_cooperation(rs, "csv", "mean")
    pd.testing.assert_frame_equal(
        pd.read_csv(io.StringIO(coop)), rs.cooperation(), check_exact=True
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(-1e12, 1e12), st.floats(-1e12, 1e12)), min_size=1, max_size=4))
def test_csv_round_trip_for_arbitrary_finite_rewards(rewards: list[tuple[float, float]]) -> None:
    records = [make_record("nl", "lola", i, r, o) for i, (r, o) in enumerate(rewards)]
    rs = ResultSet.from_records(records, make_manifest(["nl", "lola"]))
    back = pd.read_csv(io.StringIO(render.render_payoff(rs, "csv", "mean")))
    pd.testing.assert_frame_equal(back, rs.payoff(), check_exact=True)


def test_json_document_round_trips_with_null_for_nan(rs: ResultSet) -> None:
    text = render.render_json(rs)
    assert "NaN" not in text
    document = json.loads(text)
    assert set(document) == {"game", "settings_hash", "payoff", "cooperation", "per_seed",
                             "failed"}
    assert document["failed"] == []
    assert document["game"] == "ipd-analytic"
    lola_nl = document["payoff"][2]
    assert (lola_nl["agent"], lola_nl["opponent"], lola_nl["reward_sem"]) == ("lola", "nl", None)
    for key, frame in [
        ("payoff", rs.payoff()),
        ("cooperation", rs.cooperation()),
        ("per_seed", rs.per_seed),
    ]:
        back = pd.DataFrame(document[key]).astype(frame.dtypes.to_dict())
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert render.render_payoff(rs, "json", "sem") == text


# ------------------------------------------------------------------------------------ rich
def test_rich_tables_use_the_matrix_layout(rs: ResultSet) -> None:
    console = Console(width=300, record=True, file=io.StringIO())
    console.print(render.rich_payoff_table(rs, "sem"))
    console.print(render.rich_cooperation_table(rs, "ci95"))
    out = console.export_text()
    assert "-2.000 ± 0.577 / -0.500 ± 0.000" in out
    assert "0.300 [n/a]" in out
    table = render.rich_payoff_table(rs, "mean")
    assert [str(c.header) for c in table.columns] == ["agent \\ opponent", "nl", "lola", "a_b"]
    assert table.row_count == 3


def test_rich_table_does_not_read_names_as_markup() -> None:
    records = [make_record("[bold]x", "y", 0, -1.0, -1.0)]
    rs = ResultSet.from_records(records, make_manifest(["[bold]x", "y"]))
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render.rich_payoff_table(rs, "mean"))
    assert "[bold]x" in console.export_text()
