"""Figures for evaluation and the demo: headless (Agg) PNGs, written atomically.

- `plot_strain_tos`: strain matrix with TOS curves and scar sectors.
- `plot_training_curves`: train vs validation curves per metric.
- `plot_comparison`: grouped bars of metrics across experiments.
- `plot_gradcam`: Grad-CAM maps overlaid on a slice's strain matrix.
- `plot_activation_map`: per-subject 3-D activation map (slices stacked by
  location on an LV-like shell, TOS colours, scar outlines, AHA boundaries).
- `plot_bullseye`: AHA 16-segment bullseyes of TOS and scar.
- `activation_maps_from_csv`, and `python -m lma_tf.viz.plots activation_map
  --predictions=P.csv --output_dir=D`: both per subject of a prediction CSV.

Every figure is saved through `save_figure` (temporary name in the target
folder, then `os.replace`, so a reader never sees half a PNG) and closed.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle, Wedge  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from lma_tf import atomic, constants  # noqa: E402

STRAIN_LIMIT = 0.2  # colour scale -0.2..+0.2, as in the DENSE literature
STRAIN_CMAP = "RdBu_r"  # red = stretch (+), blue = shortening (-)
SCAR_COLOUR = "tab:purple"
DPI = 100
_TOS_STYLES = {  # name -> (label, plot kwargs)
    "true": ("true TOS", dict(color="black", linestyle="-", linewidth=2.0)),
    "pred": ("regressed TOS", dict(color="tab:green", linestyle="--", linewidth=2.0)),
    "combined": (
        "combined TOS",
        dict(color="darkorange", linestyle=":", linewidth=2.5),
    ),
}


def save_figure(fig: Figure, path: str, dpi: int = DPI) -> str:
    """Saves `fig` atomically (format from the extension, PNG by default).

    The figure is closed afterwards, whether saving worked or not.
    """
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def _sector_vector(name: str, value, num_sectors: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (num_sectors,):
        raise ValueError(f"{name} has shape {arr.shape}, expected ({num_sectors},)")
    return arr


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D mask (no wrap-around)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2])]


def strain_tos_figure(
    strain: np.ndarray,
    true_tos: np.ndarray | None = None,
    pred_tos: np.ndarray | None = None,
    combined_tos: np.ndarray | None = None,
    scar_fraction: np.ndarray | None = None,
    title: str = "",
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS,
) -> Figure:
    """The figure of `plot_strain_tos`, not saved (for notebooks and tests).

    Axes 0 holds the strain image (sector 0 at the bottom, frame j centred at
    (j + 1) x period ms, so TOS = 17 ms sits on the first frame).
    """
    strain = np.asarray(strain, dtype=np.float64)
    if strain.ndim != 2:
        raise ValueError(f"strain must be (sectors, frames), got {strain.shape}")
    num_sectors, num_frames = strain.shape
    period = float(frame_period_ms)

    fig, ax = plt.subplots(figsize=(8.0, 5.0), layout="constrained")
    extent = (0.5 * period, (num_frames + 0.5) * period, -0.5, num_sectors - 0.5)
    image = ax.imshow(
        strain,
        cmap=STRAIN_CMAP,
        vmin=-STRAIN_LIMIT,
        vmax=STRAIN_LIMIT,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=extent,
    )
    handles = _draw_tos_lines(
        ax,
        [("true", true_tos), ("pred", pred_tos), ("combined", combined_tos)],
        num_sectors,
    )
    handles += _draw_scar_band(
        ax, scar_fraction, num_sectors, 0.025, f"scar (>= {constants.SCAR_THRESHOLD:g})"
    )

    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("sector")
    ax.set_title(title)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    fig.colorbar(image, ax=ax, pad=0.06, label="circumferential strain Ecc")
    return fig


def plot_strain_tos(
    strain: np.ndarray,
    true_tos: np.ndarray | None = None,
    pred_tos: np.ndarray | None = None,
    combined_tos: np.ndarray | None = None,
    scar_fraction: np.ndarray | None = None,
    *,
    path: str,
    title: str = "",
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS,
) -> str:
    """Strain matrix (sectors x time) with TOS curves and scar band, as a PNG.

    Colours are fixed to -0.2..+0.2 (blue = shortening) so figures compare
    across slices; TOS curves are x = TOS ms at y = sector (true: solid
    black, regressed: dashed, combined: dotted). Returns `path`.
    """
    fig = strain_tos_figure(
        strain, true_tos, pred_tos, combined_tos, scar_fraction, title, frame_period_ms
    )
    return save_figure(fig, path)


def _grid(n: int, max_cols: int = 3, panel: tuple[float, float] = (4.5, 3.5)):
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(panel[0] * cols, panel[1] * rows),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str) -> str:
    """One panel per metric (`x` and `val_x` together), train vs validation.

    `history` is a Keras-style dict of per-epoch values; None values leave
    gaps. Panels are ordered with the losses first. Returns `path`.
    """
    names = list(dict.fromkeys(k.removeprefix("val_") for k in history))
    if not names:
        raise ValueError("empty training history")
    names.sort(key=lambda n: (not n.endswith("loss"), n != "loss"))
    fig, axes = _grid(len(names))
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
    return save_figure(fig, path)


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
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(experiments))
    fig, axes = _grid(len(panels), max_cols=len(panels), panel=(5.5, 4.0))
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
    return save_figure(fig, path)


# --------------------------------------------------------------------------
# Grad-CAM overlays on the strain matrix.
# --------------------------------------------------------------------------

CAM_CMAP = "jet"  # the Grad-CAM convention; 0 = no influence, 1 = the most
CAM_ALPHA = 0.45


@dataclasses.dataclass
class CamPanel:
    """One explanation map to overlay on a slice's strain matrix.

    Attributes:
      title: panel title (experiment and head, e.g. "multitask: TOS head").
      cam: (sectors, frames) map in [0, 1], cropped like the strain.
      pred_tos: the explained model's regressed TOS (sectors,), drawn dashed.
      combined_tos: its combined TOS (sectors,), drawn dotted.
      target_sector: the sector whose score is explained (horizontal line).
      run: sectors of the scored LMA run (a bracket on the right edge).
    """

    title: str
    cam: np.ndarray
    pred_tos: np.ndarray | None = None
    combined_tos: np.ndarray | None = None
    target_sector: int | None = None
    run: Sequence[int] | None = None


def _strain_extent(num_sectors: int, num_frames: int, period: float):
    return (0.5 * period, (num_frames + 0.5) * period, -0.5, num_sectors - 0.5)


def _draw_tos_lines(ax, curves, num_sectors: int) -> list:
    sectors = np.arange(num_sectors)
    handles = []
    for key, values in curves:
        tos = _sector_vector(f"{key}_tos", values, num_sectors)
        if tos is not None:
            label, style = _TOS_STYLES[key]
            (line,) = ax.plot(tos, sectors, label=label, **style)
            handles.append(line)
    return handles


def _draw_scar_band(ax, scar_fraction, num_sectors: int, width: float, label: str):
    """Marks scar sectors (>= threshold) by a band just outside the right edge.

    x is in axes units, y in sectors. Returns the legend handle, if any.
    """
    scar = _sector_vector("scar_fraction", scar_fraction, num_sectors)
    if scar is None:
        return []
    for start, length in _runs(scar >= constants.SCAR_THRESHOLD):
        ax.add_patch(
            Rectangle(
                (1.005, start - 0.5),
                width,
                length,
                transform=ax.get_yaxis_transform(),
                clip_on=False,
                color=SCAR_COLOUR,
            )
        )
    return [Patch(color=SCAR_COLOUR, label=label)]


def _circular_runs(sectors: Sequence[int], num_sectors: int) -> list[tuple[int, int]]:
    """(start, length) runs of a set of ring sectors, split at the ring's end."""
    mask = np.zeros(num_sectors, bool)
    mask[np.asarray(list(sectors), dtype=int) % num_sectors] = True
    return _runs(mask)


def gradcam_figure(
    strain: np.ndarray,
    panels: Sequence[CamPanel],
    true_tos: np.ndarray | None = None,
    scar_fraction: np.ndarray | None = None,
    title: str = "",
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS,
    max_cols: int = 4,
) -> Figure:
    """Strain matrix, then one Grad-CAM overlay per panel, not saved.

    Axes 0 is the strain (-0.2..0.2, as `strain_tos_figure`) with the true
    TOS; every CAM panel shows the strain in grey under the map (jet, alpha
    CAM_ALPHA, fixed 0..1), the true TOS (solid black), the panel model's TOS
    (dashed / dotted), the target sector (white dotted line) and the scored
    LMA run (a bracket outside the right edge). Same axes as the strain
    figure: x = time (ms), y = sector, sector 0 at the bottom.
    """
    strain = np.asarray(strain, dtype=np.float64)
    if strain.ndim != 2:
        raise ValueError(f"strain must be (sectors, frames), got {strain.shape}")
    num_sectors, num_frames = strain.shape
    for p in panels:
        if np.shape(p.cam) != strain.shape:
            raise ValueError(
                f"cam of {p.title!r} has shape {np.shape(p.cam)}, "
                f"expected {strain.shape} (crop it like the strain)"
            )
    period = float(frame_period_ms)
    extent = _strain_extent(num_sectors, num_frames, period)
    fig, axes = _grid(1 + len(panels), max_cols=max_cols, panel=(4.2, 3.6))
    common = dict(origin="lower", aspect="auto", interpolation="nearest", extent=extent)

    ax = axes[0]
    strain_image = ax.imshow(
        strain, cmap=STRAIN_CMAP, vmin=-STRAIN_LIMIT, vmax=STRAIN_LIMIT, **common
    )
    handles = _draw_tos_lines(ax, [("true", true_tos)], num_sectors)
    handles += _draw_scar_band(ax, scar_fraction, num_sectors, 0.03, "scar")
    ax.set_title("strain Ecc")
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="x-small")
    fig.colorbar(strain_image, ax=ax, pad=0.08, label="Ecc")

    cam_image = None
    for ax, p in zip(axes[1:], panels):
        ax.imshow(strain, cmap="gray", vmin=-STRAIN_LIMIT, vmax=STRAIN_LIMIT, **common)
        cam_image = ax.imshow(
            np.asarray(p.cam, dtype=np.float64),
            cmap=CAM_CMAP,
            vmin=0.0,
            vmax=1.0,
            alpha=CAM_ALPHA,
            **common,
        )
        cam_image.set_gid("cam")
        handles = _draw_tos_lines(
            ax,
            [("true", true_tos), ("pred", p.pred_tos), ("combined", p.combined_tos)],
            num_sectors,
        )
        if p.target_sector is not None:
            line = ax.axhline(
                p.target_sector, color="white", linestyle=":", linewidth=1.5
            )
            line.set_gid("target_sector")
        for start, length in _circular_runs(
            [] if p.run is None else p.run, num_sectors
        ):
            bracket = Rectangle(
                (1.005, start - 0.5),
                0.03,
                length,
                transform=ax.get_yaxis_transform(),
                clip_on=False,
                color="black",
            )
            bracket.set_gid("lma_run")
            ax.add_patch(bracket)
        ax.set_title(p.title, fontsize="medium")
        if handles:
            ax.legend(handles=handles, loc="upper right", fontsize="x-small")
    for ax in axes:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("sector")
    if cam_image is not None:
        fig.colorbar(cam_image, ax=axes[1:], pad=0.02, shrink=0.8, label="CAM")
    if title:
        fig.suptitle(title)
    return fig


def plot_gradcam(
    strain: np.ndarray,
    panels: Sequence[CamPanel],
    *,
    path: str,
    true_tos: np.ndarray | None = None,
    scar_fraction: np.ndarray | None = None,
    title: str = "",
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS,
) -> str:
    """Writes `gradcam_figure` as a PNG; returns `path`."""
    fig = gradcam_figure(
        strain, panels, true_tos, scar_fraction, title, frame_period_ms
    )
    return save_figure(fig, path)


# --------------------------------------------------------------------------
# Per-subject activation maps: AHA segments, 3-D rings, bullseyes.
# --------------------------------------------------------------------------

TOS_CMAP = "turbo"  # early (17 ms) blue ... late red
SCAR_CMAP = "Purples"
MISSING_COLOUR = "lightgrey"
LEVELS = ("basal", "mid", "apical")
NUM_AHA_SEGMENTS = 16
SECTORS_PER_SEGMENT = constants.NUM_SECTORS // 6  # 21: basal and mid rings
_SEGMENTS_PER_LEVEL = {"basal": 6, "mid": 6, "apical": 4}
_FIRST_SEGMENT = {"basal": 1, "mid": 7, "apical": 13}
# Canonical bullseye wedges (degrees, counter-clockwise from 3 o'clock) of the
# first segment of each ring: 1 and 7 anterior at the top (60-120), then
# anteroseptal, inferoseptal, inferior, inferolateral, anterolateral; apical
# 13 anterior (45-135), 14 septal, 15 inferior, 16 lateral.
_WEDGE_START_DEG = {"basal": 60.0, "mid": 60.0, "apical": 45.0}
_RING_RADII = {"basal": (2.0, 3.0), "mid": (1.0, 2.0), "apical": (0.0, 1.0)}
LV_RADIUS_MM = 25.0  # a typical end-diastolic LV radius, for the 3-D shell
# Scar sectors have TOS 17 ms, the dark end of TOS_CMAP: outline them in a
# colour that stands out against it.
SCAR_OUTLINE_COLOUR = "magenta"


@dataclasses.dataclass
class RingData:
    """One short-axis slice of a subject, as drawn on the activation maps.

    Arrays are over the 126 sectors; NaN marks a sector with no value.
    """

    slice_id: str
    location: float | None
    tos_ms: np.ndarray
    scar_fraction: np.ndarray | None = None
    true_tos_ms: np.ndarray | None = None
    lma_probability: np.ndarray | None = None


def aha_segments(level: str, num_sectors: int = constants.NUM_SECTORS) -> np.ndarray:
    """(num_sectors,) AHA segment number (1-16) of each sector of a ring.

    Sector k sits at angle 2*pi*k/num_sectors; basal (1-6) and mid (7-12)
    rings have 6 segments of 21 sectors, the apical ring (13-16) 4 of 31.5.
    """
    if level not in _SEGMENTS_PER_LEVEL:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    n = _SEGMENTS_PER_LEVEL[level]
    return _FIRST_SEGMENT[level] + (np.arange(num_sectors) * n) // num_sectors


def _segment_edges(level: str, num_sectors: int = constants.NUM_SECTORS):
    """Segment boundaries of a ring, in (fractional) sector units."""
    n = _SEGMENTS_PER_LEVEL[level]
    return [i * num_sectors / n for i in range(n)]


def ring_heights(rings: Sequence[RingData], base_at_high: bool = True) -> np.ndarray:
    """Long-axis height of each ring, larger = more basal.

    Uses `location` (mm) where every ring has one (`base_at_high`: the
    largest location is the base, the synthetic and usual convention);
    otherwise the order given, the first ring the most basal.
    """
    locs = [r.location for r in rings]
    if all(v is not None and np.isfinite(v) for v in locs):
        h = np.asarray(locs, dtype=np.float64)
        return h if base_at_high else -h
    return -np.arange(len(rings), dtype=np.float64)


def _spacing(heights: np.ndarray) -> float:
    d = np.diff(np.unique(heights))
    return float(np.median(d)) if d.size else 1.0


def slice_levels(heights: Sequence[float]) -> list[str]:
    """basal / mid / apical of each ring, by thirds of the covered long axis.

    Each slice stands for a slab of the median spacing, so the covered axis
    runs half a spacing beyond the outer slices; it is split into three
    equal parts (three slices: one per level, four: apical, mid, mid, basal).
    A single slice is mid.
    """
    h = np.asarray(heights, dtype=np.float64)
    if h.size == 0:
        return []
    if np.ptp(h) == 0:
        return ["mid"] * h.size
    half = 0.5 * _spacing(h)
    lo, hi = h.min() - half, h.max() + half
    third = np.floor(3.0 * (h - lo) / (hi - lo) + 1e-9).clip(0, 2).astype(int)
    return [("apical", "mid", "basal")[t] for t in third]


def aha_segment_values(
    rings: Sequence[RingData],
    values: Sequence[np.ndarray | None],
    levels: Sequence[str] | None = None,
) -> np.ndarray:
    """(16,) mean of `values` per AHA segment (index 0 = segment 1); NaN if none.

    `values[i]` holds ring i's 126 sector values (None or NaN: not counted);
    `levels` defaults to `slice_levels(ring_heights(rings))`.
    """
    if levels is None:
        levels = slice_levels(ring_heights(rings))
    sums = np.zeros(NUM_AHA_SEGMENTS)
    counts = np.zeros(NUM_AHA_SEGMENTS)
    for level, v in zip(levels, values):
        if v is None:
            continue
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        seg = aha_segments(level, v.size) - 1
        ok = np.isfinite(v)
        np.add.at(sums, seg[ok], v[ok])
        np.add.at(counts, seg[ok], 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _cmap(name: str):
    return plt.get_cmap(name).with_extremes(bad=MISSING_COLOUR)


def _draw_bullseye(
    ax, values: np.ndarray, cmap: str, vmin: float, vmax: float, fmt: str
):
    """16 wedges on `ax` coloured by `values`; returns the PatchCollection."""
    wedges, centres = [], []
    for level in LEVELS:
        r0, r1 = _RING_RADII[level]
        n = _SEGMENTS_PER_LEVEL[level]
        width = 360.0 / n
        for i in range(n):
            a0 = _WEDGE_START_DEG[level] + i * width
            wedges.append(Wedge((0, 0), r1, a0, a0 + width, width=r1 - r0))
            mid = np.deg2rad(a0 + width / 2)
            r = 0.5 * (r0 + r1) if r0 else 0.55 * r1
            centres.append((r * np.cos(mid), r * np.sin(mid)))
    coll = PatchCollection(wedges, cmap=_cmap(cmap), edgecolor="black", linewidth=1.0)
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
) -> Figure:
    """AHA 16-segment bullseyes of one subject: TOS, true TOS, scar.

    Panel order: predicted (`tos_ms` of the rings), true TOS when any ring
    has it, scar fraction when any ring has it. Each segment shows the mean
    over the sectors of the slices at its level; segments no slice covers
    are grey. Standard orientation: anterior (1, 7, 13) at the top, septum
    on the left.
    """
    if not rings:
        raise ValueError("no slices to draw")
    levels = slice_levels(ring_heights(rings, base_at_high))
    lo, hi = tos_range or (constants.TOS_FLOOR_MS, _tos_upper(rings))
    panels = [("TOS (ms)", [r.tos_ms for r in rings], TOS_CMAP, lo, hi, ".0f")]
    if any(r.true_tos_ms is not None for r in rings):
        panels.append(
            ("true TOS (ms)", [r.true_tos_ms for r in rings], TOS_CMAP, lo, hi, ".0f")
        )
    if any(r.scar_fraction is not None for r in rings):
        panels.append(
            ("scar fraction", [r.scar_fraction for r in rings], SCAR_CMAP, 0, 1, ".2f")
        )
    fig, axes = _grid(len(panels), max_cols=3, panel=(4.2, 4.0))
    for ax, (label, values, cmap, vmin, vmax, fmt) in zip(axes, panels):
        seg = aha_segment_values(rings, values, levels)
        coll = _draw_bullseye(ax, seg, cmap, vmin, vmax, fmt)
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
) -> str:
    """Writes `bullseye_figure` as a PNG; returns `path`."""
    return save_figure(bullseye_figure(rings, tos_range, title, base_at_high), path)


def _tos_upper(rings: Sequence[RingData]) -> float:
    return tos_upper_range([r.tos_ms for r in rings] + [r.true_tos_ms for r in rings])


def tos_upper_range(arrays: Sequence[np.ndarray | None], step: float = 10.0) -> float:
    """The top of the TOS colour scale: the largest finite TOS, rounded up.

    At least 17 + `step` ms, so a cohort with no late sector still has a scale.
    """
    values = [np.asarray(a, np.float64).ravel() for a in arrays if a is not None]
    flat = np.concatenate(values) if values else np.zeros(0)
    flat = flat[np.isfinite(flat)]
    top = float(flat.max()) if flat.size else constants.TOS_FLOOR_MS
    return max(step * math.ceil(top / step), constants.TOS_FLOOR_MS + step)


def _lv_radius(z: np.ndarray, z_base: float, z_apex: float) -> np.ndarray:
    """Radius of a truncated ellipsoid: LV_RADIUS_MM at the base, 0 at the apex."""
    u = (z_base - np.asarray(z, np.float64)) / (z_base - z_apex)
    return LV_RADIUS_MM * np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0))


@dataclasses.dataclass
class Scene3D:
    """The polygons of one 3-D activation map, in drawing-independent form.

    Everything is one list of quads so that matplotlib depth-sorts rings,
    boundaries and outlines together (separate artists are sorted as wholes,
    which hides front lines behind back surfaces).

    Attributes:
      quads: (P, 4, 3) corners (x, y, z in mm; z up = towards the base).
      colours: (P, 4) RGBA per quad.
      kinds: per quad: "sector", "aha_boundary", "scar_outline" or "shell".
      ring: per quad, the index of its ring in the input (-1: shell).
      sector: per quad, the sector of a "sector" quad (-1 otherwise).
      band: per ring, its (bottom, top) height in mm.
      levels: per ring, basal / mid / apical.
    """

    quads: np.ndarray
    colours: np.ndarray
    kinds: list[str]
    ring: np.ndarray
    sector: np.ndarray
    band: np.ndarray
    levels: list[str]


# Overlays sit this far outside the surface (fraction of the radius), so the
# depth sort draws them over the sectors they mark on the visible side.
_OVERLAY_OFFSET = 0.03
_BOUNDARY_HALF_WIDTH = np.deg2rad(0.8)


def _band_quads(r0, r1, z0, z1, a0, a1, n: int) -> np.ndarray:
    """n quads of a conical band between angles a0 and a1 (radians)."""
    a = np.linspace(a0, a1, n + 1)
    c, s = np.cos(a), np.sin(a)
    bottom = np.stack([r0 * c, r0 * s, np.full(n + 1, z0)], axis=1)
    top = np.stack([r1 * c, r1 * s, np.full(n + 1, z1)], axis=1)
    return np.stack([bottom[:-1], bottom[1:], top[1:], top[:-1]], axis=1)


def _circular_mask_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) runs of True on a ring; a run through sector 0 is one."""
    runs = _runs(mask)
    n = mask.size
    if len(runs) > 1 and runs[0][0] == 0 and sum(runs[-1]) == n:
        runs = [(runs[-1][0], runs[-1][1] + runs[0][1])] + runs[1:-1]
    return runs


def activation_map_scene(
    rings: Sequence[RingData],
    values: Sequence[np.ndarray | None],
    tos_range: tuple[float, float],
    base_at_high: bool = True,
) -> Scene3D:
    """Builds the quads of a 3-D activation map (see `activation_map_figure`).

    Ring i is a band at height `ring_heights(...)[i]` (0.8 x the slice
    spacing tall) on a truncated ellipsoid (LV_RADIUS_MM at the base plane,
    half a spacing above the top slice; apex 1.2 spacings below the lowest);
    its sector k spans angles 2*pi*k/n .. 2*pi*(k+1)/n and is coloured by
    `values[i][k]` on TOS_CMAP over `tos_range` (NaN / None: grey). Gaps
    between bands and the apical cap are a light-grey shell.
    """
    heights = ring_heights(rings, base_at_high)
    levels = slice_levels(heights)
    spacing = _spacing(heights) if np.ptp(heights) > 0 else 8.0
    z0s, z1s = heights - 0.4 * spacing, heights + 0.4 * spacing
    z_base = heights.max() + 0.6 * spacing
    z_apex = heights.min() - 1.2 * spacing
    cmap = _cmap(TOS_CMAP)
    norm = Normalize(*tos_range)
    shell_rgba = np.array(matplotlib.colors.to_rgba("0.88"))
    overlay = {
        "aha_boundary": np.array(matplotlib.colors.to_rgba("black")),
        "scar_outline": np.array(matplotlib.colors.to_rgba(SCAR_OUTLINE_COLOUR)),
    }
    quads, colours, kinds, ring_of, sector_of = [], [], [], [], []

    def add(q: np.ndarray, rgba: np.ndarray, kind: str, ring: int, sectors=None):
        quads.append(q)
        colours.append(np.broadcast_to(rgba, (len(q), 4)))
        kinds.extend([kind] * len(q))
        ring_of.extend([ring] * len(q))
        sector_of.extend([-1] * len(q) if sectors is None else list(sectors))

    def radius(z):
        return _lv_radius(np.asarray(z, np.float64), z_base, z_apex)

    # The shell: apex to the lowest band, then the gaps between bands.
    order = np.argsort(heights)
    stops = [(z_apex, z0s[order[0]])]
    stops += [(z1s[a], z0s[b]) for a, b in zip(order[:-1], order[1:])]
    for lo, hi in stops:
        if hi - lo <= 1e-6:
            continue
        zs = np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / 3.0)) + 1))
        for za, zb in zip(zs[:-1], zs[1:]):
            add(
                _band_quads(radius(za), radius(zb), za, zb, 0, 2 * np.pi, 63),
                shell_rgba,
                "shell",
                -1,
            )

    for i, (v, level) in enumerate(zip(values, levels)):
        n = constants.NUM_SECTORS if v is None else np.asarray(v).size
        v = np.full(n, np.nan) if v is None else np.asarray(v, np.float64)
        r0, r1 = radius(z0s[i]), radius(z1s[i])
        rgba = cmap(norm(np.ma.masked_invalid(v)))
        add(
            _band_quads(r0, r1, z0s[i], z1s[i], 0, 2 * np.pi, n),
            rgba,
            "sector",
            i,
            range(n),
        )
        o0, o1 = (1 + _OVERLAY_OFFSET) * r0, (1 + _OVERLAY_OFFSET) * r1
        for edge in _segment_edges(level, n):
            a = 2 * np.pi * edge / n
            w = _BOUNDARY_HALF_WIDTH
            add(
                _band_quads(o0, o1, z0s[i], z1s[i], a - w, a + w, 1),
                overlay["aha_boundary"],
                "aha_boundary",
                i,
            )
        scar = rings[i].scar_fraction
        if scar is None:
            continue
        h = 0.12 * (z1s[i] - z0s[i])
        w = _BOUNDARY_HALF_WIDTH
        for start, length in _circular_mask_runs(
            np.asarray(scar) >= constants.SCAR_THRESHOLD
        ):
            a0, a1 = 2 * np.pi * start / n, 2 * np.pi * (start + length) / n
            for za, zb in ((z0s[i], z0s[i] + h), (z1s[i] - h, z1s[i])):
                ra, rb = (1 + _OVERLAY_OFFSET) * radius([za, zb])
                add(
                    _band_quads(ra, rb, za, zb, a0, a1, length),
                    overlay["scar_outline"],
                    "scar_outline",
                    i,
                )
            if length < n:
                for a in (a0, a1):
                    add(
                        _band_quads(o0, o1, z0s[i], z1s[i], a - w, a + w, 1),
                        overlay["scar_outline"],
                        "scar_outline",
                        i,
                    )
    return Scene3D(
        quads=np.concatenate(quads),
        colours=np.concatenate(colours),
        kinds=kinds,
        ring=np.asarray(ring_of),
        sector=np.asarray(sector_of),
        band=np.stack([z0s, z1s], axis=1),
        levels=levels,
    )


def _draw_scene(ax, scene: Scene3D, label_segments: bool) -> Poly3DCollection:
    # Edges in the face colour close the anti-aliasing seams between quads.
    coll = Poly3DCollection(
        scene.quads, facecolors=scene.colours, edgecolors=scene.colours, linewidths=0.3
    )
    coll.set_gid("activation_map")
    ax.add_collection3d(coll)
    if label_segments and len(scene.band):
        top = int(np.argmax(scene.band[:, 1]))
        level = scene.levels[top]
        pts = scene.quads[(scene.ring == top) & (scene.sector >= 0)]
        r_top = float(np.hypot(pts[0, 2, 0], pts[0, 2, 1]))
        n = len(pts)
        seg = aha_segments(level, n)
        for edge in _segment_edges(level, n):
            k = int(edge + 0.5 * n / _SEGMENTS_PER_LEVEL[level])
            a = 2 * np.pi * (k + 0.5) / n
            r = 1.15 * r_top
            ax.text(
                r * np.cos(a), r * np.sin(a), scene.band[top, 1], str(seg[k]),
                fontsize=7,
            )  # fmt: skip
    z_lo, z_hi = scene.quads[..., 2].min(), scene.quads[..., 2].max()
    lim = 1.2 * LV_RADIUS_MM
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(z_lo, z_hi)
    ax.set_box_aspect((1, 1, max(0.4, (z_hi - z_lo) / (2 * lim))), zoom=1.2)
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    return coll


def activation_map_figure(
    rings: Sequence[RingData],
    tos_range: tuple[float, float] | None = None,
    title: str = "",
    base_at_high: bool = True,
    azimuths: Sequence[float] = (-60.0, 120.0),
) -> Figure:
    """Per-subject 3-D activation map, not saved.

    Every slice is a band on a truncated-ellipsoid LV shell at its long-axis
    height (`ring_heights`; base up), sector k at angle 2*pi*k/126, coloured
    by TOS (TOS_CMAP over `tos_range`: 17 ms to the cohort's upper range;
    NaN grey); scar sectors (>= 0.5) are outlined in SCAR_OUTLINE_COLOUR;
    AHA segment boundaries (6 per basal/mid ring, 4 per apical) are black
    strips, and the top ring carries its segment numbers. One row per TOS
    source (predicted, then true when the rings have it), one column per
    view azimuth. The quads come from `activation_map_scene`.
    """
    if not rings:
        raise ValueError("no slices to draw")
    lo, hi = tos_range or (constants.TOS_FLOOR_MS, _tos_upper(rings))
    sources = [("TOS", [r.tos_ms for r in rings])]
    if any(r.true_tos_ms is not None for r in rings):
        sources.append(("true TOS", [r.true_tos_ms for r in rings]))
    cols = len(azimuths)
    fig = plt.figure(figsize=(4.0 * cols + 1.2, 4.0 * len(sources)))
    fig.subplots_adjust(left=0.0, right=0.86, bottom=0.02, top=0.9, wspace=0.0)
    for row, (label, values) in enumerate(sources):
        scene = activation_map_scene(rings, values, (lo, hi), base_at_high)
        for col, azim in enumerate(azimuths):
            ax = fig.add_subplot(
                len(sources), cols, row * cols + col + 1, projection="3d"
            )
            _draw_scene(ax, scene, label_segments=col == 0)
            ax.view_init(elev=20, azim=azim)
            ax.set_title(f"{label} (azimuth {azim:g})", fontsize="medium")
            if col == 0:
                ax.set_zlabel("long axis (mm)", fontsize="small")
    cax = fig.add_axes((0.89, 0.2, 0.02, 0.6))
    mappable = ScalarMappable(norm=Normalize(lo, hi), cmap=_cmap(TOS_CMAP))
    fig.colorbar(mappable, cax=cax, label="TOS (ms)")
    if title:
        fig.suptitle(title)
    return fig


def plot_activation_map(
    rings: Sequence[RingData],
    path: str,
    tos_range: tuple[float, float] | None = None,
    title: str = "",
    base_at_high: bool = True,
) -> str:
    """Writes `activation_map_figure` as a PNG; returns `path`."""
    fig = activation_map_figure(rings, tos_range, title, base_at_high)
    return save_figure(fig, path)


PREDICTION_COLUMNS = (
    "subject_id",
    "slice_id",
    "slice_location",
    "sector",
    "tos_ms",
    "lma_probability",
    "combined_tos_ms",
)
OPTIONAL_COLUMNS = ("scar_fraction", "true_tos_ms")
TOS_COLUMNS = ("combined_tos_ms", "tos_ms")


def _float(cell: str) -> float:
    cell = (cell or "").strip()
    return float(cell) if cell else math.nan


def read_predictions_csv(
    path: str, tos_column: str = "combined_tos_ms"
) -> dict[str, list[RingData]]:
    """Rings per subject from a prediction CSV (the `lma_tf.serving.predict` format).

    One row per slice and sector (PREDICTION_COLUMNS, plus the optional
    OPTIONAL_COLUMNS); `tos_column` ("combined_tos_ms" or "tos_ms") becomes
    `RingData.tos_ms`. Missing sectors are NaN (grey in the figures); an
    optional column empty for a whole slice is None. Subjects and slices
    keep the file's order.

    Raises:
      ValueError: a required column is missing, a sector is out of 0..125
        or repeated, or a number does not parse.
    """
    if tos_column not in TOS_COLUMNS:
        raise ValueError(f"tos_column must be one of {TOS_COLUMNS}, got {tos_column!r}")
    n = constants.NUM_SECTORS
    slices: dict[tuple[str, str], dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        optional = [c for c in OPTIONAL_COLUMNS if c in reader.fieldnames]
        value_cols = ["tos_ms", "lma_probability", "combined_tos_ms", *optional]
        for line, row in enumerate(reader, start=2):
            key = (row["subject_id"], row["slice_id"])
            try:
                sector = int(row["sector"])
                values = {c: _float(row[c]) for c in value_cols}
                location = _float(row["slice_location"])
            except ValueError as e:
                raise ValueError(f"{path}:{line}: {e}") from None
            if not 0 <= sector < n:
                raise ValueError(f"{path}:{line}: sector {sector} not in 0..{n - 1}")
            s = slices.setdefault(
                key,
                {
                    "location": location,
                    "seen": np.zeros(n, bool),
                    **{c: np.full(n, np.nan) for c in value_cols},
                },
            )
            if s["seen"][sector]:
                raise ValueError(f"{path}:{line}: sector {sector} of {key} repeated")
            s["seen"][sector] = True
            for c in value_cols:
                s[c][sector] = values[c]

    def present(a: np.ndarray | None) -> np.ndarray | None:
        return a if a is not None and np.isfinite(a).any() else None

    out: dict[str, list[RingData]] = {}
    for (subject, slice_id), s in slices.items():
        out.setdefault(subject, []).append(
            RingData(
                slice_id=slice_id,
                location=None if math.isnan(s["location"]) else s["location"],
                tos_ms=s[tos_column],
                scar_fraction=present(s.get("scar_fraction")),
                true_tos_ms=present(s.get("true_tos_ms")),
                lma_probability=s["lma_probability"],
            )
        )
    return out


def safe_filename(text: str) -> str:
    """`text` with every run of characters unsafe in a file name made "_"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "subject"


def activation_maps_from_csv(
    predictions: str,
    output_dir: str,
    tos_column: str = "combined_tos_ms",
    tos_max_ms: float = 0.0,
    base_at_high: bool = True,
) -> list[str]:
    """3-D activation map + bullseye PNGs for every subject of a prediction CSV.

    Writes `{subject}_activation_map.png` and `{subject}_bullseye.png` in
    `output_dir`; the TOS colour scale is 17 ms to `tos_max_ms`, or (0) to
    the cohort's upper range (`tos_upper_range` over the file). Returns the
    paths written.
    """
    subjects = read_predictions_csv(predictions, tos_column)
    if not subjects:
        raise ValueError(f"{predictions}: no prediction rows")
    all_rings = [r for rings in subjects.values() for r in rings]
    top = tos_max_ms or _tos_upper(all_rings)
    tos_range = (constants.TOS_FLOOR_MS, float(top))
    paths = []
    for subject, rings in subjects.items():
        name = safe_filename(subject)
        title = f"{subject} ({tos_column})"
        paths.append(
            plot_activation_map(
                rings,
                os.path.join(output_dir, f"{name}_activation_map.png"),
                tos_range,
                title,
                base_at_high,
            )
        )
        paths.append(
            plot_bullseye(
                rings,
                os.path.join(output_dir, f"{name}_bullseye.png"),
                tos_range,
                title,
                base_at_high,
            )
        )
    return paths


COMMANDS = ("activation_map",)


def main(argv: list[str]) -> None:
    """absl entry point: `python -m lma_tf.viz.plots activation_map --predictions=...`."""
    from lma_tf.cli import quiet_logs

    quiet_logs()
    from absl import flags

    f = flags.FLAGS
    commands = argv[1:]
    if commands != ["activation_map"]:
        sys.exit(f"plots: error: expected one command of {COMMANDS}, got {commands}")
    try:
        paths = activation_maps_from_csv(
            f.predictions,
            f.output_dir,
            f.tos_column,
            f.tos_max_ms,
            f.base_at == "high",
        )
    except (OSError, ValueError) as e:
        sys.exit(f"plots: error: {e}")
    print(f"[plots] wrote {len(paths)} figures to {f.output_dir}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("predictions", None, "Prediction CSV (lma_tf.serving.predict).")
    flags.DEFINE_string("output_dir", "activation_maps", "Where the PNGs go.")
    flags.DEFINE_enum("tos_column", "combined_tos_ms", TOS_COLUMNS, "TOS to colour.")
    flags.DEFINE_float(
        "tos_max_ms", 0.0, "Top of the TOS colour scale (0: the cohort's maximum)."
    )
    flags.DEFINE_enum(
        "base_at", "high", ["high", "low"], "Which slice_location end is the base."
    )
    flags.mark_flags_as_required(["predictions"])


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
