"""Spec of recip_tourney.plots: payoff heatmap, learning curves, training logs, saving."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import make_manifest, make_record
from matplotlib.figure import Figure

from recip_tourney.errors import UserError
from recip_tourney.plots import (
    KINDS,
    PLOT_KINDS,
    curves_figure,
    heatmap_figure,
    plot_results,
    plot_training_log,
    save_figure,
    training_figure,
)
from recip_tourney.tables import ResultSet

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rs(results_path: Path) -> ResultSet:
    return ResultSet.from_dir(results_path)


def curve_record(agent: str, opponent: str, seed_index: int, **curves: list[float]) -> dict:
    record = make_record(agent, opponent, seed_index, -1.0, -1.0)
    record["curves"] = curves
    return record


def curve_set(
    records: list[dict[str, Any]], roster: list[str], game: str = "ipd-analytic"
) -> ResultSet:
    manifest = make_manifest(roster) | {"game": game}
    return ResultSet.from_records([r | {"game": game} for r in records], manifest)


def assert_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 100 and image.shape[1] > 100
    # Not one colour: a good share of the pixels differ from the background in the corner.
    differs = (image[..., :3] != image[0, 0, :3]).any(axis=-1)
    assert differs.mean() > 0.05
    return image


def assert_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"%%EOF" in data[-64:]


def by_gid(artists: Any, gid: str) -> Any:
    found = [a for a in artists if a.get_gid() == gid]
    assert len(found) == 1, f"{len(found)} artists with gid {gid!r}"
    return found[0]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# ------------------------------------------------------------------------------ heatmap
def test_heatmap_renders_png_and_pdf_reproducibly(rs: ResultSet, tmp_path: Path) -> None:
    for suffix in (".png", ".pdf"):
        first = save_figure(heatmap_figure(rs), tmp_path / f"one{suffix}")
        assert first == tmp_path / f"one{suffix}"
        second = save_figure(heatmap_figure(rs), tmp_path / f"two{suffix}")
        assert first.read_bytes() == second.read_bytes(), suffix  # no timestamps
    assert_png(tmp_path / "one.png")
    assert_pdf(tmp_path / "one.pdf")


def test_heatmap_cells_come_from_the_data(rs: ResultSet) -> None:
    fig = heatmap_figure(rs, "sem")
    ax = fig.axes[0]
    # nl vs lola: rewards -1, -2, -3 -> mean -2, SEM 1 / sqrt(3).
    assert by_gid(ax.texts, "cell:nl:lola").get_text() == "-2.000\n± 0.577"
    assert by_gid(ax.texts, "cell:nl:nl").get_text() == "-1.250\n± 0.250"
    assert by_gid(ax.texts, "cell:lola:nl").get_text() == "-1.250\n± n/a"  # one seed
    # Missing pairings (lola vs lola, nl vs a_b, ...) are marked, not coloured.
    assert texts(fig).count("no data") == 9 - 4
    values = ax.images[0].get_array()
    agents = rs.agents
    assert values[agents.index("nl"), agents.index("lola")] == pytest.approx(-2.0)
    assert values[agents.index("a_b"), agents.index("nl")] == pytest.approx(-2.25)
    assert np.ma.is_masked(values[agents.index("lola"), agents.index("lola")])
    assert ax.images[0].get_clim() == (-3.0, 0.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == agents
    assert [t.get_text() for t in ax.get_yticklabels()] == agents
    assert ax.get_ylabel() == "row agent (moves first)"
    assert ax.get_xlabel() == "column agent"
    assert fig.axes[1].get_ylabel() == "average reward per step (row agent)"  # the colorbar


@pytest.mark.parametrize(
    ("stat", "text"),
    [("mean", "-2.000"), ("std", "-2.000\n± 1.000"), ("ci95", "-2.000\n[-4.48, 0.48]")],
)
def test_heatmap_stat_chooses_the_spread(rs: ResultSet, stat: str, text: str) -> None:
    assert by_gid(heatmap_figure(rs, stat).axes[0].texts, "cell:nl:lola").get_text() == text


def test_heatmap_range_widens_for_rewards_outside_the_ipd_scale() -> None:
    records = [make_record("a", "b", 0, -4.0, 1.0), make_record("b", "a", 0, 0.5, -4.0)]
    image = heatmap_figure(curve_set(records, ["a", "b"])).axes[0].images[0]
    assert image.get_clim() == (-4.0, 0.5)


def test_heatmap_unknown_stat_is_a_user_error(rs: ResultSet) -> None:
    with pytest.raises(UserError, match="unknown statistic 'var'; choose one of mean, sem"):
        heatmap_figure(rs, "var")


# ------------------------------------------------------------------------------ curves
def test_curves_mean_line_and_sem_band() -> None:
    records = [
        curve_record("a", "b", 0, reward=[0.0, 0.0], opponent_reward=[3.0, 1.0]),
        curve_record("a", "b", 1, reward=[2.0, 2.0], opponent_reward=[1.0, 1.0]),
    ]
    ax = curves_figure(curve_set(records, ["a", "b"]), keys=("reward",)).axes[0]
    mean = by_gid(ax.lines, "reward:a:b:agent")
    np.testing.assert_allclose(mean.get_xdata(), [0, 1])
    np.testing.assert_allclose(mean.get_ydata(), [1.0, 1.0])
    # std over seeds sqrt(2), SEM sqrt(2) / sqrt(2) = 1: the band spans [0, 2] at every update.
    band = by_gid(ax.collections, "reward:a:b:band")
    vertices = np.concatenate([path.vertices for path in band.get_paths()])
    assert vertices[:, 1].min() == pytest.approx(0.0)
    assert vertices[:, 1].max() == pytest.approx(2.0)
    np.testing.assert_allclose(sorted(set(vertices[:, 0])), [0, 1])
    opponent = by_gid(ax.lines, "reward:a:b:opponent")
    np.testing.assert_allclose(opponent.get_ydata(), [2.0, 1.0])
    assert opponent.get_linestyle() == "--"
    assert opponent.get_color() == mean.get_color()


def test_curves_one_axis_per_key_with_every_pairing(rs: ResultSet) -> None:
    # The conftest records have reward/opponent_reward curves only.
    fig = curves_figure(rs, keys=("reward", "opponent_reward"))
    assert len(fig.axes) == 2
    pairs = [("nl", "nl"), ("nl", "lola"), ("lola", "nl"), ("a_b", "nl")]
    for key, ax in zip(("reward", "opponent_reward"), fig.axes, strict=True):
        gids = [line.get_gid() for line in ax.lines]
        assert [g for g in gids if g.endswith(":agent")] == [
            f"{key}:{a}:{o}:agent" for a, o in pairs
        ]
    assert fig.axes[0].get_ylabel() == "average reward per step"
    assert fig.axes[1].get_xlabel() == "update"
    # nl vs lola: curves [r - 1, r] for r = -1, -2, -3.
    np.testing.assert_allclose(
        by_gid(fig.axes[0].lines, "reward:nl:lola:agent").get_ydata(), [-3, -2]
    )
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:4] == ["nl vs nl", "nl vs lola", "lola vs nl", "a_b vs nl"]


def test_curves_pairs_select_and_unknown_pairs_are_user_errors(rs: ResultSet) -> None:
    fig = curves_figure(rs, pairs=[("lola", "nl")], keys=("reward",))
    assert [line.get_gid() for line in fig.axes[0].lines] == [
        "reward:lola:nl:agent",
        "reward:lola:nl:opponent",
    ]
    with pytest.raises(UserError, match="lola vs lola; pairings with curves: nl vs nl, nl vs lola"):
        curves_figure(rs, pairs=[("lola", "lola")], keys=("reward",))


def test_curves_missing_key_is_a_user_error_listing_known_keys(rs: ResultSet) -> None:
    with pytest.raises(UserError, match="'p_cooperate'.*curves recorded: opponent_reward, reward"):
        curves_figure(rs)  # default keys include p_cooperate, which these records lack


def test_curves_diagnostic_keys_pair_agent_with_opponent() -> None:
    records = [
        curve_record(
            "a",
            "b",
            0,
            **{"agent.reciprocal_reward": [1.0, 2.0], "opponent.reciprocal_reward": [0.5, 0.5]},
        )
    ]
    ax = curves_figure(curve_set(records, ["a", "b"]), keys=("agent.reciprocal_reward",)).axes[0]
    np.testing.assert_allclose(
        by_gid(ax.lines, "agent.reciprocal_reward:a:b:opponent").get_ydata(), [0.5, 0.5]
    )


def test_many_pairings_get_small_multiples() -> None:
    names = ["a", "b", "c"]
    pairs = [(a, o) for a in names for o in names] + [("d", "a")]  # 10 pairings
    records = [
        curve_record(a, o, s, reward=[-2.0, -1.0 - s], p_cooperate=[0.5, 0.2 * s])
        for a, o in pairs
        for s in range(2)
    ]
    fig = curves_figure(curve_set(records, names))
    # Per key a 4 x 3 grid (rows a..d, columns a..c); the two cells of d vs b, c are hidden.
    assert len(fig.axes) == 2 * 12
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible[:10]] == [f"{a} vs {o}" for a, o in pairs]
    assert [ax.get_title() for ax in visible[10:]] == [f"{a} vs {o}" for a, o in pairs]
    first = by_gid(visible[0].lines, "reward:a:a:agent")
    np.testing.assert_allclose(first.get_ydata(), [-2.0, -1.5])
    np.testing.assert_allclose(visible[10].get_ylim(), (-0.03, 1.03))  # P(C) on [0, 1]


def test_curves_render_png_and_pdf(tmp_path: Path) -> None:
    records = [
        curve_record(
            "a",
            "b",
            s,
            reward=[-2.0, -1.5, -1.0 - s],
            p_cooperate=[0.5, 0.6, 0.7],
            opponent_reward=[-2, -2, -2.5],
            opponent_p_cooperate=[0.5, 0.4, 0.3],
        )
        for s in range(3)
    ]
    rs = curve_set(records, ["a", "b"])
    assert_png(save_figure(curves_figure(rs), tmp_path / "c.png"))
    assert_pdf(save_figure(curves_figure(rs), tmp_path / "c.pdf"))


def test_curves_means_skip_nan_values() -> None:
    records = [
        curve_record("a", "b", 0, reward=[math.nan, 1.0, 2.0]),
        curve_record("a", "b", 1, reward=[math.nan, 3.0, None]),  # type: ignore[list-item]
    ]
    ax = curves_figure(curve_set(records, ["a", "b"]), keys=("reward",)).axes[0]
    y = by_gid(ax.lines, "reward:a:b:agent").get_ydata()
    assert math.isnan(y[0]) and list(y[1:]) == [2.0, 2.0]


# ------------------------------------------------------------------------------ saving
def test_save_figure_unknown_suffix_is_a_user_error(rs: ResultSet, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"out\.jpg.*\.png, \.pdf, \.svg"):
        save_figure(heatmap_figure(rs), tmp_path / "figs" / "out.jpg")
    with pytest.raises(UserError, match="suffixes"):
        save_figure(heatmap_figure(rs), tmp_path / "figs" / "out")
    assert not (tmp_path / "figs").exists()


def test_save_figure_unwritable_path_is_a_user_error(rs: ResultSet, tmp_path: Path) -> None:
    tmp_path = tmp_path / "figs"
    tmp_path.mkdir()
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path / "file.txt" / "out.png"
    with pytest.raises(
        UserError, match=re.escape(f"cannot write {target}: ") + ".*not a directory"
    ):
        save_figure(heatmap_figure(rs), target)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UserError, match="cannot write .*dir.png: "):
        save_figure(heatmap_figure(rs), tmp_path / "dir.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file.txt"]  # no temp files


def test_save_figure_creates_parents_and_never_leaves_half_a_file(
    rs: ResultSet, tmp_path: Path
) -> None:
    target = save_figure(heatmap_figure(rs), tmp_path / "new" / "dir" / "heat.png")
    old = target.read_bytes()
    fig = heatmap_figure(rs)

    def broken_savefig(handle: Any, **kwargs: Any) -> None:
        handle.write(b"half a png")
        raise OSError(28, "No space left on device")

    fig.savefig = broken_savefig  # type: ignore[method-assign]
    with pytest.raises(UserError, match="cannot write .*heat.png: No space left on device"):
        save_figure(fig, target)
    assert target.read_bytes() == old
    assert [p.name for p in target.parent.iterdir()] == ["heat.png"]


# ------------------------------------------------------------------------------ plot_results
def test_plot_results_writes_each_kind(results_path: Path, tmp_path: Path) -> None:
    assert_pdf(plot_results(results_path, "heatmap", tmp_path / "h.pdf", stat="ci95"))
    out = plot_results(results_path, "curves", tmp_path / "c.png", keys=("reward",))
    assert_png(out)
    assert KINDS == ("heatmap", "curves")
    assert PLOT_KINDS == ("heatmap", "curves", "figure2", "figure3", "figure4")


def test_plot_results_user_errors(results_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown plot kind 'bars'; choose one of heatmap, curves"):
        plot_results(results_path, "bars", tmp_path / "x.png")
    with pytest.raises(UserError, match="unknown statistic"):
        plot_results(results_path, "heatmap", tmp_path / "x.png", stat="var")
    with pytest.raises(UserError, match="suffixes"):
        plot_results(results_path, "heatmap", tmp_path / "x.gif")
    with pytest.raises(UserError, match="curves recorded"):
        plot_results(results_path, "curves", tmp_path / "x.png")
    with pytest.raises(UserError):
        plot_results(tmp_path / "missing", "heatmap", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------ training logs
def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_training_figure_mfos_log(tmp_path: Path) -> None:
    log = write_jsonl(
        tmp_path / "mfos.jsonl",
        [{"meta": {"title": "M-FOS vs NL"}}]
        + [
            {"episode": i, "reward": -2 + 0.1 * i, "opponent_reward": -2.5 + 0.05 * i}
            for i in range(6)
        ],
    )
    fig = training_figure(log)
    assert fig.get_suptitle() == "M-FOS vs NL"
    assert len(fig.axes) == 1  # reward and opponent_reward share a panel
    ax = fig.axes[0]
    np.testing.assert_allclose(by_gid(ax.lines, "reward").get_xdata(), range(6))
    np.testing.assert_allclose(by_gid(ax.lines, "opponent_reward").get_ydata()[-1], -2.25)
    assert ax.get_xlabel() == "episode"
    assert_png(plot_training_log(log, tmp_path / "mfos.png"))
    assert_pdf(plot_training_log(log, tmp_path / "mfos.pdf"))


def test_training_figure_marks_self_play_episodes(tmp_path: Path) -> None:
    flags = [False, False, True, True, False, True]
    log = write_jsonl(
        tmp_path / "self_play.jsonl",
        [
            {"episode": i, "reward": -1.0 - i / 10, "opponent_reward": -1.5, "self_play": flag}
            for i, flag in enumerate(flags)
        ],
    )
    fig = training_figure(log)
    ax = fig.axes[0]
    spans = [p for p in ax.patches if p.get_gid() == "self_play"]
    assert len(spans) == 2  # episodes 2-3 and 5
    extents = sorted((span.get_x(), span.get_x() + span.get_width()) for span in spans)
    np.testing.assert_allclose(extents, [(1.5, 3.5), (4.5, 5.5)])
    assert "self-play episodes" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert fig.get_suptitle() == "training log: self_play.jsonl"


def test_many_self_play_runs_are_ticked_not_shaded() -> None:
    rows = [{"episode": i, "reward": -1.0, "self_play": i % 2 == 1} for i in range(100)]
    ax = training_figure(rows).axes[0]
    assert not [p for p in ax.patches if p.get_gid() == "self_play"]
    ticks = by_gid(ax.collections, "self_play")
    np.testing.assert_allclose([seg[0][0] for seg in ticks.get_segments()], range(1, 100, 2))


def test_training_figure_mmaml_log_plots_every_numeric_column() -> None:
    rows = [
        {"iteration": i, "loss": 100.0 / (i + 1), "reward": -1.5 + i / 10, "lr": 0.01, "tag": "x"}
        for i in range(4)
    ]
    fig = training_figure(rows)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "reward per step", "lr"]
    assert fig.axes[-1].get_xlabel() == "iteration"
    np.testing.assert_allclose(
        by_gid(fig.axes[0].lines, "loss").get_ydata(), [100, 50, 100 / 3, 25]
    )
    assert fig.get_suptitle() == "training log"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no entries"),
        ('{"meta": {"title": "t"}}\n\n', "has no entries"),
        ('{"episode": 0, "reward": -1}\nnot json\n', "line 2: not valid JSON"),
        ("[1, 2]\n", "line 1: expected a JSON object, got list"),
        ('{"episode": 0, "note": "x"}\n', "no numeric columns"),
    ],
)
def test_bad_training_logs_are_user_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as caught:
        plot_training_log(path, tmp_path / "out.png")
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.png").exists()


def test_unreadable_training_log_is_a_user_error(tmp_path: Path) -> None:
    missing = re.escape(f"cannot read training log {tmp_path / 'nope.jsonl'}: ")
    with pytest.raises(UserError, match=missing):
        training_figure(tmp_path / "nope.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="cannot read training log .*binary.jsonl"):
        training_figure(tmp_path / "binary.jsonl")
    with pytest.raises(UserError, match="cannot read training log"):
        training_figure(tmp_path)  # a directory


def test_training_log_gaps_stay_gaps() -> None:
    rows = [{"episode": 0, "reward": -1.0}, {"episode": 1}, {"episode": 2, "reward": -0.5}]
    y = by_gid(training_figure(rows).axes[0].lines, "reward").get_ydata()
    assert y[0] == -1.0 and math.isnan(y[1]) and y[2] == -0.5
