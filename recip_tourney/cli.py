"""The ``recip-tourney`` command line: run, table, check, pretrain, plot, list.

Every user mistake is a :class:`~recip_tourney.errors.UserError`: one line on stderr, exit
code 2, no traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recip_tourney import registry
from recip_tourney.agents.base import PairingContext, agent_class
from recip_tourney.config import load_config
from recip_tourney.errors import UserError
from recip_tourney.pretrain.artifacts import ensure
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.tables import regression, render
from recip_tourney.tables.results import ResultSet
from recip_tourney.tournament.backends import BACKENDS, dask_modules
from recip_tourney.tournament.plan import plan_summary, plan_table, plan_tournament
from recip_tourney.tournament.runner import run_tournament
from recip_tourney.tournament.schedule import Player
from recip_tourney.tournament.store import atomic_write_text

PROFILE_HELP = "Shipped config: paper, ci, or one the game adds (coins: figures)."

app = typer.Typer(
    help="Round-robin tournaments of learning agents in sequential social dilemmas.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" is text, not markup
)
err = Console(stderr=True)
# Piped output (files, CI logs) gets room for a full payoff matrix instead of 80 columns.
_PIPED_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
out = Console(soft_wrap=True, width=_PIPED_WIDTH)
F = TypeVar("F", bound=Callable[..., Any])
TABLES = ("payoff", "cooperation", "both")


def user_errors(command: F) -> F:
    """Turn a UserError into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            # escaped: a message may hold brackets ("recip-tourney[dask]", "[default: ...]")
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _choice(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise UserError(f"unknown {what} {value!r}; valid choices: {', '.join(valid)}")
    return value


def _positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{option} must be a positive integer, got {value}")


@app.command()
@user_errors
def run(
    game: Annotated[str | None, typer.Option(help="Game to play (see `list`).")] = None,
    agents: Annotated[
        str | None, typer.Option(help="Comma-separated roster; default: the game's full roster.")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Repetitions per pairing [default: config].")
    ] = None,
    episodes: Annotated[
        int | None,
        typer.Option(help="Learning episodes (IPD-Analytic: updates) per match [default: config]."),
    ] = None,
    jobs: Annotated[int | None, typer.Option(help="Parallel workers [default: all cores].")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Results directory [default: results/<game>].")
    ] = None,
    profile: Annotated[str, typer.Option(help=PROFILE_HELP)] = "paper",
    config: Annotated[Path | None, typer.Option(help="YAML config file to merge.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: key.sub=value.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Move an incompatible results directory aside and start over.")
    ] = False,
    stat: Annotated[str, typer.Option(help="Spread shown: mean, sem, std or ci95.")] = "sem",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    pretrain: Annotated[
        bool,
        typer.Option(
            "--pretrain/--no-pretrain",
            help="Train missing pretrained artifacts (M-MAML, M-FOS) or fail on them.",
        ),
    ] = True,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Pretraining cache [default: ~/.cache/recip-tourney].")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Where matches run: loky (this machine) or dask (a cluster).")
    ] = "loky",
    scheduler: Annotated[
        str | None,
        typer.Option(help="dask: scheduler address tcp://HOST:PORT [default: a local cluster]."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Play stored failed matches again (kept by default).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Print the schedule and its estimated cost; play nothing.")
    ] = False,
    calibrate: Annotated[
        int, typer.Option(help="--dry-run: episodes timed per pairing (0: no estimate).")
    ] = 3,
) -> None:
    """Play every ordered pairing (self-play included) x seeds and print the payoff table.

    Exit code 1 when a match failed (it is stored and shown as failed; the others go on),
    2 on bad input.
    """
    _positive(seeds, "--seeds")
    _positive(episodes, "--episodes")
    _positive(jobs, "--jobs")
    _choice(stat, render.STATS, "statistic")
    _choice(backend, BACKENDS, "backend")
    if scheduler and backend != "dask":
        raise UserError("--scheduler is the address of a dask scheduler: add --backend dask")
    if calibrate < 0:
        raise UserError(f"--calibrate must be 0 or more episodes, got {calibrate}")
    if backend == "dask":
        dask_modules()  # fail early, before any work, when the extra is missing
    sets = list(overrides or [])
    if agents is not None:
        names = [a.strip() for a in agents.split(",") if a.strip()]
        if not names:
            raise UserError("--agents needs at least one agent name")
        sets.append(f"roster=[{', '.join(names)}]")
    if seeds is not None:
        sets.append(f"seeds={seeds}")
    cfg = load_config(game, profile, config, sets)
    if episodes is not None:  # the setting's name depends on the game the config resolved
        sets.append(f"settings.{registry.game(cfg.game).length}={episodes}")
        cfg = load_config(game, profile, config, sets)
    target = out_dir or Path("results") / cfg.game
    workers = jobs or os.cpu_count() or 1
    if dry_run:
        plan = plan_tournament(cfg, target, cache=ArtifactCache(cache_dir),
                               calibration_episodes=calibrate, jobs=workers)
        if plan.pairings:
            out.print(plan_table(plan))
        where = (f"{workers} workers" if backend == "loky" or not scheduler
                 else f"{workers} workers of the cluster (--jobs)")
        for line in plan_summary(plan, workers, where):
            out.print(line, highlight=False)
        return
    try:
        report = run_tournament(
            cfg,
            target,
            jobs=workers,
            backend=backend,
            scheduler=scheduler,
            force=force,
            retry_failed=retry_failed,
            console=err,
            progress=not quiet,
            cache=ArtifactCache(cache_dir),
            pretrain=pretrain,
        )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted: finished matches are saved in {target}; run the same "
            "command again to resume[/yellow]",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    err.print(
        f"{report.played} matches played, {report.skipped} reused, in {report.elapsed_s:.1f} s; "
        f"results in {target}",
        highlight=False,
        soft_wrap=True,
    )
    rs = ResultSet.from_dir(target)
    out.print(render.rich_payoff_table(rs, stat))
    if report.failed:
        err.print(
            f"[bold red]{len(report.failed)} of {report.total} matches failed[/bold red], listed "
            "under the table: stored as failed and left out of every mean; `--retry-failed` "
            "plays them again",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(1)


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
    _choice(stat, render.STATS, "statistic")
    _choice(which, TABLES, "table")
    if fmt is not None:
        _choice(fmt, render.FORMATS, "format")
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
def pretrain(
    agent: Annotated[str, typer.Argument(help="Agent to pretrain: mmaml or mfos.")],
    against: Annotated[
        str | None,
        typer.Option(help="M-FOS: the opponent to train against [default: every roster agent]."),
    ] = None,
    game: Annotated[str, typer.Option(help="Game (see `list`).")] = "ipd-analytic",
    profile: Annotated[str, typer.Option(help=PROFILE_HELP)] = "paper",
    config: Annotated[Path | None, typer.Option(help="YAML config file to merge.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: key.sub=value.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Pretraining cache [default: ~/.cache/recip-tourney].")
    ] = None,
    retrain: Annotated[bool, typer.Option(help="Train again even when cached.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar and no per-step log.")] = False,
) -> None:
    """Train an agent's pretrained artifacts into the cache, logging every meta-episode."""
    cfg = load_config(game, profile, config, list(overrides or []))
    needs = [a.name for a in registry.agents(cfg.game) if a.needs_pretraining]
    _choice(agent, tuple(needs), f"agent to pretrain for {cfg.game}")
    params = cfg.agent_params
    if against is None:
        opponents = [p.name for p in cfg.roster]
    else:
        registry.agent(cfg.game, against)
        opponents = [against]
    me = Player(agent, params[agent])
    settings = cfg.settings.model_dump()
    # an artifact that does not depend on the opponent (M-MAML's) comes up once per name
    unique = {
        spec.digest: spec
        for name in opponents
        for spec in agent_class(cfg.game, agent).trainable_artifacts(
            PairingContext(me, Player(name, params[name]), settings, params)
        )
    }
    specs = list(unique.values())
    if not specs:
        err.print(f"{agent} needs no training with this config", highlight=False)
        return
    cache = ArtifactCache(cache_dir)
    try:
        ensure(specs, cache, console=err, progress=not quiet, log_lines=not quiet,
               retrain=retrain)  # fmt: skip
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted: trainings checkpoint every 16 meta-episodes; run the same "
            "command again to resume[/yellow]",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    for spec in specs:
        out.print(f"{spec.label}: {cache.root / spec.kind / spec.digest}", highlight=False,
                  soft_wrap=True)


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
        _choice(kind, plots.PLOT_KINDS, "figure kind")
        _choice(stat, render.STATS, "statistic")
        _positive(smooth, "--smooth")
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


@app.command("list")
@user_errors
def list_(
    game: Annotated[str | None, typer.Option(help="Only this game's agents.")] = None,
) -> None:
    """Games and agents in the registry, with their metadata."""
    games = [registry.game(game)] if game else list(registry.games().values())
    # Names never wrap; long words elsewhere fold onto the next line: nothing is cut off.
    gt = Table(title="Games", title_justify="left")
    for col in ("game", "family", "agents", "description"):
        gt.add_column(col, no_wrap=col == "game", overflow="fold")
    for g in games:
        names = ", ".join(a.name for a in registry.agents(g.name))
        gt.add_row(g.name, g.family, names, g.summary)
    out.print(gt)
    at = Table(title="Agents", title_justify="left")
    for col in ("agent", "game", "learns", "parameters (defaults)", "description", "reference"):
        at.add_column(col, no_wrap=col in ("agent", "game"), overflow="fold")
    for g in games:
        for a in registry.agents(g.name):
            defaults = ", ".join(f"{k}={v}" for k, v in a.params().model_dump().items()) or "-"
            at.add_row(
                a.name, a.game, "yes" if a.learns else "no", defaults, a.summary, a.reference
            )
    out.print(at)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
