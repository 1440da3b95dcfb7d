"""Where the 126 sectors sit on the ventricle, and the AHA segments that follow.

A pacing target is named by its AHA segment, so the sector -> segment mapping
must follow the anatomy, not the sector numbers. Angles here are anatomical:
degrees counter-clockwise in the standard short-axis view (seen from the
apex: anterior at 12 o'clock, septum at 9, inferior at 6, lateral at 3;
0 deg = 3 o'clock), the angles of the AHA bullseye too. In them the AHA
16-segment model is

  basal 1-6 and mid 7-12, 60 deg each: anterior 60-120, anteroseptal
    120-180, inferoseptal 180-240, inferior 240-300, inferolateral 300-360,
    anterolateral 0-60;
  apical 13-16, 90 deg each: anterior 45-135, septal 135-225, inferior
    225-315, lateral 315-45;
  the anterior RV insertion at 120 deg (between 1 and 2), the inferior one
    at 240 deg (between 3 and 4).

An `Orientation` places the sectors: a landmark (`sector0`: the anterior RV
insertion, or the start of segment 1), the sector coordinate where it sits
(`offset`; sector k covers coordinates [k, k + 1), so 0 = the start of
sector 0), and whether sector numbers increase counter-clockwise ("ccw",
the AHA numbering order) or clockwise in that view. A sector belongs to the
segment holding its centre, k + 0.5. `from_dense_analysis` builds one from
DENSEanalysis' reference points. Numpy only. See docs/decision.md.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lma_tf import constants

N = constants.NUM_SECTORS
DIRECTIONS = ("ccw", "cw")
LEVELS = ("basal", "mid", "apical")
NUM_SEGMENTS = 16
# Landmark -> its anatomical angle (deg) and how the report names it.
LANDMARK_DEG = {"rv_insertion": 120.0, "segment1": 60.0}
LANDMARK_NAMES = {
    "rv_insertion": "the anterior RV insertion",
    "segment1": "the start of AHA segment 1 (anterolateral/anterior boundary)",
}
VIEWS = ("apex", "base")

_FIRST = {"basal": 1, "mid": 7, "apical": 13}
_COUNT = {"basal": 6, "mid": 6, "apical": 4}
_START_DEG = {"basal": 60.0, "mid": 60.0, "apical": 45.0}
_WALLS6 = (
    "anterior",
    "anteroseptal",
    "inferoseptal",
    "inferior",
    "inferolateral",
    "anterolateral",
)
_WALLS4 = ("anterior", "septal", "inferior", "lateral")
SEGMENT_NAMES = {
    **{i + 1: f"basal {w}" for i, w in enumerate(_WALLS6)},
    **{i + 7: f"mid {w}" for i, w in enumerate(_WALLS6)},
    **{i + 13: f"apical {w}" for i, w in enumerate(_WALLS4)},
}
# A centre this close to a boundary (in segments) counts as past it, so that
# rounding in the angle arithmetic cannot split identical inputs.
_EPS = 1e-9


def level_of(segment: int) -> str:
    """basal / mid / apical of AHA segment 1-16."""
    if not 1 <= segment <= NUM_SEGMENTS:
        raise ValueError(f"AHA segment must be 1-16, got {segment}")
    return "basal" if segment <= 6 else "mid" if segment <= 12 else "apical"


def segment_arc(segment: int) -> tuple[float, float]:
    """(start, width) in anatomical degrees of AHA segment 1-16."""
    level = level_of(segment)
    width = 360.0 / _COUNT[level]
    start = (_START_DEG[level] + (segment - _FIRST[level]) * width) % 360.0
    return start, width


def segment_of_angle(level: str, deg) -> np.ndarray:
    """AHA segment number(s) holding anatomical angle(s) `deg` on a ring."""
    if level not in _COUNT:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    width = 360.0 / _COUNT[level]
    rel = np.mod(np.asarray(deg, np.float64) - _START_DEG[level], 360.0) / width
    idx = np.floor(rel + _EPS).astype(np.int64) % _COUNT[level]
    return _FIRST[level] + idx


def _overlap_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of the overlap of two circular arcs (start, width), degrees."""
    best = 0.0
    for shift in (-360.0, 0.0, 360.0):
        lo = max(a[0], b[0] + shift)
        hi = min(a[0] + a[1], b[0] + shift + b[1])
        best = max(best, hi - lo)
    return best


def adjacent(a: int, b: int) -> bool:
    """Whether two different segments share an edge.

    On one ring: circular neighbours. Between neighbouring rings (basal-mid,
    mid-apical): arcs that overlap by more than a point.
    """
    if a == b:
        return False
    la, lb = LEVELS.index(level_of(a)), LEVELS.index(level_of(b))
    if la == lb:
        n = _COUNT[LEVELS[la]]
        return (a - b) % n in (1, n - 1)
    if abs(la - lb) != 1:
        return False
    return _overlap_deg(segment_arc(a), segment_arc(b)) > 1e-6


def neighbours(segment: int) -> tuple[int, ...]:
    """The segments sharing an edge with `segment`, ascending."""
    return tuple(s for s in range(1, NUM_SEGMENTS + 1) if adjacent(segment, s))


def _wrap(x: np.ndarray, period: float) -> np.ndarray:
    """`x` modulo `period` in [0, period) (np.mod of -1e-17 returns `period`)."""
    out = np.mod(x, period)
    return np.where(out >= period, out - period, out)


def _flip(direction: str) -> str:
    return "cw" if direction == "ccw" else "ccw"


@dataclasses.dataclass(frozen=True)
class Orientation:
    """Where sector coordinates sit in anatomical angles (see the module doc).

    Attributes:
      sector0: the landmark, "rv_insertion" (the anterior RV insertion, the
        usual DENSEanalysis reference) or "segment1" (the start of AHA
        segment 1, the layout `lma_tf.viz.aha` assumes by default).
      offset: the sector coordinate of the landmark, in sectors of a
        126-sector ring (0 = the start of sector 0); taken modulo 126.
      direction: "ccw" if sector numbers increase counter-clockwise seen
        from the apex (anterior -> septum -> inferior -> lateral), else "cw".
    """

    sector0: str = "rv_insertion"
    offset: float = 0.0
    direction: str = "ccw"

    def __post_init__(self) -> None:
        if self.sector0 not in LANDMARK_DEG:
            raise ValueError(
                f"sector0 must be one of {tuple(LANDMARK_DEG)}, got {self.sector0!r}"
            )
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"direction must be one of {DIRECTIONS}, got {self.direction!r}"
            )
        offset = float(self.offset)
        if not math.isfinite(offset):
            raise ValueError(f"offset must be a finite number, got {self.offset!r}")
        object.__setattr__(self, "offset", offset % N)

    @property
    def sign(self) -> float:
        """+1 when sector numbers run counter-clockwise, -1 otherwise."""
        return 1.0 if self.direction == "ccw" else -1.0

    def angle(self, position, num_sectors: int = N) -> np.ndarray:
        """Anatomical angle (deg, [0, 360)) of sector coordinate(s) `position`."""
        s = np.asarray(position, np.float64) * (N / num_sectors)
        deg = LANDMARK_DEG[self.sector0] + self.sign * (s - self.offset) * 360.0 / N
        return _wrap(deg, 360.0)

    def position(self, deg, num_sectors: int = N) -> np.ndarray:
        """Sector coordinate(s) in [0, num_sectors) of anatomical angle(s)."""
        rel = (np.asarray(deg, np.float64) - LANDMARK_DEG[self.sector0]) * self.sign
        s = self.offset + rel * N / 360.0
        return _wrap(s * (num_sectors / N), float(num_sectors))

    def sector_segments(self, level: str, num_sectors: int = N) -> np.ndarray:
        """(num_sectors,) AHA segment (1-16) of each sector of a ring at `level`."""
        centres = np.arange(num_sectors) + 0.5
        return segment_of_angle(level, self.angle(centres, num_sectors))

    def segment_edges(self, level: str, num_sectors: int = N) -> list[float]:
        """Sector coordinates of the ring's segment boundaries, ascending."""
        n = _COUNT[level]
        degs = [_START_DEG[level] + i * 360.0 / n for i in range(n)]
        return sorted(float(self.position(d, num_sectors)) for d in degs)

    def segment_centre(self, segment: int, num_sectors: int = N) -> float:
        """Sector coordinate of the middle of AHA segment `segment`."""
        start, width = segment_arc(segment)
        return float(self.position(start + width / 2.0, num_sectors))

    @property
    def rv_insertion_sector(self) -> float:
        """Sector coordinate of the anterior RV insertion."""
        return float(self.position(LANDMARK_DEG["rv_insertion"]))

    def describe(self) -> str:
        """One line saying the convention, as the report prints it."""
        turn = (
            "counter-clockwise seen from the apex (the AHA order: anterior, "
            "septum, inferior, lateral)"
            if self.direction == "ccw"
            else "clockwise seen from the apex (against the AHA order)"
        )
        where = "the start of sector 0" if self.offset == 0 else f"{self.offset:g}"
        if self.offset != 0:
            where = f"sector coordinate {where}"
        text = (
            f"{LANDMARK_NAMES[self.sector0]} at {where}; sector numbers increase {turn}"
        )
        if self.sector0 != "rv_insertion":
            rv = self.rv_insertion_sector
            text += f"; anterior RV insertion at sector coordinate {rv:.2f}"
        return text

    def to_dict(self) -> dict:
        """The fields plus the derived RV insertion and the description."""
        return {
            "sector0": self.sector0,
            "offset": self.offset,
            "direction": self.direction,
            "rv_insertion_sector": round(self.rv_insertion_sector, 4),
            "description": self.describe(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Orientation:
        """The inverse of `to_dict` (derived fields ignored)."""
        return cls(d["sector0"], d.get("offset", 0.0), d.get("direction", "ccw"))


# Sector 0 starting segment 1: what `lma-tf maps` assumed before it took the
# report's orientation flags (`--sector0=segment1`).
LEGACY = Orientation("segment1", 0.0, "ccw")
# DENSEanalysis with its reference on the anterior RV insertion and sectors
# running in AHA order; the synthetic cohort's convention too. The one
# default of the report, the maps (`lma_tf.viz.aha`) and their flags.
DEFAULT = Orientation("rv_insertion", 0.0, "ccw")


def _point(name: str, value) -> np.ndarray:
    p = np.asarray(value, np.float64).reshape(-1)
    if p.shape != (2,) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be a finite (x, y) pair, got {value!r}")
    return p


def dense_sector_position(
    point, position_a, position_b, clockwise, num_sectors: int = N
) -> float:
    """Sector coordinate of an image point in DENSEanalysis' sectoring.

    DENSEanalysis starts sector 0 on the ray from `position_a` (the LV
    centre) through `position_b` (the reference point) and numbers sectors
    clockwise on the image when `clockwise`, else counter-clockwise. Points
    are image (x = column, y = row) coordinates, y pointing down, as
    DENSEanalysis stores them.
    """
    a = _point("PositionA", position_a)
    b = _point("PositionB", position_b)
    p = _point("point", point)
    if np.allclose(a, b):
        raise ValueError("PositionA and PositionB coincide: no reference direction")
    theta0 = math.atan2(b[1] - a[1], b[0] - a[0])
    theta = math.atan2(p[1] - a[1], p[0] - a[0]) - theta0
    # y points down, so a growing atan2 angle turns clockwise on the screen.
    if not bool(np.asarray(clockwise).reshape(-1)[0]):
        theta = -theta
    return float(np.mod(theta / (2.0 * math.pi) * num_sectors, num_sectors))


def from_dense_analysis(
    position_a,
    position_b,
    clockwise,
    *,
    rv_insertion=None,
    view: str = "apex",
    sectors_reversed: bool = False,
) -> Orientation:
    """The orientation of sectors exported by DENSEanalysis.

    Args:
      position_a, position_b, clockwise: `AnalysisInfo.PositionA` (LV
        centre), `PositionB` (reference point) and `Clockwise` of the export.
      rv_insertion: image (x, y) of the anterior RV insertion when it is not
        `position_b` (None: PositionB marks it, the usual placement).
      view: "apex" when the image shows the short axis as seen from the apex
        (the standard display: RV on the left, anterior up), "base" when it
        is mirrored (RV on the right).
      sectors_reversed: the loader reversed the sector axis (k -> 125 - k),
        as some of the authors' loaders do.

    Sector 0 starts at PositionB by DENSEanalysis' construction, so the offset
    is 0 unless the RV insertion is given elsewhere; the direction is the
    `Clockwise` flag read in the anatomical view.

    Raises:
      ValueError: a point is not a finite pair, the two positions coincide,
        or `view` is unknown.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    _point("PositionA", position_a)
    _point("PositionB", position_b)
    offset = 0.0
    if rv_insertion is not None:
        offset = dense_sector_position(rv_insertion, position_a, position_b, clockwise)
    screen = "cw" if bool(np.asarray(clockwise).reshape(-1)[0]) else "ccw"
    direction = screen if view == "apex" else _flip(screen)
    if sectors_reversed:
        offset, direction = (N - offset) % N, _flip(direction)
    return Orientation("rv_insertion", offset, direction)
