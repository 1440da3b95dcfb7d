"""The AHA 16-segment model: which segment each sector of each slice belongs to.

Clinicians place pacing leads by AHA segment, so the activation maps report
TOS per segment as well as per sector. A slice is basal, mid or apical by
where it sits on the covered long axis (`slice_levels`, from the slice
locations); within a ring, an orientation
(`lma_tf.decision.orientation.Orientation`) says which segment each sector
falls in. Without one, the maps and the report use the same default,
`orientation.DEFAULT` (the anterior RV insertion at the start of sector 0,
sectors counter-clockwise seen from the apex). See docs/figures.md and
docs/decision.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lma_tf import constants
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation
from lma_tf.viz.rings import RingData

LEVELS = ("basal", "mid", "apical")
NUM_AHA_SEGMENTS = 16
SECTORS_PER_SEGMENT = constants.NUM_SECTORS // 6  # 21: basal and mid rings
SEGMENTS_PER_LEVEL = {"basal": 6, "mid": 6, "apical": 4}
FIRST_SEGMENT = {"basal": 1, "mid": 7, "apical": 13}


def aha_segments(
    level: str,
    num_sectors: int = constants.NUM_SECTORS,
    orientation: Orientation | None = None,
) -> np.ndarray:
    """(num_sectors,) AHA segment number (1-16) of each sector of a ring.

    Each sector goes to the segment its centre's anatomical angle falls in
    under `orientation` (None: `orientation.DEFAULT`); basal (1-6) and mid
    (7-12) rings have 6 segments of 21 sectors, the apical ring (13-16) 4
    of 31.5.
    """
    if level not in SEGMENTS_PER_LEVEL:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return (orientation or orientation_lib.DEFAULT).sector_segments(level, num_sectors)


def segment_edges(
    level: str,
    num_sectors: int = constants.NUM_SECTORS,
    orientation: Orientation | None = None,
) -> list:
    """Segment boundaries of a ring, in (fractional) sector units, ascending."""
    return (orientation or orientation_lib.DEFAULT).segment_edges(level, num_sectors)


def ring_orientations(
    orientation: Orientation | Sequence[Orientation | None] | None, count: int
) -> list[Orientation]:
    """One orientation per ring: a single one repeated, None -> the default.

    Raises:
      ValueError: a sequence of the wrong length.
    """
    if orientation is None or isinstance(orientation, Orientation):
        return [orientation or orientation_lib.DEFAULT] * count
    out = [o or orientation_lib.DEFAULT for o in orientation]
    if len(out) != count:
        raise ValueError(f"{len(out)} orientations for {count} rings")
    return out


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


def spacing(heights: np.ndarray) -> float:
    """Median distance between distinct ring heights (1 with a single height)."""
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
    half = 0.5 * spacing(h)
    lo, hi = h.min() - half, h.max() + half
    third = np.floor(3.0 * (h - lo) / (hi - lo) + 1e-9).clip(0, 2).astype(int)
    return [("apical", "mid", "basal")[t] for t in third]


def aha_segment_values(
    rings: Sequence[RingData],
    values: Sequence[np.ndarray | None],
    levels: Sequence[str] | None = None,
    orientation: Orientation | Sequence[Orientation | None] | None = None,
) -> np.ndarray:
    """(16,) mean of `values` per AHA segment (index 0 = segment 1); NaN if none.

    `values[i]` holds ring i's 126 sector values (None or NaN: not counted);
    `levels` defaults to `slice_levels(ring_heights(rings))`; `orientation`
    as for `aha_segments`, or one per ring (`ring_orientations`).
    """
    if levels is None:
        levels = slice_levels(ring_heights(rings))
    orients = ring_orientations(orientation, len(rings))
    sums = np.zeros(NUM_AHA_SEGMENTS)
    counts = np.zeros(NUM_AHA_SEGMENTS)
    for level, v, o in zip(levels, values, orients):
        if v is None:
            continue
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        seg = aha_segments(level, v.size, o) - 1
        ok = np.isfinite(v)
        np.add.at(sums, seg[ok], v[ok])
        np.add.at(counts, seg[ok], 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
