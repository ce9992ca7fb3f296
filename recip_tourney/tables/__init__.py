"""Payoff and cooperation tables from a tournament's stored match records.

Load with :meth:`ResultSet.from_dir`, get tidy frames from :meth:`ResultSet.payoff` and
:meth:`ResultSet.cooperation`, render them with :mod:`recip_tourney.tables.render` and check
them against a golden CSV with :mod:`recip_tourney.tables.regression`.
"""

from recip_tourney.tables.cooperation import STATES, cooperation_frame
from recip_tourney.tables.regression import RegressionReport, compare, load_golden
from recip_tourney.tables.render import (
    FORMATS,
    STATS,
    render_cooperation,
    render_json,
    render_payoff,
    rich_cooperation_table,
    rich_payoff_table,
)
from recip_tourney.tables.results import ResultSet, aggregate

__all__ = [
    "FORMATS",
    "STATES",
    "STATS",
    "RegressionReport",
    "ResultSet",
    "aggregate",
    "compare",
    "cooperation_frame",
    "load_golden",
    "render_cooperation",
    "render_json",
    "render_payoff",
    "rich_cooperation_table",
    "rich_payoff_table",
]
