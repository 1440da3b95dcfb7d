"""The strain matrix of one slice (sectors x time) with its TOS curves and scar.

Evaluation draws one per slice to show where the regressed and combined TOS
leave the true one; the Grad-CAM overlays (`gradcam_overlay`) reuse the same
axes and helpers so that both read alike: x = time in ms (frame j centred
at (j + 1) x period, so TOS = 17 ms sits on the first frame), y = sector
with sector 0 at the bottom, colours fixed to -0.2..+0.2 (blue =
shortening) so that slices compare. See docs/figures.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from lma_tf import constants
from lma_tf.viz import figures

# name -> (legend label, plot kwargs) of the TOS curves.
TOS_STYLES = {
    "true": ("true TOS", dict(color="black", linestyle="-", linewidth=2.0)),
    "pred": ("regressed TOS", dict(color="tab:green", linestyle="--", linewidth=2.0)),
    "combined": (
        "combined TOS",
        dict(color="darkorange", linestyle=":", linewidth=2.5),
    ),
}


def strain_extent(
    num_sectors: int, num_frames: int, period: float
) -> tuple[float, float, float, float]:
    """imshow extent of a strain matrix: frames at (j + 1) x period ms."""
    return (0.5 * period, (num_frames + 0.5) * period, -0.5, num_sectors - 0.5)


def draw_strain_image(ax, strain: np.ndarray, frame_period_ms: float):
    """The (sectors, frames) strain on `ax` in ms, sector 0 at the bottom.

    Returns (image, extent), the extent as `strain_extent` gives it.
    """
    num_sectors, num_frames = strain.shape
    extent = strain_extent(num_sectors, num_frames, frame_period_ms)
    image = ax.imshow(
        strain,
        cmap=figures.STRAIN_CMAP,
        vmin=-figures.STRAIN_LIMIT,
        vmax=figures.STRAIN_LIMIT,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=extent,
    )
    return image, extent


def check_strain(strain: np.ndarray) -> np.ndarray:
    """`strain` as a float (sectors, frames) array; ValueError otherwise."""
    strain = np.asarray(strain, dtype=np.float64)
    if strain.ndim != 2:
        raise ValueError(f"strain must be (sectors, frames), got {strain.shape}")
    return strain


def draw_tos_lines(
    ax: Axes,
    curves: Sequence[tuple[str, np.ndarray | None]],
    num_sectors: int,
) -> list[Line2D]:
    """Draws each (style name, TOS) curve as x = TOS ms at y = sector.

    Curves that are None are skipped. Returns the legend handles.
    """
    sectors = np.arange(num_sectors)
    handles = []
    for key, values in curves:
        tos = figures.sector_vector(f"{key}_tos", values, num_sectors)
        if tos is not None:
            label, style = TOS_STYLES[key]
            (line,) = ax.plot(tos, sectors, label=label, **style)
            handles.append(line)
    return handles


def draw_scar_band(
    ax: Axes, scar_fraction, num_sectors: int, width: float, label: str
) -> list[Patch]:
    """Marks scar sectors (>= threshold) by a band just outside the right edge.

    x is in axes units, y in sectors. Returns the legend handle, if any.
    """
    scar = figures.sector_vector("scar_fraction", scar_fraction, num_sectors)
    if scar is None:
        return []
    for start, length in figures.runs(scar >= constants.SCAR_THRESHOLD):
        ax.add_patch(
            Rectangle(
                (1.005, start - 0.5),
                width,
                length,
                transform=ax.get_yaxis_transform(),
                clip_on=False,
                color=figures.SCAR_COLOUR,
            )
        )
    return [Patch(color=figures.SCAR_COLOUR, label=label)]


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
    strain = check_strain(strain)
    num_sectors, num_frames = strain.shape
    fig, (ax,) = figures.grid(1, panel=(8.0, 5.0))
    image, extent = draw_strain_image(ax, strain, float(frame_period_ms))
    handles = draw_tos_lines(
        ax,
        [("true", true_tos), ("pred", pred_tos), ("combined", combined_tos)],
        num_sectors,
    )
    handles += draw_scar_band(
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
    return figures.save_figure(fig, path)
