"""Learning curves of a tournament: per ordered pairing, the mean over seeds per update with
a shaded ±SEM band for the row agent and its opponent's matching curve dashed.

Curves may hold NaN (a lagged log has no value for the first update; JSON ``null`` reads as
NaN too): means, spreads and seed counts are taken over the finite values of each update.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from recip_tourney.errors import UserError
from recip_tourney.tables.results import ResultSet

#: Up to this many pairings share one axis per key; more get one small panel per pairing.
MAX_OVERLAID = 8
CURVE_LABELS = {
    "p_cooperate": "P(cooperate)",
}
STYLE_NOTE = "solid: row agent, dashed: column agent, shaded: ± SEM over seeds"
Cache = dict[str, dict[tuple[str, str], pd.DataFrame]]


def counterpart_key(key: str) -> str | None:
    """The opponent's curve matching ``key``: ``reward`` -> ``opponent_reward``,
    ``agent.x`` -> ``opponent.x``; None for keys that already describe the opponent."""
    if key.startswith("agent."):
        return "opponent." + key.removeprefix("agent.")
    if key.startswith(("opponent.", "opponent_")):
        return None
    return f"opponent_{key}"


def x_label(game: str) -> str:
    """What one curve point is: the unit of the game's length setting (``episode`` in the
    rollout games and Coins, one PPO update each; ``update`` in IPD-Analytic, and for games
    the registry lacks)."""
    from recip_tourney import registry  # imported late: it loads the games (and torch)

    try:
        length = registry.game(game).length
    except UserError:
        return "update"
    return length.removesuffix("s")


def curve_label(game: str, key: str) -> str:
    """Axis label of curve ``key``; the reward's says what a reward is in ``game``."""
    if key == "reward":
        from recip_tourney.registry import describe_reward  # late: it loads the games

        return describe_reward(game)[0]
    return CURVE_LABELS.get(key, key)


def mean_sem(frame: pd.DataFrame) -> pd.DataFrame:
    """Per update, the mean over seeds and its SEM, ignoring NaN values.

    Parameters
    ----------
    frame : DataFrame
        Long form with ``update`` and ``value`` columns (one row per seed and update);
        ``None`` and NaN values are missing.

    Returns
    -------
    DataFrame
        Indexed by update, sorted: ``mean``, ``std`` (``ddof=1``), ``n`` (finite values) and
        ``sem = std / sqrt(n)``. An update with one finite value has NaN spreads; one with
        none has a NaN mean (a gap in the line).
    """
    values = pd.to_numeric(frame["value"], errors="coerce")
    grouped = values.groupby(frame["update"], sort=True)
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()})
    out["sem"] = out["std"] / np.sqrt(out["n"])
    return out


def _frames(rs: ResultSet, key: str) -> dict[tuple[str, str], pd.DataFrame]:
    """Per ordered pairing, the per-update mean and SEM of curve ``key`` (UserError if none)."""
    long = rs.curves(key)
    return {
        (str(a), str(o)): mean_sem(group)
        for (a, o), group in long.groupby(["agent", "opponent"], sort=False)
    }


def _draw_pairing(ax: Axes, key: str, pair: tuple[str, str], color: str, cache: Cache) -> None:
    """Mean line with a ±SEM band for the row agent, and the opponent's mean dashed."""
    own = cache[key].get(pair)
    if own is None:
        return
    name = f"{key}:{pair[0]}:{pair[1]}"
    x = own.index.to_numpy()
    ax.plot(
        x,
        own["mean"].to_numpy(),
        color=color,
        lw=1.5,
        gid=f"{name}:agent",
        label=f"{pair[0]} vs {pair[1]}",
    )
    low, high = (own["mean"] - own["sem"]).to_numpy(), (own["mean"] + own["sem"]).to_numpy()
    ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0, gid=f"{name}:band")
    other_key = counterpart_key(key)
    other = cache.get(other_key, {}).get(pair) if other_key else None
    if other is not None:
        ax.plot(
            other.index.to_numpy(),
            other["mean"].to_numpy(),
            color=color,
            lw=1.2,
            ls="--",
            gid=f"{name}:opponent",
        )


def _style_axis(ax: Axes, key: str) -> None:
    if key in ("p_cooperate", "opponent_p_cooperate"):
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3, lw=0.5)


def _style_legend(fig: Figure, extra: list[Line2D]) -> None:
    handles = [
        Line2D([], [], color="0.2", lw=1.5, label="row agent (mean)"),
        Line2D([], [], color="0.2", lw=1.2, ls="--", label="column agent (mean)"),
        Patch(color="0.2", alpha=0.2, label="± SEM over seeds"),
    ]
    fig.legend(handles=[*extra, *handles], loc="outside right upper", fontsize=8, frameon=False)


def curves_figure(
    rs: ResultSet,
    pairs: Sequence[tuple[str, str]] | None = None,
    keys: Sequence[str] = ("reward", "p_cooperate"),
) -> Figure:
    """Learning curves per ordered pairing: mean over seeds per update with a ±SEM band.

    Parameters
    ----------
    rs : ResultSet
    pairs : sequence of (agent, opponent), optional
        Pairings to show; default: every pairing with a curve, in display order.
    keys : sequence of str
        Curve keys of the match records (``reward``, ``p_cooperate``, diagnostics such as
        ``agent.reciprocal_reward``). The row agent's curve is solid with a shaded band; its
        opponent's matching curve (``opponent_reward``, ``opponent.reciprocal_reward`` ...) is
        dashed in the same colour when recorded.

    Returns
    -------
    Figure
        Up to ``MAX_OVERLAID`` pairings: one axis per key, pairings in distinct colours.
        More: per key a grid of small panels (rows = agent, columns = opponent) sharing axes.
        The x axis counts updates, labelled ``episode`` in rollout games (:func:`x_label`).
        This is the generic figure; ``plot --kind curves`` may draw Figure 2 instead (see
        :func:`recip_tourney.plots.figure2.curves_or_figure2`).

    Raises
    ------
    UserError
        No keys, a key no match recorded (the message lists the recorded ones), or a pairing
        without matches.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise UserError("no curve keys given; choose e.g. reward, p_cooperate")
    cache: Cache = {key: _frames(rs, key) for key in keys}
    recorded = {k for r in rs.records for k, v in r["curves"].items() if v}
    for key in keys:
        other = counterpart_key(key)
        if other and other in recorded:
            cache[other] = _frames(rs, other)
    present = [
        p
        for p in dict.fromkeys(zip(rs.per_seed.agent, rs.per_seed.opponent, strict=True))
        if any(p in cache[key] for key in keys)
    ]
    if pairs is None:
        chosen = present
    else:
        chosen = [(str(a), str(o)) for a, o in pairs]
        missing = [p for p in chosen if p not in present]
        if missing:
            raise UserError(
                f"no {'/'.join(keys)} curves for {', '.join(' vs '.join(p) for p in missing)}; "
                f"pairings with curves: {', '.join(' vs '.join(p) for p in present)}"
            )
        chosen = list(dict.fromkeys(chosen))
    xlabel = x_label(rs.game)
    title = f"{rs.game}: learning curves, mean over seeds per {xlabel}"
    if len(chosen) <= MAX_OVERLAID:
        return _overlaid(rs.game, chosen, keys, cache, title, xlabel)
    return _small_multiples(rs, chosen, keys, cache, title, xlabel)


def _overlaid(
    game: str,
    chosen: list[tuple[str, str]],
    keys: list[str],
    cache: Cache,
    title: str,
    xlabel: str,
) -> Figure:
    fig = Figure(figsize=(9.0, 0.6 + 2.8 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    colors = matplotlib.colormaps["tab10"].colors
    for ax, key in zip(axes, keys, strict=True):
        for pair, color in zip(chosen, colors, strict=False):
            _draw_pairing(ax, key, pair, color, cache)
        ax.set_ylabel(curve_label(game, key))
        _style_axis(ax, key)
    axes[-1].set_xlabel(xlabel)
    pairing_handles = [
        Line2D([], [], color=c, lw=1.5, label=f"{a} vs {o}")
        for (a, o), c in zip(chosen, colors, strict=False)
    ]
    _style_legend(fig, pairing_handles)
    fig.suptitle(title, fontsize=10)
    return fig


def _small_multiples(
    rs: ResultSet,
    chosen: list[tuple[str, str]],
    keys: list[str],
    cache: Cache,
    title: str,
    xlabel: str,
) -> Figure:
    rows = [a for a in rs.agents if any(p[0] == a for p in chosen)]
    cols = [o for o in rs.agents if any(p[1] == o for p in chosen)]
    fig = Figure(
        figsize=(1.0 + 2.0 * max(len(cols), 2), (0.8 + 1.6 * len(rows)) * len(keys) + 0.7),
        layout="constrained",
    )
    subfigs = fig.subfigures(len(keys), 1, squeeze=False)[:, 0]
    for subfig, key in zip(subfigs, keys, strict=True):
        grid = subfig.subplots(len(rows), len(cols), sharex=True, sharey=True, squeeze=False)
        used = np.zeros(grid.shape, dtype=bool)
        for i, agent in enumerate(rows):
            for j, opponent in enumerate(cols):
                if (agent, opponent) in chosen:
                    used[i, j] = True
                    ax = grid[i, j]
                    _draw_pairing(ax, key, (agent, opponent), "C0", cache)
                    ax.set_title(f"{agent} vs {opponent}", fontsize=8)
                    ax.tick_params(labelsize=7)
                    _style_axis(ax, key)
        for i, j in np.argwhere(~used):
            grid[i, j].set_axis_off()
        # Panels with no used neighbour below / to the left show their own tick labels.
        for i, j in np.argwhere(used):
            if i + 1 == len(rows) or not used[i + 1, j]:
                grid[i, j].tick_params(labelbottom=True)
            if j == 0 or not used[i, :j].any():
                grid[i, j].tick_params(labelleft=True)
        subfig.supylabel(curve_label(rs.game, key), fontsize=9)
        subfig.supxlabel(xlabel, fontsize=9)
    # Constrained layout makes no room for a figure-level legend next to subfigures, so the
    # line styles are explained in the title.
    fig.suptitle(f"{title}\n{STYLE_NOTE}", fontsize=10)
    return fig
