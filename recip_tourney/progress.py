"""The one progress-bar layout of the command line (tournaments and trainings)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console, *, show: bool, unit: str = "", last: bool = False) -> Progress:
    """Description, bar, done/total ``unit``, elapsed, ETA and optionally a ``last`` field.

    With ``last``, tasks carry a ``last`` field (e.g. the latest log line) shown at the end.
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    if last:
        columns.append(TextColumn("{task.fields[last]}"))
    return Progress(*columns, console=console, disable=not show)
