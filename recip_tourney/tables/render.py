"""Render a :class:`~recip_tourney.tables.results.ResultSet` as markdown, CSV, LaTeX, JSON or
rich terminal tables.

Markdown, LaTeX and rich tables use the paper's matrix layout (rows = focal agent, columns =
opponent, cell = "row reward / column reward"); CSV and JSON carry the tidy frames at full
precision, for machines and golden files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from recip_tourney import registry
from recip_tourney.errors import UserError
from recip_tourney.tables.results import ResultSet

STATS = ("mean", "sem", "std", "ci95")
FORMATS = ("markdown", "csv", "latex", "json")

_SPREAD_WORDS = {
    "mean": "mean over seeds",
    "sem": "mean ± SEM over seeds",
    "std": "mean ± standard deviation over seeds",
    "ci95": "mean [95% Student-t interval] over seeds",
}
MARKDOWN_CORNER = "agent \\ opponent"


def _check(fmt: str | None, stat: str) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; choose one of {', '.join(STATS)}")


def format_value(row: pd.Series, value: str, stat: str, pm: str = "±") -> str:
    """One number of a tidy row with its spread, e.g. ``-1.029 ± 0.004``.

    ``value`` is the column prefix (``reward``, ``p_cooperate`` ...). The mean has 3
    decimals; sem/std follow ``pm`` with 3 decimals; ci95 appends ``[low, high]`` with 2.
    A NaN mean or spread shows as ``n/a``.
    """
    mean = row[f"{value}_mean"]
    if pd.isna(mean):
        return "n/a"
    text = f"{mean:.3f}".replace("-0.000", "0.000")  # no negative zero in tables
    if stat in ("sem", "std"):
        spread = row[f"{value}_{stat}"]
        text += f" {pm} " + ("n/a" if pd.isna(spread) else f"{spread:.3f}")
    elif stat == "ci95":
        low, high = row[f"{value}_ci95_low"], row[f"{value}_ci95_high"]
        text += " [n/a]" if pd.isna(low) or pd.isna(high) else f" [{low:.2f}, {high:.2f}]"
    return text


def payoff_matrix(rs: ResultSet, stat: str, pm: str = "±") -> pd.DataFrame:
    """The payoff table as a matrix of cell strings: rows = agent, columns = opponent.

    Each cell is "row agent's reward / column agent's reward"; missing pairings are empty.
    A pairing with failed seeds says how many ("(1 failed)"), and is "failed" when no seed
    finished.
    """
    _check(None, stat)
    matrix = pd.DataFrame("", index=pd.Index(rs.agents), columns=pd.Index(rs.agents))
    for _, row in rs.payoff().iterrows():
        failed = int(row.get("n_failed", 0))
        if failed and not row["n_seeds"]:
            cell = f"failed ({failed} of {failed} seeds)"
        else:
            cell = (f"{format_value(row, 'reward', stat, pm)} / "
                    f"{format_value(row, 'opponent_reward', stat, pm)}")
            cell += f" ({failed} failed)" if failed else ""
        matrix.loc[row["agent"], row["opponent"]] = cell
    return matrix


def failure_lines(rs: ResultSet) -> list[str]:
    """One line per failed match: pairing, seed index and error."""
    return [f"{r.agent} vs {r.opponent}, seed {r.seed_index}: {r.error}"
            for r in rs.failures.itertuples()]


def cooperation_matrix(rs: ResultSet, stat: str, pm: str = "±") -> pd.DataFrame:
    """The agent's P(cooperate) as a matrix: rows = "agent vs opponent", columns = states."""
    _check(None, stat)
    frame = rs.cooperation()
    frame["pairing"] = frame["agent"] + " vs " + frame["opponent"]
    frame["cell"] = [format_value(row, "p_cooperate", stat, pm) for _, row in frame.iterrows()]
    matrix = frame.pivot(index="pairing", columns="state", values="cell")
    # pivot sorts its axes; restore the frame's display order.
    matrix = matrix.reindex(index=frame["pairing"].unique(), columns=frame["state"].unique())
    matrix.index.name = matrix.columns.name = None
    return matrix.fillna("")


def payoff_caption(rs: ResultSet, stat: str) -> str:
    """One line saying what the payoff cells are."""
    return (
        f"{rs.game}: {registry.describe_reward(rs.game)[0]}, {_SPREAD_WORDS[stat]}; "
        "cell = row agent / column agent (row agent moves first)"
    )


def cooperation_caption(rs: ResultSet, stat: str) -> str:
    """One line saying what the cooperation cells are (the game says what they measure)."""
    return f"{rs.game}: {registry.describe_cooperation(rs.game)[1]}, {_SPREAD_WORDS[stat]}"


def _markdown(matrix: pd.DataFrame, corner: str) -> str:
    # disable_numparse keeps "0.410" from being reformatted as the number 0.41.
    return matrix.rename_axis(corner).to_markdown(disable_numparse=True)


def _latex(matrix: pd.DataFrame, caption: str) -> str:
    styler = matrix.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    tabular = styler.to_latex(hrules=True, column_format="l" + "c" * matrix.shape[1])
    # The caption is a LaTeX comment so the output stays a bare tabular.
    return f"% {caption}\n{tabular}"


def _render(
    rs: ResultSet,
    fmt: str,
    stat: str,
    matrix: Callable[[ResultSet, str, str], pd.DataFrame],
    caption: Callable[[ResultSet, str], str],
    corner: str,
    tidy: Callable[[], pd.DataFrame],
) -> str:
    _check(fmt, stat)
    if fmt == "markdown":
        return f"{caption(rs, stat)}\n\n{_markdown(matrix(rs, stat, '±'), corner)}\n"
    if fmt == "latex":
        return _latex(matrix(rs, stat, r"$\pm$"), caption(rs, stat))
    if fmt == "csv":
        return tidy().to_csv(index=False)
    return render_json(rs)


def render_payoff(rs: ResultSet, fmt: str, stat: str = "sem") -> str:
    """Render the payoff table.

    Parameters
    ----------
    rs : ResultSet
    fmt : {"markdown", "csv", "latex", "json"}
        ``markdown`` and ``latex`` give the matrix layout with a one-line caption (a ``%``
        comment in LaTeX); ``csv`` gives the tidy :meth:`ResultSet.payoff` frame with every
        statistic at full precision (``stat`` is ignored; this is the golden-file format);
        ``json`` gives the whole :func:`render_json` document. Failed matches are listed
        under the markdown table (as ``%`` comments in LaTeX) and counted in ``n_failed``.
    stat : {"mean", "sem", "std", "ci95"}
        Spread shown next to each mean.

    Returns
    -------
    str
    """
    text = _render(rs, fmt, stat, payoff_matrix, payoff_caption, MARKDOWN_CORNER, rs.payoff)
    failed = failure_lines(rs)
    if failed and fmt == "markdown":
        text += "\nFailed matches (in no mean):\n" + "".join(f"- {line}\n" for line in failed)
    elif failed and fmt == "latex":
        text += "".join(f"% failed: {line}\n" for line in failed)
    return text


def render_cooperation(rs: ResultSet, fmt: str, stat: str = "sem") -> str:
    """Render the cooperation table; same formats and meaning of ``stat`` as
    :func:`render_payoff` (rows = "agent vs opponent", columns = states)."""
    return _render(
        rs,
        fmt,
        stat,
        cooperation_matrix,
        cooperation_caption,
        "agent vs opponent",
        rs.cooperation,
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.to_dict(orient="records")
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        for record in records
    ]


def render_json(rs: ResultSet) -> str:
    """All tidy frames as one JSON document.

    Keys ``game``, ``settings_hash``, ``payoff``, ``cooperation``, ``per_seed`` and
    ``failed`` (lists of row objects). Floats keep full precision (shortest round-trip
    repr); NaN is ``null``.
    """
    document = {
        "game": rs.game,
        "settings_hash": rs.settings_hash,
        "payoff": _records(rs.payoff()),
        "cooperation": _records(rs.cooperation()),
        "per_seed": _records(rs.per_seed),
        "failed": _records(rs.failures),
    }
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def _rich(matrix: pd.DataFrame, title: str, corner: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(corner, style="bold")
    for column in matrix.columns:
        table.add_column(Text(str(column)), justify="center")
    # Text objects, not strings, so names or cells containing "[...]" are not read as markup.
    for name, row in matrix.iterrows():
        table.add_row(Text(str(name)), *(Text(cell) for cell in row))
    return table


def rich_payoff_table(rs: ResultSet, stat: str = "sem") -> Table:
    """The payoff matrix as a :class:`rich.table.Table` for the terminal (failed matches
    listed under it)."""
    _check(None, stat)
    table = _rich(payoff_matrix(rs, stat), payoff_caption(rs, stat), MARKDOWN_CORNER)
    failed = failure_lines(rs)
    if failed:
        table.caption = Text("\n".join(["failed matches (in no mean):", *failed]), style="red")
        table.caption_justify = "left"
    return table


def rich_cooperation_table(rs: ResultSet, stat: str = "sem") -> Table:
    """The cooperation matrix as a :class:`rich.table.Table` for the terminal."""
    _check(None, stat)
    return _rich(cooperation_matrix(rs, stat), cooperation_caption(rs, stat), "agent vs opponent")
