"""The test-retest figure: the decision on repeat measurements of the same hearts.

Left: top-1 and top-2 pacing-target accuracy of each measurement (draw 0 is
the original one, the one cross-validation scored), their mean top-1
(dotted) and the top-1 of the decision on the mean prediction over all
measurements (dashed). Right: per subject, in
how many repeat measurements the first target is the one of draw 0, with
the top-1 accuracy of the subjects whose target never moves and of the
others. Numbers from `lma_tf.evaluation.retest`. See docs/decision.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from lma_tf.viz import figures


def retest_figure(doc: Mapping, firsts: Mapping[str, Sequence]) -> Figure:
    """The two panels, not saved. `doc`: retest.json's document (per-draw and
    summary figures, and `averaged` when present); `firsts`: subject -> first
    target per measurement."""
    fig, (left, right) = figures.grid(2, max_cols=2)
    draws = [p["draw"] for p in doc["per_draw"]]
    for key, colour in (("top1", "tab:blue"), ("top2", "tab:orange")):
        values = [p[key] for p in doc["per_draw"]]
        left.plot(draws, values, marker="o", color=colour, label=key)
        left.scatter([0], [values[0]], s=120, facecolors="none", edgecolors=colour)
    left.axhline(doc["top1"]["mean"], color="tab:blue", linestyle=":", linewidth=1)
    averaged = doc.get("averaged", {}).get("top1")
    if averaged is not None:
        left.axhline(
            averaged,
            color="tab:purple",
            linestyle="--",
            linewidth=1,
            label="top1 of the mean prediction",
        )
    left.set_xticks(draws)
    left.set_xlabel("measurement (0 = original)")
    left.set_ylabel("share of subjects")
    left.set_ylim(0, 1.02)
    left.legend(loc="lower right", fontsize="small")
    left.set_title(
        f"top-1 {doc['top1']['mean']:.2f} +- {doc['top1']['sd']:.2f} over "
        f"{doc['num_draws']} measurements"
    )
    repeats = doc["num_draws"] - 1
    agree = [sum(f == v[0] for f in v[1:]) for v in firsts.values()]
    counts = np.bincount(agree, minlength=repeats + 1)
    right.bar(np.arange(repeats + 1), counts, color="tab:green")
    right.set_xticks(np.arange(repeats + 1))
    right.set_xlabel(f"repeats with the same first target (of {repeats})")
    right.set_ylabel("subjects")

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    right.set_title(
        f"stable {doc['num_stable']}/{doc['num_subjects']}: top-1 "
        f"{fmt(doc['top1_draw0_stable'])} vs {fmt(doc['top1_draw0_unstable'])}"
    )
    return fig


def plot_retest(doc: Mapping, firsts: Mapping[str, Sequence], path: str) -> str:
    """Writes `retest_figure` as a PNG; returns `path`."""
    return figures.save_figure(retest_figure(doc, firsts), path)
