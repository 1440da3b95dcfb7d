"""Figures of cross-validated comparisons, with their uncertainty shown.

`plot_crossval_means`: one bar per experiment and metric, the mean over folds
with +- 1 sd error bars. `plot_paired_differences`: each metric's paired
difference A - B with its 95% bootstrap interval against a zero line, so an
interval that crosses zero ("no detectable difference") is plain to see.
Metrics are split into panels by unit (ms vs scores). See docs/fidelity.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.patches import Patch

from lma_tf.viz import figures


def _panels(metrics: Sequence[str]) -> dict[str, list[str]]:
    panels: dict[str, list[str]] = {}
    for m in metrics:
        panels.setdefault("ms" if "_ms" in m else "score", []).append(m)
    return panels


def plot_crossval_means(
    summaries: Mapping[str, Mapping[str, Mapping[str, float]]],
    metrics: Sequence[str],
    path: str,
) -> str:
    """Grouped bars of mean +- sd over folds.

    `summaries` maps an experiment to its `mean_sd` entry of crossval.json
    ({metric: {"mean", "sd"}}); metrics an experiment lacks get no bar.
    """
    if not metrics or not summaries:
        raise ValueError("nothing to plot")
    panels = _panels(metrics)
    experiments = list(summaries)
    colours = figures.colormap("tab10")
    width = 0.8 / len(experiments)
    fig, axes = figures.grid(len(panels), max_cols=len(panels), panel=(6.0, 4.2))
    for ax, (unit, names) in zip(axes, panels.items()):
        x = np.arange(len(names))
        for j, exp in enumerate(experiments):
            stats = [summaries[exp].get(m) for m in names]
            keep = [i for i, s in enumerate(stats) if s]
            if not keep:
                continue
            ax.bar(
                x[keep] + (j - (len(experiments) - 1) / 2) * width,
                [stats[i]["mean"] for i in keep],
                width,
                yerr=[stats[i]["sd"] for i in keep],
                capsize=3,
                color=colours(j % 10),
            )
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize="small")
        ax.set_ylabel(f"{unit} (mean +- sd over folds)")
        ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(color=colours(j % 10), label=e) for j, e in enumerate(experiments)]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return figures.save_figure(fig, path)


def plot_paired_differences(
    results: Mapping[str, Mapping], name_a: str, name_b: str, path: str
) -> str:
    """A - B per metric with its 95% CI; red where the CI excludes 0.

    `results` is `paired.compare_predictions`' output (entries without a
    difference are skipped).
    """
    rows = {
        m: r
        for m, r in results.items()
        if not m.startswith("_") and r.get("difference") is not None
    }
    if not rows:
        raise ValueError("no metric to plot")
    panels = _panels(list(rows))
    fig, axes = figures.grid(len(panels), max_cols=len(panels), panel=(5.5, 4.0))
    for ax, (unit, names) in zip(axes, panels.items()):
        y = np.arange(len(names))[::-1]
        for yi, m in zip(y, names):
            r = rows[m]
            lo, hi = r["ci"]
            detected = not lo <= 0.0 <= hi
            ax.errorbar(
                r["difference"],
                yi,
                xerr=[[r["difference"] - lo], [hi - r["difference"]]],
                fmt="o",
                capsize=4,
                color="tab:red" if detected else "tab:grey",
            )
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(y, names, fontsize="small")
        ax.set_xlabel(f"A - B ({unit}), 95% CI")
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"A = {name_a}  vs  B = {name_b}  (red: CI excludes 0)")
    return figures.save_figure(fig, path)
