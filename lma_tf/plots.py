"""Figures for evaluation and the demo: headless (Agg) PNGs, written atomically.

- `plot_strain_tos`: strain matrix with TOS curves and scar sectors.
- `plot_training_curves`: train vs validation curves per metric.
- `plot_comparison`: grouped bars of metrics across experiments.

Every figure is saved through `save_figure` (temporary name in the target
folder, then `os.replace`, so a reader never sees half a PNG) and closed.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lma_tf import constants  # noqa: E402

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
    folder = os.path.dirname(os.path.abspath(path))
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        fig.savefig(tmp, format=fmt, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
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
    sectors = np.arange(num_sectors)
    handles = []
    for key, values in (
        ("true", true_tos),
        ("pred", pred_tos),
        ("combined", combined_tos),
    ):
        tos = _sector_vector(f"{key}_tos", values, num_sectors)
        if tos is not None:
            label, style = _TOS_STYLES[key]
            (line,) = ax.plot(tos, sectors, label=label, **style)
            handles.append(line)

    scar = _sector_vector("scar_fraction", scar_fraction, num_sectors)
    if scar is not None:
        # A band just outside the right edge: x in axes units, y in sectors.
        for start, length in _runs(scar >= constants.SCAR_THRESHOLD):
            ax.add_patch(
                Rectangle(
                    (1.005, start - 0.5),
                    0.025,
                    length,
                    transform=ax.get_yaxis_transform(),
                    clip_on=False,
                    color=SCAR_COLOUR,
                )
            )
        handles.append(
            Patch(color=SCAR_COLOUR, label=f"scar (>= {constants.SCAR_THRESHOLD:g})")
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
