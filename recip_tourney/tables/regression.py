"""Compare a payoff table with a golden CSV file.

The golden file is the payoff CSV as written by ``render_payoff(rs, "csv")``. Each ordered
pairing (cell) is compared on ``reward_mean`` and ``opponent_reward_mean`` with an absolute
tolerance, and on ``n_seeds`` exactly when both sides have it. A cell present on one side
only is a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recip_tourney.errors import UserError

KEYS = ["agent", "opponent"]
COMPARED = ["reward_mean", "opponent_reward_mean"]
REQUIRED = [*KEYS, *COMPARED]
FAILURE_COLUMNS = ["agent", "opponent", "column", "expected", "actual", "diff"]


def _check_columns(frame: pd.DataFrame, what: str) -> None:
    missing = [col for col in REQUIRED if col not in frame.columns]
    if missing:
        raise UserError(
            f"{what} lacks column(s) {', '.join(missing)}; expected a payoff CSV as written by "
            "`recip-tourney table --format csv`"
        )
    if frame.duplicated(KEYS).any():
        row = frame[frame.duplicated(KEYS)].iloc[0]
        raise UserError(f"{what} has two rows for {row['agent']} vs {row['opponent']}")


def load_golden(path: Path | str) -> pd.DataFrame:
    """Read a golden payoff CSV.

    Agent names are read as text (a name like ``NA`` stays a name); only empty fields are
    missing values.

    Raises
    ------
    UserError
        The file is missing or unreadable, is not CSV, lacks the columns ``agent, opponent,
        reward_mean, opponent_reward_mean``, has non-numeric rewards or repeats a pairing.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"golden file {path} does not exist")
    try:
        frame = pd.read_csv(
            path, dtype={"agent": str, "opponent": str}, keep_default_na=False, na_values=[""]
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read golden file {path}: {message}") from None
    _check_columns(frame, f"golden file {path}")
    for col in [*COMPARED, *(["n_seeds"] if "n_seeds" in frame else [])]:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise UserError(f"golden file {path}: column {col} is not numeric")
    return frame


@dataclass
class RegressionReport:
    """Outcome of :func:`compare`.

    Attributes
    ----------
    failures : DataFrame
        One row per failed check: ``agent, opponent, column, expected, actual, diff``
        (``diff = actual - expected``). A cell missing on one side has ``column`` set to
        ``"missing in actual"`` or ``"missing in golden"``, the reward means as
        expected/actual (NaN on the missing side) and NaN diff.
    n_cells_checked : int
        Cells (ordered pairings) on either side.
    atol : float
        The absolute tolerance used.
    """

    failures: pd.DataFrame
    n_cells_checked: int
    atol: float

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return self.failures.empty

    @property
    def n_cells_failed(self) -> int:
        """Cells with at least one failed check."""
        return len(self.failures.drop_duplicates(KEYS))

    def text(self) -> str:
        """A one-line OK summary, or a header line and a markdown table of the failures."""
        if self.ok:
            return f"all {self.n_cells_checked} cells within atol={self.atol:g}"
        table = self.failures.to_markdown(index=False, floatfmt=".6g")
        return (
            f"{self.n_cells_failed} of {self.n_cells_checked} cells moved beyond "
            f"atol={self.atol:g}:\n\n{table}"
        )


def compare(actual: pd.DataFrame, golden: pd.DataFrame, atol: float) -> RegressionReport:
    """Compare a payoff frame with a golden one, cell by cell.

    Parameters
    ----------
    actual : DataFrame
        Payoff frame, e.g. :meth:`ResultSet.payoff`.
    golden : DataFrame
        Golden payoff frame, e.g. from :func:`load_golden`.
    atol : float
        Absolute tolerance on ``reward_mean`` and ``opponent_reward_mean``. NaN equals NaN.

    Returns
    -------
    RegressionReport
    """
    _check_columns(actual, "actual payoff table")
    _check_columns(golden, "golden payoff table")
    seeds = ["n_seeds"] if "n_seeds" in actual and "n_seeds" in golden else []
    cols = [*KEYS, *COMPARED, *seeds]
    merged = golden[cols].merge(
        actual[cols],
        on=KEYS,
        how="outer",
        suffixes=("_expected", "_actual"),
        indicator=True,
    )
    # An outer merge sorts the keys; put the cells back in golden order, new cells after.
    cells = pd.MultiIndex.from_frame(golden[KEYS]).append(pd.MultiIndex.from_frame(actual[KEYS]))
    merged = merged.set_index(KEYS).loc[cells.unique()].reset_index()
    failures = []
    for side, label in (("right_only", "missing in golden"), ("left_only", "missing in actual")):
        lost = merged[merged["_merge"] == side]
        failures.append(
            pd.DataFrame(
                {
                    "agent": lost["agent"],
                    "opponent": lost["opponent"],
                    "column": label,
                    "expected": lost["reward_mean_expected"],
                    "actual": lost["reward_mean_actual"],
                    "diff": np.nan,
                }
            )
        )
    both = merged[merged["_merge"] == "both"]
    for col in [*COMPARED, *seeds]:
        expected, got = both[f"{col}_expected"], both[f"{col}_actual"]
        diff = got - expected
        tol = 0 if col == "n_seeds" else atol
        same_nan = expected.isna() & got.isna()
        moved = ~same_nan & ~(diff.abs() <= tol)
        failures.append(
            pd.DataFrame(
                {
                    "agent": both["agent"],
                    "opponent": both["opponent"],
                    "column": col,
                    "expected": expected,
                    "actual": got,
                    "diff": diff,
                }
            )[moved]
        )
    failures = [f for f in failures if not f.empty]
    if failures:
        # Stable sort on the merged index: one cell's checks stay together, in cell order.
        frame = pd.concat(failures).sort_index(kind="stable").reset_index(drop=True)
    else:
        frame = pd.DataFrame(columns=FAILURE_COLUMNS)
    return RegressionReport(failures=frame, n_cells_checked=len(merged), atol=atol)
