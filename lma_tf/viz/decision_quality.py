"""How good the pacing decision is on labelled data, by how clear the truth is.

Left: top-1 and top-2 per band of the true margin (how much later, in
truth, the true target activates than the next choice; bands of
`lma_tf.decision.report.MARGIN_BANDS_MS`), each bar labelled with its count
of subjects. Right: every subject with a true target placed by its true
margin, hit or missed at top-1, so a reader sees whether the misses are
close calls in truth (left of the 5 ms line) or clear targets the model
got wrong. The numbers come from `report.metrics_from_results`. See
docs/decision.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from lma_tf.decision import report
from lma_tf.viz import figures

# Margins beyond this are drawn at it (a lone late segment has a margin of
# tens of ms over the late threshold; only the close calls need the detail).
MARGIN_AXIS_MS = 20.0
FILENAME = "decision_quality.png"


def decision_quality_figure(metrics: Mapping, title: str = "") -> Figure:
    """The two panels for `metrics` (`report.metrics_from_results`), not saved.

    Raises:
      ValueError: no subject has a true target (nothing to draw).
    """
    per = [p for p in metrics["per_subject"] if p["true_target"] is not None]
    if not per:
        raise ValueError("no labelled subject has a true target")
    bands = metrics["top1_by_true_margin"]
    fig = figures.new_figure((9.0, 3.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1, 1.4)})
    x = np.arange(len(bands))
    for offset, key, colour, name in (
        (-0.2, "top1_accuracy", "tab:blue", "top-1"),
        (0.2, "top2_accuracy", "tab:orange", "top-2"),
    ):
        # A band without subjects gets no bar (not a bar at 0).
        drawn = [i for i, b in enumerate(bands) if b[key] is not None]
        heights = [bands[i][key] for i in drawn]
        left.bar(x[drawn] + offset, heights, 0.4, color=colour, label=name)
    for i, b in enumerate(bands):
        left.text(i, 1.02, f"n={b['num_subjects']}", ha="center", fontsize="small")
    left.set_xticks(x, [b["band"] for b in bands])
    left.set_ylim(0, 1.12)
    left.set_xlabel("true margin over the next choice")
    left.set_ylabel("share of subjects with a target")
    left.legend(loc="lower right", fontsize="small")

    margins = np.minimum([p["true_margin_ms"] for p in per], MARGIN_AXIS_MS)
    hits = np.array([p["top1"] for p in per])
    second = np.array([p["top2"] and not p["top1"] for p in per])
    rng = np.random.default_rng(0)  # vertical jitter only, to separate points
    y = rng.uniform(-0.3, 0.3, len(per))
    for mask, row, colour, name in (
        (hits, 2, "tab:green", "top-1 hit"),
        (second, 1, "tab:orange", "second"),
        (~hits & ~second, 0, "tab:red", "missed both"),
    ):
        right.scatter(
            margins[mask],
            row + y[mask],
            s=14,
            color=colour,
            label=f"{name} ({mask.sum()})",
        )
    near = report.NEAR_MS
    right.axvline(near, color="0.4", linestyle="--", linewidth=1)
    right.text(near, 2.55, " clear in truth", fontsize="small", va="bottom")
    right.set_yticks([0, 1, 2], ["missed", "second", "first"])
    right.set_ylim(-0.5, 2.9)
    right.set_xlim(-0.5, MARGIN_AXIS_MS + 0.5)
    right.set_xlabel(
        f"true margin, ms (>= {MARGIN_AXIS_MS:g} drawn at {MARGIN_AXIS_MS:g})"
    )
    right.set_title("where the true target was ranked", fontsize="medium")
    right.legend(loc="center right", fontsize="small")
    hit = metrics["with_target"]
    fig.suptitle(
        title
        or f"pacing-target decision, {metrics['num_with_target']} subjects with "
        f"a target: top-1 {hit['top1']:.2f}, top-2 {hit['top2']:.2f}"
    )
    fig.tight_layout()
    return fig


def plot_decision_quality(metrics: Mapping, path: str, title: str = "") -> str:
    """Writes `decision_quality_figure` as a PNG; returns `path`."""
    return figures.save_figure(decision_quality_figure(metrics, title), path)


def write_if_targets(metrics: Mapping, folder: str) -> str | None:
    """`folder/decision_quality.png` where a subject has a true target (what
    report, evaluate and crossval write); its path, or None."""
    if not metrics["num_with_target"]:
        return None
    return plot_decision_quality(metrics, os.path.join(folder, FILENAME))
