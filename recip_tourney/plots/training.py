"""Figures of pretraining logs (M-FOS, self-play, M-MAML): JSON lines, one object per
meta-episode or outer iteration.

Examples of log lines::

    {"meta": {"title": "M-FOS vs NL"}}                          (optional header, first)
    {"episode": 0, "reward": -1.9, "opponent_reward": -2.1}   (M-FOS)
    {"episode": 3, "reward": -1.2, "opponent_reward": -1.1, "self_play": true}
    {"iteration": 0, "loss": 123.4, "reward": -1.5}            (M-MAML)
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from recip_tourney.errors import UserError
from recip_tourney.plots.figures import output_format, save_figure

#: Log columns that time the run rather than describe learning; never plotted.
TIMING_COLUMNS = ("seconds",)
X_COLUMNS = ("episode", "iteration")
SELF_PLAY = "self_play"
#: Self-play runs are shaded up to this many runs; beyond it, a rug of ticks marks them.
MAX_SHADED_RUNS = 40
#: Logs longer than this get a rolling mean drawn over the faint raw values.
SMOOTH_ABOVE = 200
LABELS = {"reward": "reward per step", "loss": "loss"}


def read_training_log(path: Path | str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read a JSON-lines training log.

    Returns
    -------
    (rows, meta)
        ``rows``: the log objects, header lines (with a ``meta`` key) left out; ``meta``: the
        first header's ``meta`` object, or ``{}``.

    Raises
    ------
    UserError
        Unreadable file, a line that is not a JSON object, or no entries; one line naming the
        file (and line number).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UserError(f"cannot read training log {path}: {reason}") from None
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"training log {path}, line {number}: not valid JSON ({exc.msg}); "
                "expected one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            raise UserError(
                f"training log {path}, line {number}: expected a JSON object, "
                f"got {type(obj).__name__}"
            )
        if "meta" in obj:
            if not meta and isinstance(obj["meta"], dict):
                meta = obj["meta"]
            continue
        rows.append(obj)
    if not rows:
        raise UserError(f"training log {path} has no entries (expected JSON lines)")
    return rows, meta


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def log_frame(rows: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, str | None, list[str]]:
    """The log as a frame, its x column (None: use the row number) and the numeric columns
    to plot (every column whose values are all numbers, except the x column and wall-clock
    timings, which describe the machine, not the learning)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    frame = pd.DataFrame(
        {c: [row.get(c, math.nan) for row in rows] for c in columns}, index=range(len(rows))
    )
    x = next((c for c in X_COLUMNS if c in columns), None)
    numeric = [
        c
        for c in columns
        if c != x
        and c != SELF_PLAY
        and c not in TIMING_COLUMNS
        and all(_is_number(row[c]) for row in rows if c in row and row[c] is not None)
        and any(_is_number(row.get(c)) for row in rows)
    ]
    return frame, x, numeric


def _panels(columns: list[str]) -> list[list[str]]:
    """Group ``key`` with ``opponent_key`` (same scale) on one panel; others alone."""
    panels: list[list[str]] = []
    placed: set[str] = set()
    for column in columns:
        if column in placed:
            continue
        group = [column]
        partner = f"opponent_{column}"
        if partner in columns:
            group.append(partner)
        elif column.startswith("opponent_") and column.removeprefix("opponent_") in columns:
            continue  # drawn with its partner
        panels.append(group)
        placed.update(group)
    return panels


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) indices of the runs of True in ``flags``."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def training_figure(
    log: Sequence[Mapping[str, Any]] | Path | str, title: str | None = None
) -> Figure:
    """Plot a pretraining log: every numeric column against the episode / iteration.

    Parameters
    ----------
    log : list of dict, or Path
        The log entries, or a JSON-lines file (see :func:`read_training_log`).
    title : str, optional
        Figure title; default: the header's ``meta.title``, else the file name.

    Returns
    -------
    Figure
        One panel per column (``reward`` and ``opponent_reward`` share one), sharing the x
        axis. Entries with ``"self_play": true`` are shaded (or marked by ticks along the x
        axis when there are many separate runs). Logs longer than ``SMOOTH_ABOVE`` entries
        show a rolling mean over the faint raw values.

    Raises
    ------
    UserError
        Unreadable or empty log, or no numeric columns.
    """
    if isinstance(log, str | Path):
        source, default_title = str(log), f"training log: {Path(log).name}"
        rows, meta = read_training_log(log)
    else:
        source = default_title = "training log"
        headers = [row["meta"] for row in log if isinstance(row.get("meta"), Mapping)]
        meta = dict(headers[0]) if headers else {}
        rows = [dict(row) for row in log if "meta" not in row]
        if not rows:
            raise UserError("the training log has no entries")
    frame, xcol, numeric = log_frame(rows)
    if not numeric:
        raise UserError(f"{source} has no numeric columns to plot (keys: {', '.join(frame)})")
    if xcol and not all(_is_number(v) for v in frame[xcol].dropna()):
        raise UserError(f"{source}: the {xcol!r} column must hold numbers")
    x = frame[xcol].to_numpy(dtype=float) if xcol else np.arange(len(frame), dtype=float)
    panels = _panels(numeric)
    fig = Figure(figsize=(8.0, 0.8 + 2.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    window = max(1, len(frame) // 50) if len(frame) > SMOOTH_ABOVE else 1
    flags = np.array([row.get(SELF_PLAY) is True for row in rows])
    for ax, group in zip(axes, panels, strict=True):
        for k, column in enumerate(group):
            y = frame[column].astype(float)
            style = {"color": f"C{k}", "ls": "-" if k == 0 else "--"}
            marker = "o" if len(frame) <= 50 else None
            if window > 1:
                ax.plot(x, y.to_numpy(), lw=0.6, alpha=0.3, color=style["color"])
                y = y.rolling(window, center=True, min_periods=1).mean()
                label = f"{column} (rolling mean of {window})"
            else:
                label = column
            ax.plot(x, y.to_numpy(), lw=1.4, marker=marker, ms=3, label=label, gid=column, **style)
        handles = ax.get_legend_handles_labels()[0]
        if flags.any():
            handles.append(_mark_self_play(ax, x, flags))
        ax.set_ylabel(LABELS.get(group[0], group[0]))
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(handles=handles, fontsize=8, loc="best")
    axes[-1].set_xlabel(xcol or "log entry")
    fig.suptitle(str(title or meta.get("title") or default_title), fontsize=10)
    return fig


def _mark_self_play(ax: Axes, x: np.ndarray, flags: np.ndarray) -> Artist:
    """Shade the self-play runs (or tick them along the x axis when there are many runs);
    returns a legend handle."""
    runs = _runs(flags)
    step = float(np.nanmedian(np.diff(x))) if len(x) > 1 else 1.0
    if len(runs) <= MAX_SHADED_RUNS:
        for start, end in runs:
            ax.axvspan(
                x[start] - step / 2,
                x[end] + step / 2,
                color="0.85",
                lw=0,
                zorder=0,
                gid="self_play",
            )
        return Patch(color="0.85", label="self-play episodes")
    ax.vlines(
        x[flags], 0, 0.04, transform=ax.get_xaxis_transform(), color="0.4", lw=0.6, gid="self_play"
    )
    return Line2D([], [], color="0.4", marker="|", ls="", label="self-play episodes")


def plot_training_log(path: Path, output: Path) -> Path:
    """Draw :func:`training_figure` of the log file ``path`` and save it to ``output``.

    Raises
    ------
    UserError
        Unknown output suffix, unreadable or empty log, unwritable output.
    """
    output_format(output)  # fail before the work
    return save_figure(training_figure(Path(path)), output)
