"""Grad-CAM maps overlaid on a slice's strain matrix, one panel per map.

The first panel is the strain as `strain.strain_tos_figure` draws it; every
further panel shows the strain in grey under one explanation map (jet, fixed
0..1, so maps compare across heads and experiments) with the explained
model's TOS, the sector whose score is explained and the scored LMA run.
`lma_tf.viz.explain` builds the panels from trained runs. See
docs/figures.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lma_tf import constants
from lma_tf.viz import figures
from lma_tf.viz import strain as strain_fig

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


def circular_runs(sectors: Sequence[int], num_sectors: int) -> list[tuple[int, int]]:
    """(start, length) runs of a set of ring sectors, split at the ring's end."""
    mask = np.zeros(num_sectors, bool)
    mask[np.asarray(list(sectors), dtype=int) % num_sectors] = True
    return figures.runs(mask)


def _draw_strain_panel(ax: Axes, strain, true_tos, scar_fraction, common: dict):
    num_sectors = strain.shape[0]
    image = ax.imshow(
        strain,
        cmap=figures.STRAIN_CMAP,
        vmin=-figures.STRAIN_LIMIT,
        vmax=figures.STRAIN_LIMIT,
        **common,
    )
    handles = strain_fig.draw_tos_lines(ax, [("true", true_tos)], num_sectors)
    handles += strain_fig.draw_scar_band(ax, scar_fraction, num_sectors, 0.03, "scar")
    ax.set_title("strain Ecc")
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="x-small")
    return image


def _draw_cam_panel(ax: Axes, strain, p: CamPanel, true_tos, common: dict):
    num_sectors = strain.shape[0]
    limit = figures.STRAIN_LIMIT
    ax.imshow(strain, cmap="gray", vmin=-limit, vmax=limit, **common)
    cam_image = ax.imshow(
        np.asarray(p.cam, dtype=np.float64),
        cmap=CAM_CMAP,
        vmin=0.0,
        vmax=1.0,
        alpha=CAM_ALPHA,
        **common,
    )
    cam_image.set_gid("cam")
    handles = strain_fig.draw_tos_lines(
        ax,
        [("true", true_tos), ("pred", p.pred_tos), ("combined", p.combined_tos)],
        num_sectors,
    )
    if p.target_sector is not None:
        line = ax.axhline(p.target_sector, color="white", linestyle=":", linewidth=1.5)
        line.set_gid("target_sector")
    run = [] if p.run is None else p.run
    for start, length in circular_runs(run, num_sectors):
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
    return cam_image


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
    strain = strain_fig.check_strain(strain)
    num_sectors, num_frames = strain.shape
    for p in panels:
        if np.shape(p.cam) != strain.shape:
            raise ValueError(
                f"cam of {p.title!r} has shape {np.shape(p.cam)}, "
                f"expected {strain.shape} (crop it like the strain)"
            )
    extent = strain_fig.strain_extent(num_sectors, num_frames, float(frame_period_ms))
    fig, axes = figures.grid(1 + len(panels), max_cols=max_cols, panel=(4.2, 3.6))
    common = dict(origin="lower", aspect="auto", interpolation="nearest", extent=extent)
    strain_image = _draw_strain_panel(axes[0], strain, true_tos, scar_fraction, common)
    fig.colorbar(strain_image, ax=axes[0], pad=0.08, label="Ecc")
    cam_image = None
    for ax, p in zip(axes[1:], panels):
        cam_image = _draw_cam_panel(ax, strain, p, true_tos, common)
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
    return figures.save_figure(fig, path)
