"""The paper's Figure 2 (``plot --kind curves`` on IPD-Rollout results, ``--kind figure2``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_invoke import cli, ok, one_line_error
from test_plots import assert_pdf, assert_png, by_gid, curve_record, curve_set

from recip_tourney.plots import curves_or_figure2, figure2_figure
from recip_tourney.tables.results import ResultSet


@pytest.fixture(scope="module")
def rollout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reciprocator and NL in ipd-rollout, ci profile (2 seeds x 12 episodes), via the CLI."""
    out = tmp_path_factory.mktemp("rollout") / "results"
    ok("run", "--game", "ipd-rollout", "--profile", "ci", "--agents", "reciprocator,nl",
       "--out", out, "--quiet", "--jobs", 1)  # fmt: skip
    return out


def seed_mean(rs: ResultSet, pair: tuple[str, str], key: str) -> np.ndarray:
    curves = [r["curves"][key] for r in rs.records if (r["agent"], r["opponent"]) == pair]
    return np.nanmean(curves, axis=0)


def labels(ax: Any) -> list[str]:
    return [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]


def test_figure2_is_the_curves_figure_of_rollout_results(rollout_dir: Path) -> None:
    rs = ResultSet.from_dir(rollout_dir)
    fig = curves_or_figure2(rs)  # kind "curves", no pairs
    left, right = fig.axes
    assert left.get_shared_x_axes().joined(left, right)  # twin axes
    assert labels(left) == ["reciprocator reciprocal reward"]
    assert "reciprocal reward" in left.get_ylabel() and right.get_ylabel() == "P(cooperate)"
    assert labels(right) == [
        "reciprocator P(cooperate)",
        "nl P(cooperate)",
        "nl P(cooperate) in nl vs nl",
    ]
    assert left.get_xlabel() == "episode"
    assert fig.get_suptitle().startswith("ipd-rollout: reciprocator vs nl")
    pair = ("reciprocator", "nl")
    for ax, gid, want in [
        (left, "reciprocal_reward", seed_mean(rs, pair, "agent.reciprocal_reward")),
        (right, "p_cooperate:agent", seed_mean(rs, pair, "p_cooperate")),
        (right, "p_cooperate:opponent", seed_mean(rs, pair, "opponent_p_cooperate")),
        (right, "p_cooperate:self_play", seed_mean(rs, ("nl", "nl"), "p_cooperate")),
    ]:
        line = by_gid(ax.lines, gid)
        np.testing.assert_allclose(line.get_xdata(), range(12))  # ci profile: 12 episodes
        np.testing.assert_allclose(line.get_ydata(), want)
    assert by_gid(right.lines, "p_cooperate:self_play").get_linestyle() == "--"
    assert by_gid(right.collections, "p_cooperate:opponent:band")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-1] == "± SEM over seeds" and "nl P(cooperate) in nl vs nl" in legend


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_plot_curves_renders_figure2(rollout_dir: Path, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"figure2{suffix}"
    assert str(target) in ok("plot", rollout_dir, "--kind", "curves", "-o", target).stderr
    if suffix == ".png":
        assert_png(target)
    else:
        assert_pdf(target)


def test_pairs_keep_the_generic_curves(rollout_dir: Path, tmp_path: Path) -> None:
    rs = ResultSet.from_dir(rollout_dir)
    fig = curves_or_figure2(rs, pairs=[("reciprocator", "nl")])
    assert [ax.get_ylabel() for ax in fig.axes] == ["average reward per step", "P(cooperate)"]
    assert fig.axes[-1].get_xlabel() == "episode"
    by_gid(fig.axes[0].lines, "reward:reciprocator:nl:agent")
    target = tmp_path / "generic.png"
    ok("plot", rollout_dir, "--kind", "curves", "--pairs", "reciprocator:nl,nl:nl", "-o", target)
    assert_png(target)


def test_figure2_kind_draws_any_pairing_with_a_reciprocator(
    rollout_dir: Path, tmp_path: Path
) -> None:
    rs = ResultSet.from_dir(rollout_dir)
    fig = curves_or_figure2(rs, "figure2", [("nl", "reciprocator")])  # Reciprocator in column
    np.testing.assert_allclose(
        by_gid(fig.axes[0].lines, "reciprocal_reward").get_ydata(),
        seed_mean(rs, ("nl", "reciprocator"), "opponent.reciprocal_reward"),
    )
    assert labels(fig.axes[1]) == [
        "nl P(cooperate)",
        "reciprocator P(cooperate)",
        "nl P(cooperate) in nl vs nl",
    ]
    ok("plot", rollout_dir, "--kind", "figure2", "-o", tmp_path / "f.svg")
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "pie"], "unknown figure kind 'pie'; valid choices: heatmap, curves, figure2"),
        (["--kind", "figure2", "--pairs", "nl:nl"], "neither side of nl vs nl records a"),
        (
            ["--kind", "figure2", "--pairs", "tft:nl"],
            "no matches of tft vs nl for figure 2; pairings: reciprocator vs reciprocator, ",
        ),
        (["--kind", "figure2", "--pairs", "nl:nl,nl:nl"], "one pairing; --pairs names 2"),
        (["--kind", "curves", "--pairs", "tft:nl"], "pairings with curves: reciprocator vs"),
        (["--kind", "curves", "--stat", "var"], "unknown statistic 'var'; valid choices"),
    ],
)
def test_figure2_user_errors_are_one_line(
    rollout_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    line = one_line_error(cli("plot", rollout_dir, *args, "-o", tmp_path / "x.png"))
    assert message in line
    assert not (tmp_path / "x.png").exists()


def test_figure2_means_skip_nan_and_other_games_keep_generic_curves() -> None:
    nan = math.nan
    # Lagged logs: no reciprocal reward for the first episode.
    rr = ([nan, 1.0, 2.0], [nan, 3.0, nan])
    p_c = ([0.2, 0.4, 0.6], [0.4, 0.6, 0.8])
    records = [
        curve_record("reciprocator", "nl", s, reward=[-1.0] * 3, p_cooperate=p_c[s],
                     opponent_p_cooperate=[0.5] * 3, **{"agent.reciprocal_reward": rr[s]})
        for s in range(2)
    ]  # fmt: skip
    fig = curves_or_figure2(curve_set(records, ["reciprocator", "nl"], "ipd-rollout"))
    rr = by_gid(fig.axes[0].lines, "reciprocal_reward").get_ydata()
    assert math.isnan(rr[0]) and list(rr[1:]) == [2.0, 2.0]
    np.testing.assert_allclose(by_gid(fig.axes[1].lines, "p_cooperate:agent").get_ydata(),
                               [0.3, 0.5, 0.7])  # fmt: skip
    assert len(fig.axes[1].lines) == 2  # no nl vs nl in these results: no dashed line
    # IPD-Analytic: `curves` stays the generic figure, per update; figure2 on request.
    analytic = curve_set(records, ["reciprocator", "nl"])
    assert fig.axes[0].get_xlabel() == "episode"
    assert curves_or_figure2(analytic).axes[0].get_ylabel() == "average reward per step"
    assert figure2_figure(analytic).axes[0].get_xlabel() == "update"
