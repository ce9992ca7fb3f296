"""``recip-tourney pretrain`` and ``list``: pretrained artifacts and the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recip_tourney import registry
from recip_tourney.agents.base import PairingContext, agent_class
from recip_tourney.cli.app import (
    DEVICE_HELP,
    PROFILE_HELP,
    app,
    choice,
    device_override,
    err,
    out,
    user_errors,
)
from recip_tourney.config import load_config
from recip_tourney.pretrain.artifacts import ensure
from recip_tourney.pretrain.cache import ArtifactCache
from recip_tourney.tournament.schedule import Player


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
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
) -> None:
    """Train an agent's pretrained artifacts into the cache, logging every meta-episode."""
    cfg = load_config(game, profile, config, list(overrides or []) + device_override(device))
    needs = [a.name for a in registry.agents(cfg.game) if a.needs_pretraining]
    choice(agent, tuple(needs), f"agent to pretrain for {cfg.game}")
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
               retrain=retrain, device=cfg.device)  # fmt: skip
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

