"""Reliability diagram of P(LMA): does a predicted 0.8 come true 8 times in 10?

One curve per probability source (say, before and after temperature
scaling): the observed share of LMA sectors against the mean P(LMA) in each
of 15 equal-width bins, with the diagonal of perfect calibration; the ECE of
each curve is in the legend, and the lower panel shows how many sectors
fall in each bin (log scale). The numbers come from
`lma_tf.decision.calibration.reliability`. See docs/decision.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from lma_tf.decision import calibration
from lma_tf.viz import figures

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def reliability_figure(
    curves: Mapping[str, np.ndarray],
    labels: np.ndarray,
    weight: np.ndarray | None = None,
    num_bins: int = calibration.NUM_BINS,
    title: str = "",
) -> Figure:
    """The diagram, not saved. `curves` maps a label to P(LMA) shaped like `labels`."""
    if not curves:
        raise ValueError("no probabilities to draw")
    fig = figures.new_figure((5.0, 6.0))
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    hist = fig.add_subplot(grid[1], sharex=ax)
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="ideal")
    width = 1.0 / num_bins
    for i, (name, prob) in enumerate(curves.items()):
        rel = calibration.reliability(prob, labels, weight, num_bins)
        colour = _COLOURS[i % len(_COLOURS)]
        ok = rel.weight > 0
        ax.plot(
            rel.mean_probability[ok],
            rel.frequency[ok],
            marker="o",
            color=colour,
            label=f"{name} (ECE {rel.ece:.3f})",
        )
        centres = rel.edges[:-1] + width / 2
        offset = (i - (len(curves) - 1) / 2) * width / max(len(curves), 1)
        hist.bar(
            centres + offset,
            rel.weight,
            width=width / max(len(curves), 1),
            color=colour,
            log=True,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed LMA frequency")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title or "reliability of P(LMA)")
    ax.tick_params(labelbottom=False)
    hist.set_xlabel(f"predicted P(LMA) ({num_bins} bins)")
    hist.set_ylabel("sectors")
    return fig


def plot_reliability(
    curves: Mapping[str, np.ndarray],
    labels: np.ndarray,
    path: str,
    weight: np.ndarray | None = None,
    num_bins: int = calibration.NUM_BINS,
    title: str = "",
) -> str:
    """Writes `reliability_figure` as a PNG; returns `path`."""
    return figures.save_figure(
        reliability_figure(curves, labels, weight, num_bins, title), path
    )
