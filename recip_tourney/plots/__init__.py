"""Figures (matplotlib, no GUI backend): payoff heatmap, learning curves, pretraining logs.

:func:`plot_results` and :func:`plot_training_log` go from files to an image file;
:func:`heatmap_figure`, :func:`curves_figure` and :func:`training_figure` build the
:class:`~matplotlib.figure.Figure`; :func:`save_figure` writes one atomically.
"""

from recip_tourney.plots.curves import curves_figure
from recip_tourney.plots.figures import (
    KINDS,
    SUFFIXES,
    heatmap_figure,
    plot_results,
    save_figure,
)
from recip_tourney.plots.training import plot_training_log, read_training_log, training_figure

__all__ = [
    "KINDS",
    "SUFFIXES",
    "curves_figure",
    "heatmap_figure",
    "plot_results",
    "plot_training_log",
    "read_training_log",
    "save_figure",
    "training_figure",
]
