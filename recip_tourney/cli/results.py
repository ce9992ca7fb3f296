"""``recip-tourney table``, ``check`` and ``plot``: what a results directory holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from recip_tourney.cli.app import (
    TABLES,
    app,
    choice,
    err,
    out,
    positive,
    user_errors,
)
from recip_tourney.errors import UserError
from recip_tourney.tables import regression, render
from recip_tourney.tables.results import ResultSet
from recip_tourney.tournament.store import atomic_write_text


@app.command()
@user_errors
def table(
    directory: Annotated[
        Path | None, typer.Argument(help="Results directory [default: results/<game>].")
    ] = None,
    game: Annotated[str, typer.Option(help="Game whose default directory to read.")] = (
        "ipd-analytic"
    ),
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="markdown, csv, latex or json [default: terminal table]."),
    ] = None,
    stat: Annotated[str, typer.Option(help="Spread shown: mean, sem, std or ci95.")] = "sem",
    which: Annotated[str, typer.Option("--table", help="payoff, cooperation or both.")] = "both",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to FILE.")] = None,
) -> None:
    """Payoff and cooperation tables of a results directory, in the paper's layout.

    CSV holds one tidy table: with --table both and -o FILE, the cooperation table goes to
    FILE's sibling ``<stem>.cooperation.csv``; to stdout, CSV shows the payoff table.
    """
    choice(stat, render.STATS, "statistic")
    choice(which, TABLES, "table")
    if fmt is not None:
        choice(fmt, render.FORMATS, "format")
    rs = ResultSet.from_dir(directory or Path("results") / game)
    if fmt is None:
        if output is not None:
            raise UserError("-o needs --format (markdown, csv, latex or json)")
        if which in ("payoff", "both"):
            out.print(render.rich_payoff_table(rs, stat))
        if which in ("cooperation", "both"):
            out.print(render.rich_cooperation_table(rs, stat))
        return
    if fmt == "json":
        _emit(render.render_json(rs), output)
        return
    if fmt == "csv" and which == "both":
        _emit(render.render_payoff(rs, "csv", stat), output)
        if output is not None:
            _emit(
                render.render_cooperation(rs, "csv", stat),
                output.with_name(f"{output.stem}.cooperation{output.suffix or '.csv'}"),
            )
        return
    parts = []
    if which in ("payoff", "both"):
        parts.append(render.render_payoff(rs, fmt, stat))
    if which in ("cooperation", "both"):
        parts.append(render.render_cooperation(rs, fmt, stat))
    _emit("\n\n".join(p.rstrip("\n") for p in parts) + "\n", output)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        atomic_write_text(output, text)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    err.print(f"wrote {output}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def check(
    directory: Annotated[Path, typer.Argument(help="Results directory to check.")],
    against: Annotated[Path, typer.Option(help="Golden payoff CSV (from `table --format csv`).")],
    atol: Annotated[float, typer.Option(help="Absolute tolerance per cell.")] = 1e-6,
) -> None:
    """Compare a payoff table with a golden file: exit 1 and a per-cell diff if any cell moved."""
    if not atol >= 0:
        raise UserError(f"--atol must be a non-negative number, got {atol}")
    golden = regression.load_golden(against)
    result = regression.compare(ResultSet.from_dir(directory).payoff(), golden, atol)
    typer.echo(result.text())
    if not result.ok:
        raise typer.Exit(1)



@app.command()
@user_errors
def plot(
    source: Annotated[
        Path, typer.Argument(help="Results directory, or a pretraining log (log.jsonl).")
    ],
    kind: Annotated[
        str,
        typer.Option(
            help="heatmap, curves, figure2, figure3 or figure4 (results directories). curves: "
            "reward and P(C) per pairing, except without --pairs on ipd-rollout results "
            "holding reciprocator vs nl: the paper's Figure 2 (reciprocal reward and both "
            "players' P(C) per episode, mean ± SEM over seeds; dashed: nl's P(C) in nl vs nl), "
            "and on coins results: Figures 3 and 4 in one. figure2: Figure 2 of reciprocator "
            "vs nl, or of the one pairing given in --pairs. figure3 (coins): an nl against "
            "reciprocator, mfos and nl, its own-coin share and coin counts. figure4 (coins): "
            "self-play, total reward and own-coin share."
        ),
    ] = "heatmap",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="FILE.png, .pdf or .svg.")
    ] = None,
    stat: Annotated[str, typer.Option(help="Heatmap spread: mean, sem, std or ci95.")] = "sem",
    pairs: Annotated[
        str | None,
        typer.Option(help="Curves of these pairings only (agent:opponent,...); figure2: one."),
    ] = None,
    smooth: Annotated[
        int, typer.Option(help="Coins figures: moving average over N episodes per seed.")
    ] = 1,
) -> None:
    """Figures: payoff heatmap, learning curves or Figures 2-4 of a run, or a training curve."""
    from recip_tourney import plots  # matplotlib only for this command

    if source.is_dir() and (source / "log.jsonl").is_file():
        source = source / "log.jsonl"
    if source.is_file():
        target = output or source.with_suffix(".png")
        written = plots.plot_training_log(source, target)
    else:
        choice(kind, plots.PLOT_KINDS, "figure kind")
        choice(stat, render.STATS, "statistic")
        positive(smooth, "--smooth")
        if smooth != 1 and kind not in plots.CURVE_KINDS:
            raise UserError(f"--smooth applies to the curves, not to --kind {kind}")
        chosen = None
        if pairs:
            chosen = []
            for item in pairs.split(","):
                agent, sep, opponent = item.strip().partition(":")
                if not sep or not agent or not opponent:
                    raise UserError(f"--pairs expects agent:opponent[,...], got {item!r}")
                chosen.append((agent, opponent))
        target = output or source / f"{kind}.png"
        if kind in plots.CURVE_KINDS:
            written = plots.plot_curves(source, target, kind, pairs=chosen, smooth=smooth)
        else:
            written = plots.plot_results(source, kind, target, stat=stat, pairs=chosen)
    err.print(f"wrote {written}", highlight=False, soft_wrap=True)

