"""Figures (matplotlib, no GUI backend): payoff heatmap, learning curves, the paper's
Figure 2, pretraining logs.

:func:`plot_results`, :func:`plot_curves` and :func:`plot_training_log` go from files to an
image file; :func:`heatmap_figure`, :func:`curves_figure`, :func:`figure2_figure`,
:func:`curves_or_figure2` and :func:`training_figure` build the
:class:`~matplotlib.figure.Figure`; :func:`save_figure` writes one atomically.
``PLOT_KINDS`` are the ``plot --kind`` values: ``heatmap`` (:func:`plot_results`), ``curves``
and ``figure2`` (:func:`plot_curves`; see :mod:`recip_tourney.plots.figure2` for when
``curves`` draws Figure 2).
"""

from recip_tourney.plots.curves import curves_figure
from recip_tourney.plots.figure2 import (
    CURVE_KINDS,
    FIGURE2_PAIR,
    curves_or_figure2,
    figure2_by_default,
    figure2_figure,
    plot_curves,
)
from recip_tourney.plots.figures import (
    KINDS,
    SUFFIXES,
    heatmap_figure,
    plot_results,
    save_figure,
)
from recip_tourney.plots.training import plot_training_log, read_training_log, training_figure

#: ``plot --kind`` values, in the order the help lists them.
PLOT_KINDS = tuple(dict.fromkeys((*KINDS, *CURVE_KINDS)))

__all__ = [
    "CURVE_KINDS",
    "FIGURE2_PAIR",
    "KINDS",
    "PLOT_KINDS",
    "SUFFIXES",
    "curves_figure",
    "curves_or_figure2",
    "figure2_by_default",
    "figure2_figure",
    "heatmap_figure",
    "plot_curves",
    "plot_results",
    "plot_training_log",
    "read_training_log",
    "save_figure",
    "training_figure",
]
