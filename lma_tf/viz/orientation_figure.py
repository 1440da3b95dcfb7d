"""The orientation convention as a picture: sectors, RV insertion, AHA segments.

Each panel is a short-axis view seen from the apex (anterior up, septum on
the left, the right ventricle drawn as a grey crescent): the outer ring
holds the 6 basal/mid segments, the inner ring the 4 apical ones, the two
RV insertion points are marked, and the sector numbers of one
`Orientation` run around the outside (every 7th sector), with an arrow for
the direction in which they grow and a thick line where sector 0 starts.
`python -m lma_tf.viz.orientation_figure OUT.png` writes the figure of
docs/decision.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Wedge

from lma_tf import constants
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation
from lma_tf.viz import figures

_RINGS = {"basal": (1.9, 3.0), "apical": (0.8, 1.9)}
_SHADES = ("#f2f2f2", "#d9d9d9")


def _xy(deg: float, r: float) -> tuple[float, float]:
    a = np.deg2rad(deg)
    return float(r * np.cos(a)), float(r * np.sin(a))


def _draw_segments(ax: Axes, level: str) -> None:
    r0, r1 = _RINGS[level]
    first = 1 if level == "basal" else 13
    count = 6 if level == "basal" else 4
    for i, seg in enumerate(range(first, first + count)):
        start, width = orientation_lib.segment_arc(seg)
        ax.add_patch(
            Wedge(
                (0, 0),
                r1,
                start,
                start + width,
                width=r1 - r0,
                facecolor=_SHADES[i % 2],
                edgecolor="black",
                linewidth=1.0,
            )
        )
        wall = orientation_lib.SEGMENT_NAMES[seg].split(" ", 1)[1]
        label = f"{seg}/{seg + 6}\n{wall}" if level == "basal" else f"{seg}\n{wall}"
        x, y = _xy(start + width / 2, 0.5 * (r0 + r1))
        ax.text(x, y, label, ha="center", va="center", fontsize=5.5)


def _draw_rv(ax: Axes) -> None:
    """The RV as a crescent on the septal side, and the two insertion points."""
    ax.add_patch(
        Wedge((0, 0), 4.6, 120, 240, width=0.9, facecolor="0.8", edgecolor="0.4")
    )
    ax.text(*_xy(180, 4.15), "RV", ha="center", va="center", fontsize=9)
    for deg, name in ((120, "anterior RV\ninsertion"), (240, "inferior RV\ninsertion")):
        x, y = _xy(deg, 3.0)
        ax.plot([x], [y], marker="o", color="crimson", markersize=7, zorder=5)
        tx, ty = _xy(deg, 5.2)
        ax.text(tx, ty, name, ha="center", va="center", fontsize=7, color="crimson")


def _draw_sectors(ax: Axes, orientation: Orientation) -> None:
    """Sector numbers every 7th sector, sector 0's start edge and the direction."""
    n = constants.NUM_SECTORS
    for k in range(0, n, 7):
        deg = float(orientation.angle(k + 0.5))
        x0, y0 = _xy(deg, 3.0)
        x1, y1 = _xy(deg, 3.15)
        ax.plot([x0, x1], [y0, y1], color="navy", linewidth=0.8)
        tx, ty = _xy(deg, 3.4)
        ax.text(tx, ty, str(k), ha="center", va="center", fontsize=6, color="navy")
    start = float(orientation.angle(0.0))
    ax.plot(*zip(_xy(start, 0.8), _xy(start, 3.2)), color="navy", linewidth=2.5)
    # The direction: an arc inside the apical ring, ending in an arrowhead.
    arc = start + orientation.sign * np.linspace(12.0, 150.0, 40)
    ax.plot(*zip(*(_xy(d, 0.5) for d in arc)), color="navy", linewidth=1.5)
    ax.annotate(
        "",
        xy=_xy(arc[-1], 0.5),
        xytext=_xy(arc[-3], 0.5),
        arrowprops={"arrowstyle": "-|>", "color": "navy", "mutation_scale": 14},
    )


def draw_orientation(ax: Axes, orientation: Orientation, title: str = "") -> None:
    """One panel: segments, RV, insertion points and `orientation`'s sectors."""
    _draw_rv(ax)
    _draw_segments(ax, "basal")
    _draw_segments(ax, "apical")
    _draw_sectors(ax, orientation)
    ax.text(0, 5.45, "anterior", ha="center", fontsize=7)
    ax.text(0, -5.6, "inferior", ha="center", fontsize=7)
    ax.text(-5.6, 0, "septal", ha="center", va="center", rotation=90, fontsize=7)
    ax.text(5.6, 0, "lateral", ha="center", va="center", rotation=-90, fontsize=7)
    ax.set_xlim(-5.9, 5.9)
    ax.set_ylim(-5.9, 5.9)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


DEFAULT_PANELS = (
    (orientation_lib.DEFAULT, "default\n--sector0=rv_insertion --direction=ccw"),
    (Orientation("rv_insertion", 0.0, "cw"), "\n--sector0=rv_insertion --direction=cw"),
    (orientation_lib.LEGACY, "segment 1 first\n--sector0=segment1 --direction=ccw"),
)


def orientation_figure(
    panels: Sequence[tuple[Orientation, str]] = DEFAULT_PANELS,
) -> Figure:
    """One panel per (orientation, title), side by side."""
    fig, axes = figures.grid(len(panels), max_cols=3, panel=(3.6, 3.8))
    for ax, (o, title) in zip(axes, panels):
        draw_orientation(ax, o, title)
    return fig


def main(argv: list[str]) -> int:
    """Writes the figure to argv[1] (default docs/images/decision_orientation.png)."""
    path = argv[1] if len(argv) > 1 else "docs/images/decision_orientation.png"
    figures.save_figure(orientation_figure(), path, dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
