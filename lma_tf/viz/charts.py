"""Charts of numbers, not of hearts: training curves and experiment comparisons.

Training writes `plot_training_curves` next to its checkpoints so a run can
be judged at a glance (over-fitting, a stuck head); evaluation writes
`plot_comparison` for the paper's table of experiments. See docs/figures.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from lma_tf.viz import figures


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str) -> str:
    """One panel per metric (`x` and `val_x` together), train vs validation.

    `history` is a Keras-style dict of per-epoch values; None values leave
    gaps. Panels are ordered with the losses first. Returns `path`.
    """
    names = list(dict.fromkeys(k.removeprefix("val_") for k in history))
    if not names:
        raise ValueError("empty training history")
    names.sort(key=lambda n: (not n.endswith("loss"), n != "loss"))
    fig, axes = figures.grid(len(names))
    for ax, name in zip(axes, names):
        for key, label, style in ((name, "train", "-"), (f"val_{name}", "val", "--")):
            if key not in history:
                continue
            values = np.array(
                [np.nan if v is None else float(v) for v in history[key]], dtype=float
            )
            epochs = np.arange(1, values.size + 1)
            ax.plot(epochs, values, style, marker=".", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return figures.save_figure(fig, path)


def _unit(metric: str) -> str:
    if "_ms" in metric:
        return "ms"
    if "_frames" in metric:
        return "frames"
    return "score"


def plot_comparison(
    results: Mapping[str, Mapping[str, float | None]],
    metrics: Sequence[str],
    path: str,
) -> str:
    """Grouped bars: one group per metric, one bar per experiment.

    Metrics are split into panels by unit (ms, frames, scores) so that
    errors in ms do not flatten scores in [0, 1]. Missing or None values are
    skipped (no bar). Returns `path`.
    """
    if not metrics:
        raise ValueError("no metrics to plot")
    panels: dict[str, list[str]] = {}
    for m in metrics:
        panels.setdefault(_unit(m), []).append(m)
    experiments = list(results)
    colours = figures.colormap("tab10")
    width = 0.8 / max(1, len(experiments))
    fig, axes = figures.grid(len(panels), max_cols=len(panels), panel=(5.5, 4.0))
    for ax, (unit, names) in zip(axes, panels.items()):
        x = np.arange(len(names))
        for j, exp in enumerate(experiments):
            values = [results[exp].get(m) for m in names]
            keep = [i for i, v in enumerate(values) if v is not None]
            if not keep:
                continue
            bars = ax.bar(
                x[keep] + (j - (len(experiments) - 1) / 2) * width,
                [float(values[i]) for i in keep],
                width,
                color=colours(j % 10),
            )
            ax.bar_label(bars, fmt="%.2f", fontsize="x-small")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize="small")
        ax.set_ylabel(unit)
        ax.grid(True, axis="y", alpha=0.3)
    handles = [
        Patch(color=colours(j % 10), label=exp) for j, exp in enumerate(experiments)
    ]
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return figures.save_figure(fig, path)
