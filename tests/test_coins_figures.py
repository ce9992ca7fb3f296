"""The Coin Game's figures: Figure 3 (an NL against a Reciprocator, an M-FOS and an NL) and
Figure 4 (self-play), ``plot --kind figure3|figure4`` and ``--kind curves`` of coins results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_invoke import cli, ok, one_line_error
from conftest import make_manifest
from matplotlib.figure import Figure
from test_plots import assert_pdf, assert_png, by_gid, curve_record, curve_set

from recip_tourney.errors import UserError
from recip_tourney.plots import save_figure
from recip_tourney.plots.coins_figures import (
    coins_curves,
    combined_figure,
    figure3_figure,
    figure4_figure,
    moving_average,
    share,
)
from recip_tourney.tables.results import ResultSet
from recip_tourney.tournament.store import ResultsDir

GAME = "coins"
SEEDS = 3
EPISODES = 10
#: Offsets that make the pairings' curves distinguishable.
OFFSETS = {"reciprocator": 0.0, "mfos": 10.0, "nl": 20.0, "random": 30.0}


def coins_curves_of(agent: str, seed: int) -> dict[str, list[float]]:
    """Deterministic curves of one seed; row player: constant coins, column player: its own
    coins grow by one per episode. Against a Reciprocator, seed 0's column player collects no
    coin in episode 0 (its own-coin share has no value there)."""
    e = np.arange(EPISODES, dtype=float)
    off = OFFSETS[agent]
    own = np.full(EPISODES, seed + 1.0)
    other = np.ones(EPISODES)
    opp_own = e + seed + off
    opp_other = np.full(EPISODES, 2.0)
    if agent == "reciprocator" and seed == 0:
        opp_other[0] = 0.0  # with opp_own[0] = 0: no coin at all
    curves = {
        "reward": seed + 0.1 * e + off,
        "own_coins": own,
        "other_coins": other,
        "coins": own + other,
        "opponent_reward": 1.0 - 0.1 * e + 2 * seed,
        "opponent_own_coins": opp_own,
        "opponent_other_coins": opp_other,
        "opponent_coins": opp_own + opp_other,
    }
    return {key: value.tolist() for key, value in curves.items()}


def coins_record(agent: str, opponent: str, seed: int) -> dict[str, Any]:
    return curve_record(agent, opponent, seed, **coins_curves_of(agent, seed)) | {"game": GAME}


def coins_records(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [coins_record(a, o, s) for a, o in pairs for s in range(SEEDS)]


ALL_PAIRS = [
    ("reciprocator", "nl"),
    ("mfos", "nl"),
    ("nl", "nl"),
    ("reciprocator", "reciprocator"),
    ("mfos", "mfos"),
]
ROSTER = ["reciprocator", "mfos", "nl", "random"]


def coins_set(pairs: list[tuple[str, str]] = ALL_PAIRS) -> ResultSet:
    return curve_set(coins_records(pairs), ROSTER, GAME)


def lines(fig: Figure) -> list[Any]:
    return [line for ax in fig.axes for line in ax.lines]


def line(fig: Figure, gid: str) -> Any:
    return by_gid(lines(fig), gid)


def band(fig: Figure, gid: str) -> tuple[np.ndarray, np.ndarray]:
    """The ±SEM band of ``gid`` as (low, high) per episode."""
    poly = by_gid([c for ax in fig.axes for c in ax.collections], f"{gid}:band")
    by_x: dict[float, list[float]] = {}
    for path in poly.get_paths():
        for x, y in path.vertices:
            by_x.setdefault(float(x), []).append(float(y))
    xs = sorted(by_x)  # episodes with a finite SEM
    return np.array([min(by_x[x]) for x in xs]), np.array([max(by_x[x]) for x in xs])


def hand_mean_sem(per_seed: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SEM = std(ddof=1) / sqrt(n) over the finite values of each episode."""
    means, sems = [], []
    for values in zip(*per_seed, strict=True):
        finite = [v for v in values if not math.isnan(v)]
        n = len(finite)
        mean = sum(finite) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
        means.append(mean)
        sems.append(std / math.sqrt(n) if n > 1 else math.nan)
    return np.array(means), np.array(sems)


def assert_line(fig: Figure, gid: str, per_seed: list[list[float]]) -> None:
    mean, sem = hand_mean_sem(per_seed)
    drawn = line(fig, gid)
    np.testing.assert_allclose(drawn.get_xdata(), range(EPISODES))
    np.testing.assert_allclose(drawn.get_ydata(), mean)
    finite = np.isfinite(sem)
    low, high = band(fig, gid)
    np.testing.assert_allclose(low, (mean - sem)[finite])
    np.testing.assert_allclose(high, (mean + sem)[finite])


def nl_share(agent: str, seed: int) -> list[float]:
    c = coins_curves_of(agent, seed)
    return [
        o / t if t > 0 else math.nan
        for o, t in zip(c["opponent_own_coins"], c["opponent_coins"], strict=True)
    ]


# ------------------------------------------------------------------------------ figure 3
def test_figure3_means_and_sems_are_the_hand_computed_ones() -> None:
    fig = figure3_figure(coins_set())
    left, right = fig.axes
    for agent in ("reciprocator", "mfos", "nl"):
        assert_line(fig, f"own_share:{agent}", [nl_share(agent, s) for s in range(SEEDS)])
        curves = [coins_curves_of(agent, s) for s in range(SEEDS)]
        for part, key in (
            ("own", "opponent_own_coins"),
            ("other", "opponent_other_coins"),
            ("total", "opponent_coins"),
        ):
            assert_line(fig, f"coins:{agent}:{part}", [c[key] for c in curves])
        assert (
            by_gid(left.lines, f"own_share:{agent}").get_color()
            == by_gid(right.lines, f"coins:{agent}:own").get_color()
        )
    # Literal values: the NL's own coins against M-FOS are e + s + 10 for seeds 0, 1, 2:
    # mean e + 11, SEM 1 / sqrt(3).
    own = line(fig, "coins:mfos:own").get_ydata()
    np.testing.assert_allclose(own, np.arange(EPISODES) + 11.0)
    low, high = band(fig, "coins:mfos:own")
    np.testing.assert_allclose(high - low, 2 / math.sqrt(3))
    styles = {p: line(fig, f"coins:nl:{p}").get_linestyle() for p in ("own", "other", "total")}
    assert styles == {"own": "-", "other": "--", "total": ":"}
    assert left.get_xlabel() == right.get_xlabel() == "episode"
    assert left.get_ylim() == pytest.approx((-0.03, 1.03))
    assert "not in these results" not in fig.get_suptitle()
    assert fig.get_suptitle().startswith("coins, figure 3:")
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == [
        "nl against reciprocator (3 seeds)",
        "nl against mfos (3 seeds)",
        "nl against nl (3 seeds)",
        "± SEM over seeds",
    ]


def test_own_share_is_nan_where_no_coin_was_collected() -> None:
    np.testing.assert_array_equal(share(np.array([0.0, 1.0, 2.0]), np.array([0.0, 4.0, 2.0])),
                                  [math.nan, 0.25, 1.0])  # fmt: skip
    assert np.isnan(share(np.array([math.nan]), np.array([2.0]))).all()
    assert np.isnan(share(np.array([1.0]), np.array([math.nan]))).all()
    fig = figure3_figure(coins_set())
    # Episode 0 against the Reciprocator: seed 0 collected no coin, seeds 1 and 2 have
    # shares 1/3 and 2/4: mean 5/12 over 2 seeds, SEM (1/6) / sqrt(2) / sqrt(2) = 1/12.
    assert line(fig, "own_share:reciprocator").get_ydata()[0] == pytest.approx(5 / 12)
    low, high = band(fig, "own_share:reciprocator")
    assert (low[0], high[0]) == pytest.approx((5 / 12 - 1 / 12, 5 / 12 + 1 / 12))
    # One seed, all episodes without coins: a gap, not a zero.
    record = coins_record("nl", "nl", 0)
    record["curves"]["opponent_own_coins"] = [0.0] * EPISODES
    record["curves"]["opponent_coins"] = [0.0] * EPISODES
    only = figure3_figure(curve_set([record], ROSTER, GAME))
    assert np.isnan(line(only, "own_share:nl").get_ydata()).all()
    np.testing.assert_allclose(line(only, "coins:nl:total").get_ydata(), 0.0)


def test_figure3_skips_missing_pairings_and_names_them() -> None:
    fig = figure3_figure(coins_set([("reciprocator", "nl"), ("nl", "nl")]))
    gids = {ln.get_gid() for ln in lines(fig)}
    assert "own_share:reciprocator" in gids and "own_share:nl" in gids
    assert not any("mfos" in gid for gid in gids)
    assert "not in these results: mfos vs nl" in fig.get_suptitle()


def test_figures_without_any_of_their_pairings_are_user_errors() -> None:
    rs = coins_set([("random", "nl"), ("reciprocator", "reciprocator")])
    with pytest.raises(UserError, match="figure 3 needs one of the pairings reciprocator vs nl, "
                       "mfos vs nl, nl vs nl with coin curves; pairings in these results: "
                       "reciprocator vs reciprocator, random vs nl"):  # fmt: skip
        figure3_figure(rs)
    with pytest.raises(UserError, match="figure 4 needs one of the pairings"):
        figure4_figure(coins_set([("reciprocator", "nl")]))


# ------------------------------------------------------------------------------ figure 4
def test_figure4_total_reward_and_pair_share() -> None:
    fig = figure4_figure(coins_set())
    for agent in ("reciprocator", "mfos", "nl"):
        curves = [coins_curves_of(agent, s) for s in range(SEEDS)]
        total = [[a + b for a, b in zip(c["reward"], c["opponent_reward"], strict=True)]
                 for c in curves]  # fmt: skip
        assert_line(fig, f"total_reward:{agent}", total)
        pair_share = [
            [(o1 + o2) / (t1 + t2) for o1, o2, t1, t2 in zip(c["own_coins"],
             c["opponent_own_coins"], c["coins"], c["opponent_coins"], strict=True)]
            for c in curves
        ]  # fmt: skip
        assert_line(fig, f"own_share:{agent}", pair_share)
    # Literal: total reward 3 s + 1 + 20 for nl: mean 24, SEM 3 / sqrt(3) = sqrt(3).
    np.testing.assert_allclose(line(fig, "total_reward:nl").get_ydata(), 24.0)
    low, high = band(fig, "total_reward:nl")
    np.testing.assert_allclose(high - 24.0, math.sqrt(3))
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "total extrinsic reward per episode",
        "share of own coins (both players)",
    ]
    assert fig.get_suptitle().startswith("coins, figure 4: self-play")
    only = figure4_figure(coins_set([("mfos", "mfos")]))
    assert "not in these results: reciprocator vs reciprocator, nl vs nl" in only.get_suptitle()
    assert {ln.get_gid() for ln in lines(only)} == {"total_reward:mfos", "own_share:mfos"}


# ------------------------------------------------------------------------------ smoothing
def test_moving_average_is_trailing_and_skips_nan() -> None:
    values = np.array([math.nan, 1.0, 2.0, math.nan, 6.0])
    np.testing.assert_array_equal(moving_average(values, 1), values)
    np.testing.assert_allclose(moving_average(values, 2), [math.nan, 1.0, 1.5, 2.0, 6.0])
    np.testing.assert_allclose(moving_average(values, 3), [math.nan, 1.0, 1.5, 1.5, 4.0])


def test_smoothing_applies_per_seed_before_mean_and_sem() -> None:
    rs = coins_set()
    fig = figure3_figure(rs, smooth=3)
    assert "moving average over 3 episodes" in fig.get_suptitle()
    assert "moving average" not in figure3_figure(rs).get_suptitle()
    # Own coins against M-FOS, e + s + 10 per seed: trailing means s + 10, s + 10.5, then
    # e + s + 9; over seeds 11, 11.5, then e + 10, SEM unchanged (1 / sqrt(3)).
    np.testing.assert_allclose(line(fig, "coins:mfos:own").get_ydata(),
                               [11.0, 11.5, *(np.arange(2, EPISODES) + 10.0)])  # fmt: skip
    low, high = band(fig, "coins:mfos:own")
    np.testing.assert_allclose(high - low, 2 / math.sqrt(3))
    shares = [moving_average(np.array(nl_share("reciprocator", s)), 3) for s in range(SEEDS)]
    assert_line(fig, "own_share:reciprocator", [s.tolist() for s in shares])
    fig4 = figure4_figure(rs, smooth=4)
    assert "moving average over 4 episodes" in fig4.get_suptitle()
    for bad in (0, -1):
        with pytest.raises(UserError, match="must be a positive integer"):
            figure4_figure(rs, smooth=bad)


# ------------------------------------------------------------------------------ combined
def test_curves_of_coins_results_are_figures_3_and_4_in_two_rows() -> None:
    rs = coins_set()
    fig = coins_curves(rs, "curves", smooth=2)
    assert len(fig.subfigs) == 2
    top, bottom = fig.subfigs
    assert top.get_suptitle().startswith("coins, figure 3")
    assert bottom.get_suptitle().startswith("coins, figure 4")
    assert "moving average over 2 episodes" in top.get_suptitle()
    fig3, fig4 = figure3_figure(rs, smooth=2), figure4_figure(rs, smooth=2)
    for prefix, single in (("fig3:", fig3), ("fig4:", fig4)):
        for drawn in lines(single):
            gid = drawn.get_gid()
            np.testing.assert_array_equal(line(fig, prefix + gid).get_ydata(), drawn.get_ydata())
            np.testing.assert_array_equal(band(fig, prefix + gid), band(single, gid))
    assert len(lines(fig)) == len(lines(fig3)) + len(lines(fig4))
    # Only Figure 3's pairings: one row.
    only3 = combined_figure(coins_set([("reciprocator", "nl")]))
    assert len(only3.subfigs) == 1
    assert {ln.get_gid() for ln in lines(only3)} >= {"fig3:own_share:reciprocator"}


def test_curves_with_pairs_or_without_paper_pairings_are_generic() -> None:
    rs = coins_set()
    fig = coins_curves(rs, "curves", pairs=[("mfos", "nl")])
    assert len(fig.axes) == 3  # reward, own_coins, other_coins
    np.testing.assert_allclose(
        line(fig, "own_coins:mfos:nl:agent").get_ydata(), np.full(EPISODES, 2.0)
    )
    other = coins_curves(coins_set([("random", "reciprocator")]), "curves")
    assert not other.subfigs
    line(other, "reward:random:reciprocator:agent")
    with pytest.raises(UserError, match="smoothing applies to figure3, figure4"):
        coins_curves(rs, "curves", pairs=[("mfos", "nl")], smooth=2)
    with pytest.raises(UserError, match="--pairs selects pairings of --kind curves only"):
        coins_curves(rs, "figure3", pairs=[("mfos", "nl")])
    with pytest.raises(UserError, match="unknown coins figure kind 'figure2'"):
        coins_curves(rs, "figure2")


# ------------------------------------------------------------------------------ files, CLI
@pytest.mark.parametrize("kind", ["figure3", "figure4", "curves"])
def test_coins_figures_render_png_and_pdf(tmp_path: Path, kind: str) -> None:
    rs = coins_set()
    png = save_figure(coins_curves(rs, kind, smooth=2), tmp_path / f"{kind}.png")
    assert_png(png)
    pdf = save_figure(coins_curves(rs, kind), tmp_path / f"{kind}.pdf")
    assert_pdf(pdf)


@pytest.fixture
def coins_dir(tmp_path: Path) -> Path:
    """A coins results directory written with the real store."""
    results = ResultsDir(tmp_path / "results")
    results.prepare(make_manifest(ROSTER) | {"game": GAME})
    for record in coins_records(ALL_PAIRS):
        results.write_match(record)
    return tmp_path / "results"


def test_plot_cli_draws_the_coins_figures(coins_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "f.png"
    assert str(target) in ok("plot", coins_dir, "--kind", "figure3", "-o", target).stderr
    assert_png(target)
    ok("plot", coins_dir, "--kind", "figure4", "--smooth", "3", "-o", tmp_path / "f4.pdf")
    assert_pdf(tmp_path / "f4.pdf")
    ok("plot", coins_dir, "--kind", "curves", "-o", tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "pie"], "unknown figure kind 'pie'; valid choices: heatmap, curves, "
         "figure2, figure3, figure4"),
        (["--kind", "figure3", "--smooth", "0"], "--smooth must be a positive integer, got 0"),
        (["--kind", "heatmap", "--smooth", "2"], "--smooth applies to the curves"),
        (["--kind", "figure2", "--smooth", "2"], "--kind figure2 draws no smoothed curves"),
        (["--kind", "figure4", "--pairs", "nl:nl"], "--pairs selects pairings of --kind curves"),
    ],
)  # fmt: skip
def test_plot_cli_coins_user_errors_are_one_line(
    coins_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    assert message in one_line_error(cli("plot", coins_dir, *args, "-o", tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()
