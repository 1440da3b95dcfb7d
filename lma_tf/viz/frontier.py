"""Accuracy per cost: combined TOS MAE against FLOPs per example (log x).

One labelled point per network, the Pareto frontier as a step line through
the networks no other beats on both axes, and the pick of the default rule
ringed. Networks without FLOPs (the classical detector) cannot sit on a log
axis and are listed in the title instead. See docs/results.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib import ticker

from lma_tf.evaluation import frontier
from lma_tf.viz import figures


def plot_frontier(
    rows: Sequence[Mapping[str, Any]],
    path: str,
    picked: str | None = None,
    title: str = "Accuracy per cost (validation split)",
) -> str:
    """Writes the frontier figure of `rows` (see `evaluation.frontier`) to `path`.

    Raises:
      ValueError: no row has FLOPs and a combined MAE to plot.
    """
    points = frontier.plottable(rows)
    if not points:
        raise ValueError("no network with FLOPs and a combined TOS MAE to plot")
    left_out = [str(r["name"]) for r in rows if r not in points]
    fig = figures.new_figure((6.4, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    xs = [float(r[frontier.FLOPS]) / 1e6 for r in points]
    ys = [float(r[frontier.MAE]) for r in points]
    ax.scatter(xs, ys, color="tab:blue", zorder=3)
    for r, x, y in zip(points, xs, ys):
        ax.annotate(
            str(r["name"]),
            (x, y),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize="small",
        )
    by_name = {str(r["name"]): r for r in points}
    front = [by_name[n] for n in frontier.pareto_front(points)]
    fx = [float(r[frontier.FLOPS]) / 1e6 for r in front]
    fy = [float(r[frontier.MAE]) for r in front]
    ax.plot(fx, fy, drawstyle="steps-post", color="tab:orange", label="frontier")
    if picked in by_name:
        r = by_name[picked]
        ax.scatter(
            [float(r[frontier.FLOPS]) / 1e6],
            [float(r[frontier.MAE])],
            s=160,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=1.5,
            zorder=4,
            label=f"pick: {picked}",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.2, y=0.1)  # room for the labels of the outermost points
    ax.set_xlabel("MFLOPs per example (log)")
    ax.set_ylabel("combined TOS MAE (ms)")
    if left_out:
        title = f"{title}\n(not plotted, no FLOPs: {', '.join(left_out)})"
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return figures.save_figure(fig, path)
