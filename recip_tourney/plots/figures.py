"""Figures of a tournament's results: the payoff heatmap and learning curves per pairing.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot global state, no
GUI backend) and :func:`save_figure` writes it atomically as PNG, PDF or SVG with the
timestamps left out of the metadata, so two renders of the same data give the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from recip_tourney.errors import UserError
from recip_tourney.plots.curves import curves_figure
from recip_tourney.tables.render import STATS, format_value
from recip_tourney.tables.results import ResultSet

KINDS = ("heatmap", "curves")
#: Output formats by file suffix.
SUFFIXES = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
#: Timestamps and version strings left out, so renders are byte-for-byte reproducible.
_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}
_SPREAD_WORDS = {
    "mean": "mean over seeds",
    "sem": "mean ± SEM over seeds",
    "std": "mean ± standard deviation over seeds",
    "ci95": "mean [95% Student-t interval] over seeds",
}


# ------------------------------------------------------------------------------ heatmap
def _cell_text(row: pd.Series, stat: str) -> str:
    """``"mean\\n± spread"`` (or ``"mean\\n[low, high]"``) of the row agent's reward."""
    mean = format_value(row, "reward", "mean")
    if stat == "mean":
        return mean
    spread = format_value(row, "reward", stat)
    return f"{mean}\n{spread[len(mean) :].strip()}" if mean != "n/a" else mean


def heatmap_figure(rs: ResultSet, stat: str = "sem") -> Figure:
    """The payoff matrix as a heatmap of the row agent's reward (as the game defines it).

    Parameters
    ----------
    rs : ResultSet
    stat : {"mean", "sem", "std", "ci95"}
        Spread written under the mean in every cell (see ``recip_tourney.tables.render``).

    Returns
    -------
    Figure
        Rows = agent, columns = opponent, both in ``rs.agents`` order; colour = the row
        agent's mean reward, on the game's fixed ``reward_range`` (widened only if some mean
        lies outside it) so figures of different runs are comparable. Missing pairings are
        grey.

    Raises
    ------
    UserError
        Unknown ``stat``.
    """
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; choose one of {', '.join(STATS)}")
    agents = rs.agents
    n = len(agents)
    index = {name: i for i, name in enumerate(agents)}
    values = np.full((n, n), np.nan)
    texts: dict[tuple[int, int], str] = {}
    for _, row in rs.payoff().iterrows():
        i, j = index[row["agent"]], index[row["opponent"]]
        values[i, j] = row["reward_mean"]
        texts[i, j] = _cell_text(row, stat)

    finite = values[np.isfinite(values)]
    from recip_tourney.registry import describe_reward  # late: it loads the games (torch)

    reward, (low, high) = describe_reward(rs.game)
    vmin = min(low, float(finite.min()) if finite.size else 0.0)
    vmax = max(high, float(finite.max()) if finite.size else 0.0)
    norm = Normalize(vmin, vmax)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.88")

    cell = 1.25 if stat == "ci95" else 1.0
    fig = Figure(figsize=(max(5.0, cell * n + 3.0), max(4.0, 0.9 * n + 2.2)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    fontsize = max(5.0, 9.0 - max(0, n - 6) * 0.5)
    for i in range(n):
        for j in range(n):
            if (i, j) not in texts:
                ax.text(j, i, "no data", ha="center", va="center", fontsize=fontsize, color="0.4")
                continue
            r, g, b, _ = cmap(norm(values[i, j]))
            color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(
                j,
                i,
                texts[i, j],
                ha="center",
                va="center",
                fontsize=fontsize,
                color=color,
                gid=f"cell:{agents[i]}:{agents[j]}",
            )
    ax.set_xticks(range(n), agents, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), agents)
    ax.set_xlabel("column agent")
    ax.set_ylabel("row agent (moves first)")
    ax.tick_params(length=0)
    ax.set_title(f"{rs.game}: {reward} of the row agent\n{_SPREAD_WORDS[stat]}", fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{reward} (row agent)")
    return fig


# ------------------------------------------------------------------------------ files
def output_format(path: Path) -> str:
    """The image format for ``path``'s suffix; UserError listing the valid suffixes."""
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(
            f"cannot tell the image format of {path}: use one of the suffixes {', '.join(SUFFIXES)}"
        )
    return fmt


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file + ``os.replace``), then close it.

    Parameters
    ----------
    fig : Figure
    path : Path
        ``.png``, ``.pdf`` or ``.svg``; missing parent directories are created. An existing
        file is replaced whole or left as it was, never half-written.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UserError
        Unknown suffix, or ``cannot write PATH: reason``.
    """
    path = Path(path)
    fmt = output_format(path)
    tmp: str | None = None
    try:
        if path.parent.exists() and not path.parent.is_dir():
            raise NotADirectoryError(0, f"{path.parent} is not a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle, matplotlib.rc_context({"svg.hashsalt": "recip"}):
            fig.savefig(handle, format=fmt, dpi=150, metadata=_METADATA[fmt])
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _close(fig)
    return path


def _close(fig: Figure) -> None:
    """Release a pyplot-managed figure; figures built here hold no global state."""
    if getattr(fig.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)


def plot_results(
    directory: Path,
    kind: str,
    output: Path,
    stat: str = "sem",
    pairs: Sequence[tuple[str, str]] | None = None,
    keys: Sequence[str] = ("reward", "p_cooperate"),
) -> Path:
    """Load the results directory, draw the figure ``kind`` and save it to ``output``.

    Parameters
    ----------
    directory : Path
        A results directory (see :meth:`ResultSet.from_dir`).
    kind : {"heatmap", "curves"}
    output : Path
        ``.png``, ``.pdf`` or ``.svg`` file.
    stat : str
        Heatmap only: spread under each mean (``mean``, ``sem``, ``std``, ``ci95``).
    pairs, keys
        Curves only: see :func:`curves_figure`.

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    UserError
        Unknown kind, suffix or stat; missing/empty results; missing curve keys; unwritable
        output.
    """
    if kind not in KINDS:
        raise UserError(f"unknown plot kind {kind!r}; choose one of {', '.join(KINDS)}")
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; choose one of {', '.join(STATS)}")
    output_format(output)  # fail before the work
    rs = ResultSet.from_dir(directory)
    fig = heatmap_figure(rs, stat) if kind == "heatmap" else curves_figure(rs, pairs, keys)
    return save_figure(fig, output)
