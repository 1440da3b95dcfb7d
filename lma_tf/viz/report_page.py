"""The one-page pacing report of one subject (report.png).

Top: the research-use banner, the subject and the orientation convention.
Middle, left to right: the bullseye of the median combined TOS per AHA
segment with the ranked targets outlined (thick: first, thin: the next two;
hatched: low confidence), the scar bullseye, the 3-D activation map with
the segment boundaries of the orientation, and the strain matrix of the
slice through the first target (only when the raw strain is given).
Bottom: the ranked targets with their reasons and the excluded segments
with theirs. The numbers come from `lma_tf.decision.report`; see
docs/decision.md.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from lma_tf import constants, textsafe
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision import targets
from lma_tf.decision.orientation import Orientation
from lma_tf.decision.report import BANNER, SubjectResult
from lma_tf.viz import activation_map, bullseye, figures, strain
from lma_tf.viz.rings import RingData

DPI = 80
_MAX_EXCLUDED_LINES = 16
_MAX_TARGET_LINES = 4
_BOUNDARY_HALF_WIDTH = np.deg2rad(0.8)


def _segment_values(result: SubjectResult, field: str) -> np.ndarray:
    values = [getattr(s, field) for s in result.segments]
    return np.array([np.nan if v is None else v for v in values], np.float64)


def _draw_tos_bullseye(
    fig: Figure, ax: Axes, result: SubjectResult, tos_range: tuple[float, float]
) -> None:
    values = _segment_values(result, "tos_median_ms")
    coll = bullseye.draw_bullseye(ax, values, figures.TOS_CMAP, *tos_range, ".0f")
    paths = coll.get_paths()
    for s in result.segments:
        if s.imaged and s.low_confidence:
            ax.add_patch(
                PathPatch(
                    paths[s.segment - 1],
                    fill=False,
                    hatch="///",
                    lw=0,
                    edgecolor="0.35",
                )
            )
    for t in result.decision.targets[:3]:
        ax.add_patch(
            PathPatch(
                paths[t.segment - 1],
                fill=False,
                edgecolor="black",
                linewidth=4.0 if t.rank == 1 else 2.0,
                gid=f"target{t.rank}",
            )
        )
    ax.set_title(
        "median combined TOS (ms)\nthick: target 1, thin: 2-3, hatched: low conf.",
        fontsize=9,
    )
    fig.colorbar(coll, ax=ax, shrink=0.6)


def _draw_scar_bullseye(fig: Figure, ax: Axes, result: SubjectResult) -> None:
    values = _segment_values(result, "scar_fraction")
    if not np.isfinite(values).any():
        ax.text(0.5, 0.5, "no scar data", ha="center", va="center", fontsize=10)
        ax.axis("off")
        ax.set_title("scar fraction", fontsize=9)
        return
    coll = bullseye.draw_bullseye(ax, values, figures.SCAR_CMAP, 0.0, 1.0, ".2f")
    sources = {s.scar_source for s in result.segments if s.scar_source}
    ax.set_title(f"scar fraction ({', '.join(sorted(sources))})", fontsize=9)
    fig.colorbar(coll, ax=ax, shrink=0.6)


def _rings(result: SubjectResult) -> list[RingData]:
    return [
        RingData(s.slice_id, s.slice_location, s.combined_tos_ms, s.scar_fraction)
        for s in result.slices
    ]


def _oriented_scene(
    scene: activation_map.Scene3D, orientations: Sequence[Orientation]
) -> activation_map.Scene3D:
    """`scene` with ring i's AHA boundary strips where `orientations[i]` puts them."""
    kinds = np.asarray(scene.kinds)
    keep = kinds != "aha_boundary"
    quads, colours = [scene.quads[keep]], [scene.colours[keep]]
    new_kinds, rings = list(kinds[keep]), [scene.ring[keep]]
    black = figures.rgba("black")
    w = _BOUNDARY_HALF_WIDTH
    for i, (level, orientation) in enumerate(zip(scene.levels, orientations)):
        ring = scene.quads[(kinds == "sector") & (scene.ring == i)]
        n = len(ring)
        r0 = 1.03 * float(np.hypot(*ring[0, 0, :2]))
        r1 = 1.03 * float(np.hypot(*ring[0, 3, :2]))
        z0, z1 = scene.band[i]
        for edge in orientation.segment_edges(level, n):
            a = np.array([-w, w, w, -w]) + 2 * np.pi * edge / n
            r = np.array([r0, r0, r1, r1])
            z = np.array([z0, z0, z1, z1])
            quads.append(np.stack([r * np.cos(a), r * np.sin(a), z], axis=1)[None])
            colours.append(black[None])
            new_kinds.append("aha_boundary")
            rings.append(np.array([i]))
    sector = np.concatenate(
        [scene.sector[keep], np.full(len(new_kinds) - keep.sum(), -1)]
    )
    return activation_map.Scene3D(
        np.concatenate(quads),
        np.concatenate(colours),
        new_kinds,
        np.concatenate(rings),
        sector,
        scene.band,
        scene.levels,
    )


def _draw_3d(
    ax, result: SubjectResult, orientation: Orientation, base_at_high: bool, tos_range
) -> None:
    rings = _rings(result)
    scene = activation_map.activation_map_scene(
        rings, [r.tos_ms for r in rings], tos_range, base_at_high
    )
    orientations = [s.orientation or orientation for s in result.slices]
    scene = _oriented_scene(scene, orientations)
    coll = Poly3DCollection(
        scene.quads, facecolors=scene.colours, edgecolors=scene.colours, linewidths=0.3
    )
    coll.set_gid("activation_map")
    ax.add_collection3d(coll)
    top = int(np.argmax(scene.band[:, 1]))
    level = scene.levels[top]
    first = {"basal": 1, "mid": 7, "apical": 13}[level]
    count = 4 if level == "apical" else 6
    r = 1.25 * activation_map.LV_RADIUS_MM
    for seg in range(first, first + count):
        a = 2 * np.pi * orientations[top].segment_centre(seg) / constants.NUM_SECTORS
        ax.text(r * np.cos(a), r * np.sin(a), scene.band[top, 1], str(seg), fontsize=7)
    lim = 1.2 * activation_map.LV_RADIUS_MM
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(scene.quads[..., 2].min(), scene.quads[..., 2].max())
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.view_init(elev=20, azim=-60)
    ax.set_title("3-D activation map (combined TOS)", fontsize=9)


def _target_slice(
    result: SubjectResult, strains: Mapping, orientation: Orientation
) -> tuple | None:
    """(slice, level, sector mask) of the slice through target 1 with strain."""
    top = result.decision.recommended
    if top is None:
        return None
    level = orientation_lib.level_of(top.segment)
    best = None
    for s, lv in zip(result.slices, result.levels):
        if lv != level or s.slice_id not in strains:
            continue
        o = s.orientation or orientation
        mask = o.sector_segments(lv, s.combined_tos_ms.size) == top.segment
        tos = float(np.nanmedian(s.combined_tos_ms[mask]))
        if best is None or tos > best[0]:
            best = (tos, s, lv, mask)
    return None if best is None else best[1:]


def _draw_strain(ax: Axes, result: SubjectResult, found: tuple, strains: Mapping):
    """The strain matrix of the target slice `found` (`_target_slice`)."""
    s, level, mask = found
    matrix, period = strains[s.slice_id]
    matrix = strain.check_strain(matrix)
    n = matrix.shape[0]
    _, extent = strain.draw_strain_image(ax, matrix, float(period))
    for start, length in figures.runs(mask):
        ax.axhspan(start - 0.5, start + length - 0.5, color="black", alpha=0.15)
    curves = [
        ("true", s.true_tos_ms),
        ("pred", s.tos_ms),
        ("combined", s.combined_tos_ms),
    ]
    handles = strain.draw_tos_lines(ax, curves, n)
    handles += strain.draw_scar_band(ax, s.scar_fraction, n, 0.03, "scar")
    ax.legend(handles=handles, loc="upper right", fontsize=6, framealpha=0.8)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("time (ms)", fontsize=8)
    ax.set_ylabel("sector", fontsize=8)
    seg = result.decision.recommended.segment
    ax.set_title(
        f"strain, slice {textsafe.clean(s.slice_id)} ({level})\nsegment {seg} shaded",
        fontsize=9,
    )
    return True


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _decision_text(result: SubjectResult) -> tuple[str, str]:
    d = result.decision
    left = textwrap.wrap(f"Recommendation: {d.summary()}", 104, subsequent_indent="  ")
    left += ["", "Ranked pacing targets (best first):"]
    ties = {t.segment for t in d.near_ties}
    for t in d.targets[:_MAX_TARGET_LINES]:
        tie = f" (near-tie of 1: at most {targets.NEAR_TIE_MS:g} ms earlier)"
        left.append(
            f" {t.rank}. segment {t.segment:>2} {t.name}"
            + (tie if t.segment in ties else "")
        )
        left += textwrap.wrap(
            t.reason, 104, initial_indent="    ", subsequent_indent="    ", max_lines=2
        )
    if len(d.targets) > _MAX_TARGET_LINES:
        left.append(f" ... {len(d.targets) - _MAX_TARGET_LINES} more in report.json")
    if not d.targets:
        left.append(" none")
    q = result.quality()
    if q is not None:
        left += [
            "",
            f"Labelled: true target {q['true_target']}; top-1 {q['top1']}, "
            f"top-2 {q['top2']}, adjacent {q['adjacent']}",
        ]
    right = ["Excluded segments:"]
    for e in d.excluded[:_MAX_EXCLUDED_LINES]:
        right.append(_cut(f" {e.segment:>2} {e.name}: {'; '.join(e.reasons)}", 112))
    return "\n".join(left), "\n".join(right)


def report_figure(
    result: SubjectResult,
    orientation: Orientation = orientation_lib.DEFAULT,
    base_at_high: bool = True,
    tos_range: tuple[float, float] | None = None,
    strains: Mapping[str, tuple[np.ndarray, float]] | None = None,
) -> Figure:
    """The report page of one analysed subject, not saved.

    `strains` maps slice_id -> (strain matrix (126, F), frame period ms);
    without the target slice's strain the strain panel is left out.
    """
    top = max((np.nanmax(s.combined_tos_ms) for s in result.slices), default=0.0)
    lo, hi = tos_range or (
        constants.TOS_FLOOR_MS,
        max(top, constants.TOS_FLOOR_MS + 10),
    )
    fig = figures.new_figure((16.0, 10.0))
    fig.subplots_adjust(left=0.03, right=0.98, top=0.84, bottom=0.02)
    grid = fig.add_gridspec(2, 4, height_ratios=(4.4, 2.8), hspace=0.25, wspace=0.25)
    fig.text(
        0.5,
        0.975,
        BANNER,
        ha="center",
        va="top",
        fontsize=14,
        color="white",
        weight="bold",
        bbox={"facecolor": "firebrick", "edgecolor": "none"},
    )
    levels = ", ".join(
        f"{s.slice_id}: {lv}" for s, lv in zip(result.slices, result.levels)
    )
    members = max(s.num_members for s in result.slices)
    fig.text(
        0.5,
        0.93,
        f"{textsafe.clean(result.subject_id)}: {len(result.slices)} slices "
        f"({textsafe.clean(_cut(levels, 120))}); ensemble of {members}",
        ha="center",
        va="top",
        fontsize=11,
    )
    fig.text(
        0.5,
        0.9,
        "Orientation: " + orientation.describe(),
        ha="center",
        va="top",
        fontsize=8,
    )
    _draw_tos_bullseye(fig, fig.add_subplot(grid[0, 0]), result, (lo, hi))
    _draw_scar_bullseye(fig, fig.add_subplot(grid[0, 1]), result)
    found = _target_slice(result, strains or {}, orientation)
    ax3d = fig.add_subplot(grid[0, 2] if found else grid[0, 2:], projection="3d")
    _draw_3d(ax3d, result, orientation, base_at_high, (lo, hi))
    if found:
        _draw_strain(fig.add_subplot(grid[0, 3]), result, found, strains or {})
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    left, right = _decision_text(result)
    text.text(0.0, 1.0, left, family="monospace", fontsize=8, va="top")
    text.text(0.53, 1.0, right, family="monospace", fontsize=7.5, va="top")
    return fig


def plot_report_page(
    result: SubjectResult,
    path: str,
    orientation: Orientation = orientation_lib.DEFAULT,
    base_at_high: bool = True,
    tos_range: tuple[float, float] | None = None,
    strains: Mapping[str, tuple[np.ndarray, float]] | None = None,
) -> str:
    """Writes `report_figure` as a PNG; returns `path`."""
    fig = report_figure(result, orientation, base_at_high, tos_range, strains)
    return figures.save_figure(fig, path, dpi=DPI)
