"""AHA 16-segment bullseyes of one subject: TOS, true TOS and scar per segment.

The bullseye is how cardiologists read a whole ventricle at once: basal
ring outside, apex in the centre, anterior (segments 1, 7, 13) at the top
and the septum on the left. Each segment shows the mean over the sectors
that `lma_tf.viz.aha` assigns to it; segments no slice covers are grey.
See docs/figures.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Wedge

from lma_tf.decision.orientation import Orientation
from lma_tf.viz import aha, figures
from lma_tf.viz import rings as rings_lib
from lma_tf.viz.rings import RingData

# Canonical bullseye wedges (degrees, counter-clockwise from 3 o'clock) of the
# first segment of each ring: 1 and 7 anterior at the top (60-120), then
# anteroseptal, inferoseptal, inferior, inferolateral, anterolateral; apical
# 13 anterior (45-135), 14 septal, 15 inferior, 16 lateral.
_WEDGE_START_DEG = {"basal": 60.0, "mid": 60.0, "apical": 45.0}
_RING_RADII = {"basal": (2.0, 3.0), "mid": (1.0, 2.0), "apical": (0.0, 1.0)}


def _wedges() -> tuple[list[Wedge], list[tuple[float, float]]]:
    """The 16 wedges in segment order, and where each one's label goes."""
    wedges, centres = [], []
    for level in aha.LEVELS:
        r0, r1 = _RING_RADII[level]
        n = aha.SEGMENTS_PER_LEVEL[level]
        width = 360.0 / n
        for i in range(n):
            a0 = _WEDGE_START_DEG[level] + i * width
            wedges.append(Wedge((0, 0), r1, a0, a0 + width, width=r1 - r0))
            mid = np.deg2rad(a0 + width / 2)
            r = 0.5 * (r0 + r1) if r0 else 0.55 * r1
            centres.append((r * np.cos(mid), r * np.sin(mid)))
    return wedges, centres


def draw_bullseye(
    ax: Axes, values: np.ndarray, cmap: str, vmin: float, vmax: float, fmt: str
) -> PatchCollection:
    """16 wedges on `ax` coloured by `values` (NaN grey); returns the collection.

    Each wedge is labelled with its segment number and value (`fmt`).
    """
    wedges, centres = _wedges()
    coll = PatchCollection(
        wedges,
        cmap=figures.colormap(cmap, missing=True),
        edgecolor="black",
        linewidth=1.0,
    )
    coll.set_array(np.ma.masked_invalid(np.asarray(values, dtype=np.float64)))
    coll.set_clim(vmin, vmax)
    coll.set_gid("bullseye")
    ax.add_collection(coll)
    for k, ((x, y), v) in enumerate(zip(centres, values)):
        text = f"{k + 1}" if not np.isfinite(v) else f"{k + 1}\n{v:{fmt}}"
        ax.text(x, y, text, ha="center", va="center", fontsize=7)
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.2, 3.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return coll


def bullseye_figure(
    rings: Sequence[RingData],
    tos_range: tuple[float, float] | None = None,
    title: str = "",
    base_at_high: bool = True,
    orientation: Orientation | Sequence[Orientation | None] | None = None,
) -> Figure:
    """AHA 16-segment bullseyes of one subject: TOS, true TOS, scar.

    Panel order: predicted (`tos_ms` of the rings), true TOS when any ring
    has it, scar fraction when any ring has it. Each segment shows the mean
    over the sectors of the slices at its level; segments no slice covers
    are grey. Standard orientation: anterior (1, 7, 13) at the top, septum
    on the left. Sectors go to segments by `orientation` (one, or one per
    ring; None: `orientation.DEFAULT`, the report's default).
    """
    if not rings:
        raise ValueError("no slices to draw")
    levels = aha.slice_levels(aha.ring_heights(rings, base_at_high))
    lo, hi = tos_range or rings_lib.tos_range(rings)
    tos_cmap = figures.TOS_CMAP
    panels = [("TOS (ms)", [r.tos_ms for r in rings], tos_cmap, lo, hi, ".0f")]
    if any(r.true_tos_ms is not None for r in rings):
        true_tos = [r.true_tos_ms for r in rings]
        panels.append(("true TOS (ms)", true_tos, tos_cmap, lo, hi, ".0f"))
    if any(r.scar_fraction is not None for r in rings):
        scar = [r.scar_fraction for r in rings]
        panels.append(("scar fraction", scar, figures.SCAR_CMAP, 0, 1, ".2f"))
    fig, axes = figures.grid(len(panels), max_cols=3, panel=(4.2, 4.0))
    for ax, (label, values, cmap, vmin, vmax, fmt) in zip(axes, panels):
        seg = aha.aha_segment_values(rings, values, levels, orientation)
        coll = draw_bullseye(ax, seg, cmap, vmin, vmax, fmt)
        ax.set_title(label)
        fig.colorbar(coll, ax=ax, shrink=0.7, label=label)
    if title:
        fig.suptitle(title)
    return fig


def plot_bullseye(
    rings: Sequence[RingData],
    path: str,
    tos_range: tuple[float, float] | None = None,
    title: str = "",
    base_at_high: bool = True,
    orientation: Orientation | Sequence[Orientation | None] | None = None,
) -> str:
    """Writes `bullseye_figure` as a PNG; returns `path`."""
    fig = bullseye_figure(rings, tos_range, title, base_at_high, orientation)
    return figures.save_figure(fig, path)
