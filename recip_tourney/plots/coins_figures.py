"""The paper's Coin Game figures, mean with a ±SEM band over seeds per training episode
(Zhou et al. 2024, Figures 3 and 4; reference code ``analyze_stats.py -m``).

* Figure 3 (:func:`figure3_figure`): a naive learner (NL-PPO) trained against a
  Reciprocator, an M-FOS and another NL: the pairings ``FIGURE3_PAIRS``, the NL being the
  column player of each (curves ``opponent_*``; in ``nl`` vs ``nl`` the column copy too).
  Left, the NL's share of own coins; right, its own (solid), other's (dashed) and total
  (dotted) coin counts.
* Figure 4 (:func:`figure4_figure`): self-play, the pairings ``FIGURE4_PAIRS``. Left, the
  total extrinsic reward of both players per episode; right, the pair's share of own coins.

Both draw one colour per pairing (the reference code's: Reciprocator blue, M-FOS green, NL
orange) and skip pairings the results lack, naming them in the title; a figure none of whose
pairings is present is a UserError listing the pairings that are.

Each line is the mean over seeds, with a ±SEM band, of a per-seed series (smoothed first when
``smooth > 1``); :mod:`recip_tourney.plots.coins_series` defines and computes these series.

When is it drawn (:func:`coins_curves`)? ``plot --kind figure3|figure4`` on any results;
``plot --kind curves`` without ``--pairs`` on results of a game in ``COINS_GAMES``: both
figures as two rows of one figure (only the rows with a pairing present; the generic
figure when neither has one), ``--pairs`` the generic per-pairing curves
(:func:`~recip_tourney.plots.curves.curves_figure` of ``COINS_CURVE_KEYS``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from recip_tourney.errors import UserError
from recip_tourney.plots.coins_series import (
    Pair,
    SeriesFn,
    check_smooth,
    nl_coins,
    nl_share,
    pair_series,
    pair_share,
    total_reward,
)
from recip_tourney.plots.coins_series import moving_average as moving_average
from recip_tourney.plots.coins_series import share as share
from recip_tourney.plots.curves import curves_figure
from recip_tourney.tables.results import ResultSet

#: Games whose ``--kind curves`` figure (without ``--pairs``) is Figures 3 and 4 combined.
COINS_GAMES = ("coins",)
#: Figure 3: an NL (the column player) against a Reciprocator, an M-FOS and another NL.
FIGURE3_PAIRS: tuple[Pair, ...] = (("reciprocator", "nl"), ("mfos", "nl"), ("nl", "nl"))
#: Figure 4: self-play of the Reciprocator, M-FOS and NL.
FIGURE4_PAIRS: tuple[Pair, ...] = (("reciprocator", "reciprocator"), ("mfos", "mfos"), ("nl", "nl"))
#: ``plot --kind`` values drawn by :func:`coins_curves` on any results.
COINS_KINDS = ("figure3", "figure4")
#: Curves of the generic figure of coins results (``plot --kind curves --pairs ...``).
COINS_CURVE_KEYS = ("reward", "own_coins", "other_coins")
#: Colours by agent, as in the reference code's overlay (others cycle through tab10).
COLORS = {"reciprocator": "C0", "mfos": "C2", "nl": "C1"}
#: Right panel of Figure 3: gid suffix -> (column player's curve, line style, label).
COIN_PARTS = {
    "own": ("opponent_own_coins", "-", "own coins"),
    "other": ("opponent_other_coins", "--", "other's coins"),
    "total": ("opponent_coins", ":", "all coins"),
}
#: One curve point is one training episode (one PPO update; M-FOS: its inner episode).
XLABEL = "episode"
SHARE_LIMITS = (-0.03, 1.03)


# ------------------------------------------------------------------------------ drawing
@dataclass(frozen=True)
class _Line:
    """One mean line (gid ``gid``) with its ±SEM band (``gid:band``)."""

    gid: str
    values: SeriesFn
    ls: str = "-"


@dataclass(frozen=True)
class _Panel:
    ylabel: str
    title: str
    lines: Callable[[Pair], list[_Line]]
    share: bool = False


@dataclass(frozen=True)
class _Spec:
    """A figure: its pairings, how a pairing is named, two panels, a title."""

    name: str
    pairs: tuple[Pair, ...]
    label: Callable[[Pair], str]
    panels: tuple[_Panel, _Panel]
    title: str
    style_legend: tuple[tuple[str, str], ...] = ()  # (line style, label) under the right panel


FIGURE3 = _Spec(
    name="figure 3",
    pairs=FIGURE3_PAIRS,
    label=lambda p: f"nl against {p[0]}",
    panels=(
        _Panel(
            "NL's share of own coins",
            "own coins / all coins the NL collects",
            lambda p: [_Line(f"own_share:{p[0]}", nl_share)],
            share=True,
        ),
        _Panel(
            "coins the NL collects per game",
            "the NL's coins: own (solid), other's (dashed), all (dotted)",
            lambda p: [
                _Line(f"coins:{p[0]}:{part}", nl_coins(key), ls)
                for part, (key, ls, _) in COIN_PARTS.items()
            ],
        ),
    ),
    title="an NL-PPO (column player) learning against a Reciprocator, an M-FOS and an NL",
    style_legend=tuple((ls, label) for _, ls, label in COIN_PARTS.values()),
)
FIGURE4 = _Spec(
    name="figure 4",
    pairs=FIGURE4_PAIRS,
    label=lambda p: f"{p[0]} vs {p[1]}",
    panels=(
        _Panel(
            "total extrinsic reward per episode",
            "reward of both players (episode return)",
            lambda p: [_Line(f"total_reward:{p[0]}", total_reward)],
        ),
        _Panel(
            "share of own coins (both players)",
            "own coins / all coins collected by the pair",
            lambda p: [_Line(f"own_share:{p[0]}", pair_share)],
            share=True,
        ),
    ),
    title="self-play of the Reciprocator, M-FOS and NL-PPO",
)
SPECS = {"figure3": FIGURE3, "figure4": FIGURE4}


def _color(pair: Pair, i: int) -> str:
    return COLORS.get(pair[0], f"C{3 + i}")


def _band(ax: Axes, frame: pd.DataFrame, color: str, gid: str, ls: str) -> None:
    x = frame.index.to_numpy()
    ax.plot(x, frame["mean"].to_numpy(), color=color, lw=1.5, ls=ls, gid=gid)
    low = (frame["mean"] - frame["sem"]).to_numpy()
    high = (frame["mean"] + frame["sem"]).to_numpy()
    ax.fill_between(x, low, high, color=color, alpha=0.18, lw=0, gid=f"{gid}:band")


def _present(rs: ResultSet) -> list[Pair]:
    return list(dict.fromkeys(zip(rs.per_seed.agent, rs.per_seed.opponent, strict=True)))


def _frames(
    rs: ResultSet, spec: _Spec, smooth: int
) -> dict[Pair, tuple[list[dict[str, tuple[pd.DataFrame, int] | None]], int]]:
    """Per pairing with data: per panel, per line gid, the series (None: not recorded), and
    the pairing's seed count. Pairings none of whose lines has data are left out."""
    out = {}
    for pair in spec.pairs:
        panels = [
            {line.gid: pair_series(rs, pair, line.values, smooth) for line in panel.lines(pair)}
            for panel in spec.panels
        ]
        found = [f for panel in panels for f in panel.values() if f is not None]
        if found:
            out[pair] = (panels, max(n for _, n in found))
    return out


def _draw(
    container: FigureBase,
    rs: ResultSet,
    spec: _Spec,
    frames: dict[Pair, Any],
    smooth: int,
    prefix: str = "",
) -> None:
    """Draw ``spec``'s two panels into ``container`` (a Figure or a SubFigure)."""
    axes = container.subplots(1, 2, squeeze=True)
    handles: list[Any] = []
    for pair, (panels, seeds) in frames.items():
        color = _color(pair, spec.pairs.index(pair))
        for ax, panel, series in zip(axes, spec.panels, panels, strict=True):
            for line in panel.lines(pair):
                found = series[line.gid]
                if found is not None:
                    _band(ax, found[0], color, prefix + line.gid, line.ls)
        label = f"{spec.label(pair)} ({seeds} seed{'s' if seeds != 1 else ''})"
        handles.append(Line2D([], [], color=color, lw=1.5, label=label))
    handles.append(Patch(color="0.3", alpha=0.2, label="± SEM over seeds"))
    for ax, panel in zip(axes, spec.panels, strict=True):
        ax.set_xlabel(XLABEL)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title, fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        ax.margins(x=0.01)
        if panel.share:
            ax.set_ylim(*SHARE_LIMITS)
    axes[0].legend(handles=handles, fontsize=7, frameon=False, loc="best")
    if spec.style_legend:
        styles = [Line2D([], [], color="0.2", lw=1.2, ls=ls, label=lab)
                  for ls, lab in spec.style_legend]  # fmt: skip
        axes[1].legend(handles=styles, fontsize=7, frameon=False, loc="best")
    notes = [f"mean ± SEM over seeds per {XLABEL}"]
    if smooth > 1:
        notes.append(f"moving average over {smooth} {XLABEL}s")
    missing = [p for p in spec.pairs if p not in frames]
    if missing:
        notes.append(f"not in these results: {', '.join(' vs '.join(p) for p in missing)}")
    container.suptitle(f"{rs.game}, {spec.name}: {spec.title}\n{'; '.join(notes)}", fontsize=10)


def _none_present(rs: ResultSet, spec: _Spec) -> UserError:
    return UserError(
        f"{spec.name} needs one of the pairings "
        f"{', '.join(' vs '.join(p) for p in spec.pairs)} with coin curves; pairings in "
        f"these results: {', '.join(' vs '.join(p) for p in _present(rs))}"
    )


def _figure(rs: ResultSet, spec: _Spec, smooth: int) -> Figure:
    smooth = check_smooth(smooth)
    frames = _frames(rs, spec, smooth)
    if not frames:
        raise _none_present(rs, spec)
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    _draw(fig, rs, spec, frames, smooth)
    return fig


def figure3_figure(rs: ResultSet, smooth: int = 1) -> Figure:
    """Figure 3 of the paper: an NL-PPO against a Reciprocator, an M-FOS and another NL.

    Parameters
    ----------
    rs : ResultSet
        Coin Game results; the pairings ``FIGURE3_PAIRS`` are used, the NL being the column
        player of each (its curves ``opponent_own_coins``, ``opponent_other_coins``,
        ``opponent_coins``).
    smooth : int
        Moving-average window over episodes, applied to each seed before the mean and SEM
        (:func:`~recip_tourney.plots.coins_series.moving_average`); named in the title when > 1.

    Returns
    -------
    Figure
        ``fig.axes[0]`` (left): the NL's own-coin share ``opponent_own_coins /
        opponent_coins`` per seed and episode (NaN where it collected no coin), one line per
        pairing, gid ``own_share:<row agent>``. ``fig.axes[1]`` (right): its own (solid),
        other's (dashed) and total (dotted) coins, gids ``coins:<row agent>:own|other|total``.
        Every line is the mean over seeds with a ±SEM band (gid ``<gid>:band``). Pairings
        missing from the results are skipped and named in the title.

    Raises
    ------
    UserError
        None of the pairings has coin curves (the message lists the pairings present), or a
        bad ``smooth``.
    """
    return _figure(rs, FIGURE3, smooth)


def figure4_figure(rs: ResultSet, smooth: int = 1) -> Figure:
    """Figure 4 of the paper: self-play of the Reciprocator, M-FOS and NL-PPO.

    Parameters
    ----------
    rs : ResultSet
        Coin Game results; the pairings ``FIGURE4_PAIRS`` are used.
    smooth : int
        Moving-average window over episodes, applied to each seed before the mean and SEM
        (:func:`~recip_tourney.plots.coins_series.moving_average`); named in the title when > 1.

    Returns
    -------
    Figure
        ``fig.axes[0]`` (left): the total extrinsic reward ``reward + opponent_reward`` per
        episode, gid ``total_reward:<agent>``; ``fig.axes[1]`` (right): the pair's own-coin
        share ``(own_coins + opponent_own_coins) / (coins + opponent_coins)`` (NaN where no
        coin was collected), gid ``own_share:<agent>``. Mean over seeds with a ±SEM band
        (gid ``<gid>:band``); missing pairings are skipped and named in the title.

    Raises
    ------
    UserError
        None of the pairings has coin curves (the message lists the pairings present), or a
        bad ``smooth``.
    """
    return _figure(rs, FIGURE4, smooth)


def combined_figure(rs: ResultSet, smooth: int = 1) -> Figure:
    """Figures 3 and 4 as two rows of one figure (``plot --kind curves`` of coins results).

    Returns
    -------
    Figure
        One subfigure (``fig.subfigs``) per figure with at least one of its pairings
        present, Figure 3 first; gids are those of :func:`figure3_figure` and
        :func:`figure4_figure` prefixed ``fig3:`` and ``fig4:`` (``fig3:own_share:mfos``,
        ``fig4:total_reward:nl:band`` ...). When neither figure has a pairing present: the
        generic curves (:func:`~recip_tourney.plots.curves.curves_figure` of
        ``COINS_CURVE_KEYS``) of every pairing, which accept no smoothing.

    Raises
    ------
    UserError
        A bad ``smooth``, or ``smooth > 1`` with the generic figure.
    """
    smooth = check_smooth(smooth)
    rows = []
    for key, spec in SPECS.items():
        frames = _frames(rs, spec, smooth)
        if frames:
            rows.append((key.replace("figure", "fig"), spec, frames))
    if not rows:
        return generic_figure(rs, None, smooth)
    fig = Figure(figsize=(11.0, 4.4 * len(rows)), layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    for subfig, (prefix, spec, frames) in zip(subfigs, rows, strict=True):
        _draw(subfig, rs, spec, frames, smooth, prefix=f"{prefix}:")
    return fig


def generic_figure(
    rs: ResultSet, pairs: Sequence[tuple[str, str]] | None, smooth: int = 1
) -> Figure:
    """The generic per-pairing curves of coins results (``COINS_CURVE_KEYS``).

    Raises
    ------
    UserError
        ``smooth > 1`` (the generic figure draws raw curves), or the errors of
        :func:`~recip_tourney.plots.curves.curves_figure`.
    """
    if check_smooth(smooth) != 1:
        raise UserError(
            f"smoothing applies to {', '.join(COINS_KINDS)} and the combined coins curves, "
            "not to the per-pairing curves"
        )
    return curves_figure(rs, pairs, COINS_CURVE_KEYS)


def coins_curves(
    rs: ResultSet,
    kind: str,
    pairs: Sequence[tuple[str, str]] | None = None,
    smooth: int = 1,
) -> Figure:
    """The coins figure ``plot --kind figure3|figure4|curves`` draws.

    Parameters
    ----------
    rs : ResultSet
    kind : {"figure3", "figure4", "curves"}
        ``figure3`` / ``figure4``: :func:`figure3_figure` / :func:`figure4_figure`, whose
        pairings are fixed. ``curves``: :func:`combined_figure` without ``pairs``, the
        generic per-pairing curves of ``COINS_CURVE_KEYS`` with them.
    pairs : sequence of (agent, opponent), optional
        ``curves`` only.
    smooth : int
        Moving-average window over episodes (see :mod:`~recip_tourney.plots.coins_series`).

    Returns
    -------
    Figure

    Raises
    ------
    UserError
        Unknown kind, ``pairs`` with figure 3 or 4, a bad ``smooth``, or the figures' errors.
    """
    if kind == "curves":
        return combined_figure(rs, smooth) if pairs is None else generic_figure(rs, pairs, smooth)
    spec = SPECS.get(kind)
    if spec is None:
        choices = ", ".join((*COINS_KINDS, "curves"))
        raise UserError(f"unknown coins figure kind {kind!r}; choose one of {choices}")
    if pairs is not None:
        raise UserError(
            f"{spec.name} draws the pairings {', '.join(' vs '.join(p) for p in spec.pairs)}; "
            "--pairs selects pairings of --kind curves only"
        )
    return _figure(rs, spec, smooth)
