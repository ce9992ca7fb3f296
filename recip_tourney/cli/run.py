"""``recip-tourney run``: play a tournament (or, with ``--dry-run``, plan it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from recip_tourney import registry
from recip_tourney.cli.app import (
    DEVICE_HELP,
    PROFILE_HELP,
    app,
    choice,
    device_override,
    err,
    out,
    positive,
    user_errors,
)
from recip_tourney.config import load_config
from recip_tourney.errors import UserError
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.tables import render
from recip_tourney.tables.results import ResultSet
from recip_tourney.tournament.backends import BACKENDS, dask_modules
from recip_tourney.tournament.plan import plan_summary, plan_table, plan_tournament
from recip_tourney.tournament.runner import run_tournament


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
    checkpoint_every: Annotated[
        float,
        typer.Option(help="Minutes between mid-match checkpoints of long matches (Coins) in "
                     "OUT/checkpoints; a rerun resumes an interrupted match from the last one "
                     "(0: none)."),
    ] = 10.0,
    dry_run: Annotated[
        bool, typer.Option(help="Print the schedule and its estimated cost; play nothing.")
    ] = False,
    calibrate: Annotated[
        int, typer.Option(help="--dry-run: episodes timed per pairing (0: no estimate).")
    ] = 3,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
) -> None:
    """Play every ordered pairing (self-play included) x seeds and print the payoff table.

    Exit code 1 when a match failed (it is stored and shown as failed; the others go on),
    2 on bad input.
    """
    positive(seeds, "--seeds")
    positive(episodes, "--episodes")
    positive(jobs, "--jobs")
    choice(stat, render.STATS, "statistic")
    choice(backend, BACKENDS, "backend")
    if scheduler and backend != "dask":
        raise UserError("--scheduler is the address of a dask scheduler: add --backend dask")
    if not checkpoint_every >= 0:  # NaN too
        raise UserError(f"--checkpoint-every must be 0 or more minutes, got {checkpoint_every}")
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
    sets += device_override(device)
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
        count = f"{workers} worker{'s' if workers != 1 else ''}"
        where = count if backend == "loky" or not scheduler else f"{count} of the cluster (--jobs)"
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
            checkpoint_minutes=checkpoint_every,
            console=err,
            progress=not quiet,
            cache=ArtifactCache(cache_dir),
            pretrain=pretrain,
        )
    except KeyboardInterrupt:
        err.print(
            f"[yellow]interrupted: finished matches are saved in {target}; run the same "
            "command again to resume (long Coins matches from their last checkpoint)[/yellow]",
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

