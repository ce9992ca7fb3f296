"""The paper's Figure 2: a Reciprocator's reciprocal reward and both players' P(cooperate)
over training, mean with a ±SEM band over seeds (Zhou et al. 2024; reference code
``analyze_stats.py``).

Twin axes share the x axis (training episode, or update in IPD-Analytic): on the left the
Reciprocator's reciprocal reward per step (grey), on the right the realised P(cooperate) of
the Reciprocator and of its opponent, and, dashed, the opponent's P(cooperate) against a
copy of itself (NL vs NL) when the run has that pairing, so the effect of reciprocity on the
opponent is read off one figure.

When is it drawn (:func:`curves_or_figure2`)?

* ``plot --kind figure2`` always: of ``FIGURE2_PAIR`` (reciprocator vs nl), or of the one
  pairing named by ``--pairs``.
* ``plot --kind curves`` without ``--pairs`` on results of a game in ``FIGURE2_GAMES``
  (``ipd-rollout``) that hold ``FIGURE2_PAIR`` with its reciprocal-reward curve.
* Otherwise ``--kind curves`` draws the generic per-pairing figure
  (:func:`~recip_tourney.plots.curves.curves_figure`); ``--pairs`` always selects it.

The Coin Game's figures (``--kind figure3|figure4``, and ``--kind curves`` of coins results)
are drawn by :func:`~recip_tourney.plots.coins_figures.coins_curves`; ``KIND_FIGURES`` maps
every kind of :func:`plot_curves` to its drawer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from recip_tourney.errors import UserError
from recip_tourney.plots.coins_figures import COINS_GAMES, COINS_KINDS, check_smooth, coins_curves
from recip_tourney.plots.curves import curves_figure, mean_sem, x_label
from recip_tourney.plots.figures import output_format, save_figure
from recip_tourney.tables.results import ResultSet

#: The pairing of the paper's Figure 2: the Reciprocator (row) against a naive learner.
FIGURE2_PAIR = ("reciprocator", "nl")
#: Games whose ``--kind curves`` figure is Figure 2 when the results hold ``FIGURE2_PAIR``.
FIGURE2_GAMES = ("ipd-rollout",)
RECIPROCAL_KEY = "reciprocal_reward"
Pairs = Sequence[tuple[str, str]] | None
COLORS = {"reciprocal": "0.35", "agent": "C0", "opponent": "C1"}


def pair_curve(rs: ResultSet, key: str, pair: tuple[str, str]) -> pd.DataFrame | None:
    """Per update, mean and SEM over seeds (NaN-aware) of curve ``key`` in pairing ``pair``.

    Returns
    -------
    DataFrame or None
        See :func:`~recip_tourney.plots.curves.mean_sem`; None when no match of the pairing
        recorded the curve.
    """
    rows = [
        (update, value)
        for r in rs.records
        if (r["agent"], r["opponent"]) == pair
        for update, value in enumerate(r["curves"].get(key) or [])
    ]
    if not rows:
        return None
    return mean_sem(pd.DataFrame(rows, columns=["update", "value"]))


def _reciprocal_side(rs: ResultSet, pair: tuple[str, str]) -> str | None:
    """``agent`` when the row player records a reciprocal reward, else ``opponent`` when the
    column player does, else None."""
    for side in ("agent", "opponent"):
        key = f"{side}.{RECIPROCAL_KEY}"
        if any((r["agent"], r["opponent"]) == pair and r["curves"].get(key) for r in rs.records):
            return side
    return None


def figure2_by_default(rs: ResultSet, pairs: Sequence[tuple[str, str]] | None = None) -> bool:
    """Whether ``plot --kind curves`` draws Figure 2: no ``pairs`` given, a game in
    ``FIGURE2_GAMES``, and ``FIGURE2_PAIR`` with the row Reciprocator's reciprocal reward."""
    return (
        pairs is None and rs.game in FIGURE2_GAMES and _reciprocal_side(rs, FIGURE2_PAIR) == "agent"
    )


def _band(ax: Axes, frame: pd.DataFrame, color: str, label: str, gid: str) -> Line2D:
    """The mean line (``gid``, ``label``) and its ±SEM band (``gid:band``)."""
    x = frame.index.to_numpy()
    (line,) = ax.plot(x, frame["mean"].to_numpy(), color=color, lw=1.5, label=label, gid=gid)
    low = (frame["mean"] - frame["sem"]).to_numpy()
    high = (frame["mean"] + frame["sem"]).to_numpy()
    ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0, gid=f"{gid}:band")
    return line


def figure2_figure(rs: ResultSet, pair: tuple[str, str] = FIGURE2_PAIR) -> Figure:
    """Figure 2 of the paper for one pairing with a Reciprocator.

    Parameters
    ----------
    rs : ResultSet
    pair : (agent, opponent)
        The pairing; the Reciprocator is the side that records ``reciprocal_reward`` (the row
        agent when both do).

    Returns
    -------
    Figure
        ``fig.axes[0]`` (left): the reciprocal reward per step, line gid
        ``reciprocal_reward``; ``fig.axes[1]`` (right, twin x): P(cooperate) of the row agent
        (gid ``p_cooperate:agent``) and the column agent (``p_cooperate:opponent``), each
        mean ± SEM over seeds (band gid ``<gid>:band``), and the non-Reciprocator's
        P(cooperate) as row agent of its self-play pairing, dashed
        (``p_cooperate:self_play``), when the results hold that pairing. Curve values
        that are NaN (lagged logs) are left out of the means.

    Raises
    ------
    UserError
        The pairing has no matches (the message lists the pairings), or neither side
        records a reciprocal reward.
    """
    pair = (str(pair[0]), str(pair[1]))
    present = list(dict.fromkeys(zip(rs.per_seed.agent, rs.per_seed.opponent, strict=True)))
    if pair not in present:
        raise UserError(
            f"no matches of {' vs '.join(pair)} for figure 2; pairings: "
            f"{', '.join(' vs '.join(p) for p in present)}"
        )
    side = _reciprocal_side(rs, pair)
    if side is None:
        raise UserError(
            f"figure 2 needs a Reciprocator: neither side of {' vs '.join(pair)} records a "
            f"{RECIPROCAL_KEY} curve; try --kind curves"
        )
    recip, other = (pair[0], pair[1]) if side == "agent" else (pair[1], pair[0])
    xlabel = x_label(rs.game)
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax_p = ax.twinx()
    rr = pair_curve(rs, f"{side}.{RECIPROCAL_KEY}", pair)
    assert rr is not None  # _reciprocal_side found it
    handles = [
        _band(ax, rr, COLORS["reciprocal"], f"{recip} reciprocal reward", "reciprocal_reward")
    ]
    for who, name, key, tag in (
        ("agent", pair[0], "p_cooperate", " (row)"),
        ("opponent", pair[1], "opponent_p_cooperate", " (column)"),
    ):
        curve = pair_curve(rs, key, pair)
        if curve is not None:
            label = f"{name} P(cooperate){tag if pair[0] == pair[1] else ''}"
            handles.append(_band(ax_p, curve, COLORS[who], label, f"p_cooperate:{who}"))
    baseline = pair_curve(rs, "p_cooperate", (other, other)) if other != recip else None
    if baseline is not None:
        (line,) = ax_p.plot(
            baseline.index.to_numpy(),
            baseline["mean"].to_numpy(),
            color=COLORS["opponent" if side == "agent" else "agent"],
            lw=1.2,
            ls="--",
            label=f"{other} P(cooperate) in {other} vs {other}",
            gid="p_cooperate:self_play",
        )
        handles.append(line)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{recip} reciprocal reward per step", color=COLORS["reciprocal"])
    ax.axhline(0.0, color="0.75", lw=0.6, zorder=0)
    ax.grid(alpha=0.3, lw=0.5)
    ax_p.set_ylabel("P(cooperate)")
    ax_p.set_ylim(-0.03, 1.03)
    ax.margins(x=0.01)
    handles.append(Patch(color="0.3", alpha=0.2, label="± SEM over seeds"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    seeds = rs.per_seed[(rs.per_seed.agent == pair[0]) & (rs.per_seed.opponent == pair[1])]
    n_seeds = len(seeds)
    fig.suptitle(
        f"{rs.game}: {pair[0]} vs {pair[1]}, reciprocal reward and P(cooperate) per {xlabel}\n"
        f"mean ± SEM over {n_seeds} seed{'s' if n_seeds != 1 else ''}",
        fontsize=10,
    )
    return fig


def _unsmoothed(smooth: int, kind: str) -> None:
    if check_smooth(smooth) != 1:
        raise UserError(
            f"--kind {kind} draws no smoothed curves here; smoothing applies to "
            f"{', '.join(COINS_KINDS)} and the curves of {', '.join(COINS_GAMES)} results"
        )


def _curves(rs: ResultSet, kind: str, pairs: Pairs, smooth: int) -> Figure:
    if rs.game in COINS_GAMES:
        return coins_curves(rs, kind, pairs, smooth)
    _unsmoothed(smooth, kind)
    if figure2_by_default(rs, pairs):
        return figure2_figure(rs)
    return curves_figure(rs, pairs)


def _figure2(rs: ResultSet, kind: str, pairs: Pairs, smooth: int) -> Figure:
    _unsmoothed(smooth, kind)
    if pairs is not None and len(pairs) > 1:
        raise UserError(f"figure 2 shows one pairing; --pairs names {len(pairs)}")
    return figure2_figure(rs, tuple(pairs[0]) if pairs else FIGURE2_PAIR)


#: ``plot_curves`` kinds -> drawer ``(rs, kind, pairs, smooth) -> Figure``: the generic
#: curves (or a paper figure by the rules above), Figure 2, the Coin Game's Figures 3 and 4.
KIND_FIGURES: dict[str, Callable[[ResultSet, str, Pairs, int], Figure]] = {
    "curves": _curves,
    "figure2": _figure2,
    **dict.fromkeys(COINS_KINDS, coins_curves),
}
CURVE_KINDS = tuple(KIND_FIGURES)


def curves_or_figure2(
    rs: ResultSet,
    kind: str = "curves",
    pairs: Sequence[tuple[str, str]] | None = None,
    smooth: int = 1,
) -> Figure:
    """The figure ``plot --kind curves|figure2|figure3|figure4`` draws (the rules in the
    module docstring).

    Parameters
    ----------
    rs : ResultSet
    kind : {"curves", "figure2", "figure3", "figure4"}
    pairs : sequence of (agent, opponent), optional
        ``curves``: the pairings of the generic figure (given pairs always select it).
        ``figure2``: at most one pairing, default ``FIGURE2_PAIR``. ``figure3|figure4``:
        none (their pairings are fixed).
    smooth : int
        Moving-average window over episodes of the coins figures
        (:mod:`recip_tourney.plots.coins_series`); other figures accept only 1.

    Returns
    -------
    Figure

    Raises
    ------
    UserError
        Unknown kind, several pairs for ``figure2``, smoothing a figure without it, or the
        errors of :func:`figure2_figure`, :func:`~recip_tourney.plots.curves.curves_figure`
        and :func:`~recip_tourney.plots.coins_figures.coins_curves`.
    """
    draw = KIND_FIGURES.get(kind)
    if draw is None:
        raise UserError(f"unknown curves kind {kind!r}; choose one of {', '.join(CURVE_KINDS)}")
    return draw(rs, kind, pairs, smooth)


def plot_curves(
    directory: Path,
    output: Path,
    kind: str = "curves",
    pairs: Sequence[tuple[str, str]] | None = None,
    smooth: int = 1,
) -> Path:
    """Load a results directory, draw :func:`curves_or_figure2` and save it to ``output``.

    Returns
    -------
    Path
        ``output`` (``.png``, ``.pdf`` or ``.svg``).

    Raises
    ------
    UserError
        Unknown suffix or kind, a bad ``smooth`` (checked before loading), missing results,
        the figure's errors, an unwritable output.
    """
    output_format(output)
    if kind not in CURVE_KINDS:
        raise UserError(f"unknown curves kind {kind!r}; choose one of {', '.join(CURVE_KINDS)}")
    check_smooth(smooth)
    rs = ResultSet.from_dir(directory)
    return save_figure(curves_or_figure2(rs, kind, pairs, smooth), output)
