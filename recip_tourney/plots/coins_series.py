"""Per-seed curves of Coin Game results as arrays: own-coin share, moving average, the series
each figure line plots (drawn by :mod:`recip_tourney.plots.coins_figures`).

Per seed and episode: ``reward`` is the episode return (sum over the steps, mean over the
games), ``own_coins`` / ``other_coins`` / ``coins`` the coins collected per game. A share is
``own / total`` with NaN (no value) where no coin was collected. With ``smooth = N > 1`` each
seed's series is first replaced by its trailing moving average over ``N`` episodes (the mean
of the finite values of episodes ``i - N + 1 .. i``, fewer at the start); means, SEMs
(``std(ddof=1) / sqrt(n)``) and seed counts are then taken over the finite values of each
episode. The reference code's band is ``std / n`` (a bug); this is the usual SEM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from recip_tourney.errors import UserError
from recip_tourney.plots.curves import mean_sem
from recip_tourney.tables.results import ResultSet

Pair = tuple[str, str]
#: Per-seed series of one plotted quantity, from a match record's ``curves``.
SeriesFn = Callable[[Mapping[str, Any]], np.ndarray]


def curve(curves: Mapping[str, Any], key: str) -> np.ndarray:
    """Curve ``key`` of one record as floats (``None`` -> NaN); KeyError when not recorded."""
    values = curves.get(key)
    if not values:
        raise KeyError(key)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def aligned(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays cut to the shortest one (a match stopped early logs shorter curves)."""
    n = min(len(a) for a in arrays)
    return [a[:n] for a in arrays]


def share(own: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``own / total`` per episode; NaN where ``total`` is 0 (no coin collected) or NaN."""
    own, total = aligned(np.asarray(own, dtype=float), np.asarray(total, dtype=float))
    out = np.full(total.shape, np.nan)
    np.divide(own, total, out=out, where=total > 0)
    return out


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` episodes, NaN-aware.

    Returns
    -------
    ndarray
        At episode ``i`` the mean of the finite values of episodes ``max(0, i - window + 1)``
        to ``i``; NaN where all of them are NaN. ``window = 1`` returns ``values`` unchanged.
    """
    if window == 1:
        return values
    return pd.Series(values, dtype=float).rolling(window, min_periods=1).mean().to_numpy()


def check_smooth(smooth: int) -> int:
    """``smooth`` as a positive int; UserError otherwise."""
    if isinstance(smooth, bool) or not isinstance(smooth, int | np.integer) or smooth < 1:
        raise UserError(f"smoothing window must be a positive integer, got {smooth!r}")
    return int(smooth)


def pair_series(
    rs: ResultSet, pair: Pair, values: SeriesFn, smooth: int = 1
) -> tuple[pd.DataFrame, int] | None:
    """Per episode, mean and SEM over the seeds of ``pair`` of a per-seed quantity.

    Parameters
    ----------
    rs : ResultSet
    pair : (agent, opponent)
    values : callable
        The quantity's series of one seed from its record's ``curves`` (KeyError: the seed
        lacks a curve it needs and is left out).
    smooth : int
        Moving-average window applied to each seed's series first (:func:`moving_average`).

    Returns
    -------
    (DataFrame, int) or None
        :func:`~recip_tourney.plots.curves.mean_sem` of the seeds' series, and the number of
        seeds; None when no seed of the pairing has the curves.
    """
    rows: list[tuple[int, float]] = []
    seeds = 0
    for record in rs.records:
        if (record["agent"], record["opponent"]) != pair:
            continue
        try:
            series = values(record["curves"])
        except KeyError:
            continue
        seeds += 1
        rows.extend(enumerate(moving_average(series, smooth).tolist()))
    if not rows:
        return None
    return mean_sem(pd.DataFrame(rows, columns=["update", "value"])), seeds


def nl_share(c: Mapping[str, Any]) -> np.ndarray:
    """Figure 3, left: the NL's own-coin share ``opponent_own_coins / opponent_coins``."""
    return share(curve(c, "opponent_own_coins"), curve(c, "opponent_coins"))


def nl_coins(key: str) -> SeriesFn:
    """Figure 3, right: the series of curve ``key`` (one of the column player's coin counts)."""
    return lambda c: curve(c, key)


def total_reward(c: Mapping[str, Any]) -> np.ndarray:
    """Figure 4, left: the total extrinsic reward ``reward + opponent_reward``."""
    reward, other = aligned(curve(c, "reward"), curve(c, "opponent_reward"))
    return reward + other


def pair_share(c: Mapping[str, Any]) -> np.ndarray:
    """Figure 4, right: the pair's own-coin share, both players' own coins over all their coins."""
    own, other_own = aligned(curve(c, "own_coins"), curve(c, "opponent_own_coins"))
    total, other_total = aligned(curve(c, "coins"), curve(c, "opponent_coins"))
    own, total = aligned(own + other_own, total + other_total)
    return share(own, total)
