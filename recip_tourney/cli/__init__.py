"""The ``recip-tourney`` command line: run, table, check, plot, pretrain, list.

Every user mistake is a :class:`~recip_tourney.errors.UserError`: one line on stderr, exit
code 2, no traceback. One module per group of commands; importing them registers them on
the one Typer ``app``, in the order ``--help`` lists them.
"""
# isort: skip_file

from recip_tourney.cli.app import app, main
from recip_tourney.cli import run  # noqa: F401  (registers run)
from recip_tourney.cli import results  # noqa: F401  (table, check, plot)
from recip_tourney.cli import registry_commands  # noqa: F401  (pretrain, list)

__all__ = ["app", "main"]
