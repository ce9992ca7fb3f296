"""The shared pieces of the command line: the Typer app, the consoles, user-error handling.

Every user mistake is a :class:`~recip_tourney.errors.UserError`: one line on stderr, exit
code 2, no traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from recip_tourney.device import DEVICE_CHOICES
from recip_tourney.errors import UserError

PROFILE_HELP = "Shipped config: paper, ci, or one the game adds (coins: figures)."
DEVICE_HELP = ("Where matches (and pretraining) run: cpu, cuda, or auto (cuda when torch sees "
               "one); sets settings.device [default: the config's, cpu].")

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


def choice(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise UserError(f"unknown {what} {value!r}; valid choices: {', '.join(valid)}")
    return value


def device_override(device: str | None) -> list[str]:
    """The ``--set`` that ``--device`` stands for (none when it is not given)."""
    if device is None:
        return []
    choice(device, DEVICE_CHOICES, "device")
    return [f"settings.device={device}"]


def positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{option} must be a positive integer, got {value}")



def main() -> None:
    """Console-script entry point."""
    app()
