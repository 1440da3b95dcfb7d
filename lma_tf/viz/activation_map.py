"""Per-subject 3-D activation maps: the slices stacked as rings on an LV shell.

A clinician planning lead placement wants to see where on the ventricle the
late sectors are; the map puts every short-axis slice at its long-axis
height (`aha.ring_heights`, base up) as a band on a truncated-ellipsoid LV
shell, sector k at angle 2*pi*k/126 coloured by TOS, scar outlined and AHA
segment boundaries drawn where the sector orientation puts them (the same
default as `lma-tf report`, `orientation.DEFAULT`). `activation_maps_from_csv`
writes the map and the bullseye (`lma_tf.viz.bullseye`) of every subject of
a prediction CSV; the command is `lma-tf maps` (`lma_tf.cli.maps`). See docs/figures.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from lma_tf import constants, textsafe
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision import uncertainty
from lma_tf.decision.orientation import Orientation
from lma_tf.errors import UsageError
from lma_tf.serving import prediction_csv
from lma_tf.viz import aha, bullseye, figures
from lma_tf.viz import rings as rings_lib
from lma_tf.viz.rings import RingData

LV_RADIUS_MM = 25.0  # a typical end-diastolic LV radius, for the 3-D shell
# Overlays sit this far outside the surface (fraction of the radius), so the
# depth sort draws them over the sectors they mark on the visible side.
_OVERLAY_OFFSET = 0.03
_BOUNDARY_HALF_WIDTH = np.deg2rad(0.8)


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


def _lv_radius(z: np.ndarray, z_base: float, z_apex: float) -> np.ndarray:
    """Radius of a truncated ellipsoid: LV_RADIUS_MM at the base, 0 at the apex."""
    u = (z_base - np.asarray(z, np.float64)) / (z_base - z_apex)
    return LV_RADIUS_MM * np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0))


def _band_quads(r0, r1, z0, z1, a0, a1, n: int) -> np.ndarray:
    """n quads of a conical band between angles a0 and a1 (radians)."""
    a = np.linspace(a0, a1, n + 1)
    c, s = np.cos(a), np.sin(a)
    bottom = np.stack([r0 * c, r0 * s, np.full(n + 1, z0)], axis=1)
    top = np.stack([r1 * c, r1 * s, np.full(n + 1, z1)], axis=1)
    return np.stack([bottom[:-1], bottom[1:], top[1:], top[:-1]], axis=1)


def _circular_mask_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) runs of True on a ring; a run through sector 0 is one."""
    runs = figures.runs(mask)
    n = mask.size
    if len(runs) > 1 and runs[0][0] == 0 and sum(runs[-1]) == n:
        runs = [(runs[-1][0], runs[-1][1] + runs[0][1])] + runs[1:-1]
    return runs


class _QuadList:
    """The quads of a scene as they are added, with their colour and labels."""

    def __init__(self) -> None:
        self.quads: list[np.ndarray] = []
        self.colours: list[np.ndarray] = []
        self.kinds: list[str] = []
        self.ring: list[int] = []
        self.sector: list[int] = []

    def add(self, q: np.ndarray, rgba, kind: str, ring: int, sectors=None) -> None:
        self.quads.append(q)
        self.colours.append(np.broadcast_to(rgba, (len(q), 4)))
        self.kinds.extend([kind] * len(q))
        self.ring.extend([ring] * len(q))
        self.sector.extend([-1] * len(q) if sectors is None else list(sectors))

    def scene(self, band: np.ndarray, levels: list[str]) -> Scene3D:
        return Scene3D(
            quads=np.concatenate(self.quads),
            colours=np.concatenate(self.colours),
            kinds=self.kinds,
            ring=np.asarray(self.ring),
            sector=np.asarray(self.sector),
            band=band,
            levels=levels,
        )


def _add_shell(out: _QuadList, heights, z0s, z1s, z_apex, radius: Callable) -> None:
    """Light-grey shell from the apex to the lowest band, then between bands."""
    shell = figures.rgba("0.88")
    order = np.argsort(heights)
    stops = [(z_apex, z0s[order[0]])]
    stops += [(z1s[a], z0s[b]) for a, b in zip(order[:-1], order[1:])]
    for lo, hi in stops:
        if hi - lo <= 1e-6:
            continue
        zs = np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / 3.0)) + 1))
        for za, zb in zip(zs[:-1], zs[1:]):
            quads = _band_quads(radius(za), radius(zb), za, zb, 0, 2 * np.pi, 63)
            out.add(quads, shell, "shell", -1)


def _add_scar_outline(
    out: _QuadList, i: int, scar: np.ndarray, z0: float, z1: float, radius: Callable
) -> None:
    """Top and bottom edges of each scar run of ring i, and its two ends."""
    colour = figures.rgba(figures.SCAR_OUTLINE_COLOUR)
    n = np.asarray(scar).size
    o0, o1 = (1 + _OVERLAY_OFFSET) * radius(z0), (1 + _OVERLAY_OFFSET) * radius(z1)
    h = 0.12 * (z1 - z0)
    w = _BOUNDARY_HALF_WIDTH
    for start, length in _circular_mask_runs(
        np.asarray(scar) >= constants.SCAR_THRESHOLD
    ):
        a0, a1 = 2 * np.pi * start / n, 2 * np.pi * (start + length) / n
        for za, zb in ((z0, z0 + h), (z1 - h, z1)):
            ra, rb = (1 + _OVERLAY_OFFSET) * radius([za, zb])
            out.add(
                _band_quads(ra, rb, za, zb, a0, a1, length), colour, "scar_outline", i
            )
        if length < n:
            for a in (a0, a1):
                quads = _band_quads(o0, o1, z0, z1, a - w, a + w, 1)
                out.add(quads, colour, "scar_outline", i)


def _add_ring(
    out: _QuadList,
    i: int,
    values: np.ndarray | None,
    level: str,
    z0: float,
    z1: float,
    radius: Callable,
    colour: Callable,
    orientation: Orientation | None = None,
) -> None:
    """Ring i's sectors coloured by `values`, then its AHA segment boundaries."""
    n = constants.NUM_SECTORS if values is None else np.asarray(values).size
    v = np.full(n, np.nan) if values is None else np.asarray(values, np.float64)
    r0, r1 = radius(z0), radius(z1)
    rgba = colour(np.ma.masked_invalid(v))
    out.add(_band_quads(r0, r1, z0, z1, 0, 2 * np.pi, n), rgba, "sector", i, range(n))
    o0, o1 = (1 + _OVERLAY_OFFSET) * r0, (1 + _OVERLAY_OFFSET) * r1
    black = figures.rgba("black")
    w = _BOUNDARY_HALF_WIDTH
    for edge in aha.segment_edges(level, n, orientation):
        a = 2 * np.pi * edge / n
        quads = _band_quads(o0, o1, z0, z1, a - w, a + w, 1)
        out.add(quads, black, "aha_boundary", i)


def activation_map_scene(
    rings: Sequence[RingData],
    values: Sequence[np.ndarray | None],
    tos_range: tuple[float, float],
    base_at_high: bool = True,
    orientation: Orientation | Sequence[Orientation | None] | None = None,
) -> Scene3D:
    """Builds the quads of a 3-D activation map (see `activation_map_figure`).

    AHA boundaries follow `orientation` (one, or one per ring; None:
    `orientation.DEFAULT`).

    Ring i is a band at height `ring_heights(...)[i]` (0.8 x the slice
    spacing tall) on a truncated ellipsoid (LV_RADIUS_MM at the base plane,
    half a spacing above the top slice; apex 1.2 spacings below the lowest);
    its sector k spans angles 2*pi*k/n .. 2*pi*(k+1)/n and is coloured by
    `values[i][k]` on TOS_CMAP over `tos_range` (NaN / None: grey). Gaps
    between bands and the apical cap are a light-grey shell.
    """
    heights = aha.ring_heights(rings, base_at_high)
    levels = aha.slice_levels(heights)
    spacing = aha.spacing(heights) if np.ptp(heights) > 0 else 8.0
    z0s, z1s = heights - 0.4 * spacing, heights + 0.4 * spacing
    z_base = heights.max() + 0.6 * spacing
    z_apex = heights.min() - 1.2 * spacing
    cmap = figures.colormap(figures.TOS_CMAP, missing=True)
    norm = Normalize(*tos_range)

    def radius(z):
        return _lv_radius(np.asarray(z, np.float64), z_base, z_apex)

    def colour(v):
        return cmap(norm(v))

    orients = aha.ring_orientations(orientation, len(rings))
    out = _QuadList()
    _add_shell(out, heights, z0s, z1s, z_apex, radius)
    for i, (v, level) in enumerate(zip(values, levels)):
        _add_ring(out, i, v, level, z0s[i], z1s[i], radius, colour, orients[i])
        if rings[i].scar_fraction is not None:
            _add_scar_outline(out, i, rings[i].scar_fraction, z0s[i], z1s[i], radius)
    return out.scene(np.stack([z0s, z1s], axis=1), levels)


def _label_segments(ax: Axes, scene: Scene3D, orientations: list) -> None:
    """Segment numbers of the top ring, just outside it."""
    top = int(np.argmax(scene.band[:, 1]))
    level = scene.levels[top]
    pts = scene.quads[(scene.ring == top) & (scene.sector >= 0)]
    r_top = float(np.hypot(pts[0, 2, 0], pts[0, 2, 1]))
    n = len(pts)
    seg = aha.aha_segments(level, n, orientations[top])
    for edge in aha.segment_edges(level, n, orientations[top]):
        k = int(edge + 0.5 * n / aha.SEGMENTS_PER_LEVEL[level]) % n
        a = 2 * np.pi * (k + 0.5) / n
        r = 1.15 * r_top
        ax.text(
            r * np.cos(a), r * np.sin(a), scene.band[top, 1], str(seg[k]), fontsize=7
        )


def _draw_scene(
    ax: Axes, scene: Scene3D, label_segments: bool, orientations: list
) -> Poly3DCollection:
    # Edges in the face colour close the anti-aliasing seams between quads.
    coll = Poly3DCollection(
        scene.quads, facecolors=scene.colours, edgecolors=scene.colours, linewidths=0.3
    )
    coll.set_gid("activation_map")
    ax.add_collection3d(coll)
    if label_segments and len(scene.band):
        _label_segments(ax, scene, orientations)
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
    orientation: Orientation | Sequence[Orientation | None] | None = None,
) -> Figure:
    """Per-subject 3-D activation map, not saved.

    Every slice is a band on a truncated-ellipsoid LV shell at its long-axis
    height (`ring_heights`; base up), sector k at angle 2*pi*k/126, coloured
    by TOS (TOS_CMAP over `tos_range`: 17 ms to the cohort's upper range;
    NaN grey); scar sectors (>= 0.5) are outlined in SCAR_OUTLINE_COLOUR;
    AHA segment boundaries (6 per basal/mid ring, 4 per apical) are black
    strips, and the top ring carries its segment numbers. One row per TOS
    source (predicted, then true when the rings have it), one column per
    view azimuth. The quads come from `activation_map_scene`; segments
    follow `orientation` (one, or one per ring; None: `orientation.DEFAULT`).
    """
    if not rings:
        raise ValueError("no slices to draw")
    lo, hi = tos_range or rings_lib.tos_range(rings)
    sources = [("TOS", [r.tos_ms for r in rings])]
    if any(r.true_tos_ms is not None for r in rings):
        sources.append(("true TOS", [r.true_tos_ms for r in rings]))
    orients = aha.ring_orientations(orientation, len(rings))
    cols = len(azimuths)
    fig = figures.new_figure((4.0 * cols + 1.2, 4.0 * len(sources)))
    fig.subplots_adjust(left=0.0, right=0.86, bottom=0.02, top=0.9, wspace=0.0)
    for row, (label, values) in enumerate(sources):
        scene = activation_map_scene(rings, values, (lo, hi), base_at_high, orients)
        for col, azim in enumerate(azimuths):
            ax = fig.add_subplot(
                len(sources), cols, row * cols + col + 1, projection="3d"
            )
            _draw_scene(ax, scene, col == 0, orients)
            ax.view_init(elev=20, azim=azim)
            ax.set_title(f"{label} (azimuth {azim:g})", fontsize="medium")
            if col == 0:
                ax.set_zlabel("long axis (mm)", fontsize="small")
    cax = fig.add_axes((0.89, 0.2, 0.02, 0.6))
    cmap = figures.colormap(figures.TOS_CMAP, missing=True)
    fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap), cax=cax, label="TOS (ms)")
    if title:
        fig.suptitle(title)
    return fig


def plot_activation_map(
    rings: Sequence[RingData],
    path: str,
    tos_range: tuple[float, float] | None = None,
    title: str = "",
    base_at_high: bool = True,
    orientation: Orientation | Sequence[Orientation | None] | None = None,
) -> str:
    """Writes `activation_map_figure` as a PNG; returns `path`."""
    fig = activation_map_figure(
        rings, tos_range, title, base_at_high, orientation=orientation
    )
    return figures.save_figure(fig, path)


def read_oriented_rings(
    predictions: str,
    tos_column: str = prediction_csv.COMBINED_TOS_MS,
    orientation: Orientation = orientation_lib.DEFAULT,
) -> dict[str, tuple[list[RingData], list[Orientation]]]:
    """subject -> (rings, one orientation per ring) of a prediction CSV.

    A slice's own `orientation_*` columns win; slices without them take
    `orientation` (the command's flags), as in `lma-tf report`.

    Raises:
      ValueError: a bad `tos_column` or bad orientation cells.
      prediction_csv.PredictionCsvError: the file is not a prediction CSV.
    """
    rings_lib.check_tos_column(tos_column)
    subjects = prediction_csv.by_subject(prediction_csv.read(predictions))
    return {
        subject: (
            [rings_lib.ring_from_prediction(s, tos_column) for s in slices],
            [uncertainty.slice_orientation(s) or orientation for s in slices],
        )
        for subject, slices in subjects.items()
    }


def activation_maps_from_csv(
    predictions: str,
    output_dir: str,
    tos_column: str = prediction_csv.COMBINED_TOS_MS,
    tos_max_ms: float = 0.0,
    base_at_high: bool = True,
    orientation: Orientation = orientation_lib.DEFAULT,
) -> list[str]:
    """3-D activation map + bullseye PNGs for every subject of a prediction CSV.

    Writes `{subject}_activation_map.png` and `{subject}_bullseye.png` in
    `output_dir`, the subject id made a safe file name (`textsafe.safe_name`,
    so an id like `../x` cannot write outside it); the TOS colour scale is
    17 ms to `tos_max_ms`, or (0) to the cohort's upper range
    (`rings.tos_upper_range` over the file). Sectors go to AHA segments by
    each slice's `orientation_*` columns where the CSV has them, else by
    `orientation` (`read_oriented_rings`). Returns the paths written.

    Raises:
      UsageError: the file has no prediction rows, or bad orientation cells.
      prediction_csv.PredictionCsvError: it is not a prediction CSV.
    """
    try:
        subjects = read_oriented_rings(predictions, tos_column, orientation)
    except prediction_csv.PredictionCsvError:
        raise
    except ValueError as e:  # bad orientation cells
        raise UsageError(f"{predictions}: {e}") from None
    if not subjects:
        raise UsageError(f"{predictions}: no prediction rows")
    all_rings = [r for rings, _ in subjects.values() for r in rings]
    top = tos_max_ms or rings_lib.tos_range(all_rings)[1]
    tos_range = (constants.TOS_FLOOR_MS, float(top))
    paths = []
    for subject, (rings, orients) in subjects.items():
        title = f"{textsafe.clean(subject)} ({tos_column})"
        map_path = figures.output_path(output_dir, subject, "_activation_map.png")
        paths.append(
            plot_activation_map(
                rings, map_path, tos_range, title, base_at_high, orients
            )
        )
        eye_path = figures.output_path(output_dir, subject, "_bullseye.png")
        paths.append(
            bullseye.plot_bullseye(
                rings, eye_path, tos_range, title, base_at_high, orients
            )
        )
    return paths
