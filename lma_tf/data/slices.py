"""The in-memory slice (one short-axis DENSE slice) and its validation.

Every reader (`lma_tf.data.formats`, via `sources.py`) produces `DenseSlice`
objects; `validate_slice` decides whether one may enter the records (the
rules are listed in docs/data.md). Numpy only: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lma_tf import constants, textsafe
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation


class SliceError(ValueError):
    """A slice (or a whole file) that cannot be used, with the reason."""


@dataclasses.dataclass
class DenseSlice:
    """One short-axis slice: circumferential strain plus optional labels.

    Attributes:
      subject_id: patient identifier (pseudonymised later if asked).
      slice_id: identifier unique within the subject.
      strain_matrix: (126, F) float32 mid-wall Ecc, negative = shortening.
      frame_period_ms: temporal resolution of the cine sequence.
      tos_ms: optional (126,) time to onset of shortening, ms.
      scar_fraction: optional (126,) LGE scar fraction in [0, 1].
      slice_location: optional slice position along the long axis, mm.
      source: file the slice came from (for error messages and provenance).
      orientation_sector0, orientation_offset, orientation_direction: where
        the sectors sit on the ventricle, all three or none (see
        `lma_tf.decision.orientation.Orientation`: the landmark
        "rv_insertion" or "segment1", its sector coordinate in [0, 126],
        "ccw" or "cw" seen from the apex). None: the data do not say.
    """

    subject_id: str
    slice_id: str
    strain_matrix: np.ndarray
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS
    tos_ms: np.ndarray | None = None
    scar_fraction: np.ndarray | None = None
    slice_location: float | None = None
    source: str = ""
    orientation_sector0: str | None = None
    orientation_offset: float | None = None
    orientation_direction: str | None = None

    @property
    def orientation(self) -> Orientation | None:
        """The three orientation fields as an `Orientation`, None when unset.

        Raises ValueError when they are set but incomplete or invalid
        (`validate_slice` refuses such slices).
        """
        values = orientation_values(self)
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError(f"incomplete orientation {values}")
        return Orientation(values[0], float(values[1]), values[2])

    @property
    def num_frames(self) -> int:
        """F, the number of frames of the strain matrix."""
        return int(self.strain_matrix.shape[1])

    @property
    def key(self) -> tuple[str, str]:
        """(subject_id, slice_id): unique within a cohort."""
        return (self.subject_id, self.slice_id)


@dataclasses.dataclass(frozen=True)
class Reject:
    """A slice (or file) refused by the reader or the validator.

    The fields are escaped on creation (`textsafe.clean`): ids, paths and
    reasons come from user files, and a newline or bad UTF-8 in them must
    neither forge a REJECT line nor crash whoever prints or stores it.
    """

    file: str
    slice_id: str
    reason: str

    def __post_init__(self) -> None:
        for field in ("file", "slice_id", "reason"):
            object.__setattr__(self, field, textsafe.clean(getattr(self, field)))

    def line(self) -> str:
        """The one-line report: file, slice, reason."""
        return f"REJECT file={self.file} slice={self.slice_id or '?'}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        """file, slice_id and reason, as the manifest records them."""
        return dataclasses.asdict(self)


# The orientation fields of `DenseSlice`, in the order of `Orientation`'s.
ORIENTATION_FIELDS = (
    "orientation_sector0",
    "orientation_offset",
    "orientation_direction",
)


def orientation_values(s: DenseSlice) -> tuple:
    """(sector0, offset, direction) of a slice, each None when unset."""
    return tuple(getattr(s, f) for f in ORIENTATION_FIELDS)


def orientation_fields(o: Orientation | None) -> dict[str, object]:
    """{field: value} setting a slice's orientation fields to `o` (None: unset)."""
    if o is None:
        return dict.fromkeys(ORIENTATION_FIELDS)
    return dict(
        zip(ORIENTATION_FIELDS, (o.sector0, o.offset, o.direction), strict=True)
    )


# The range of every field (docs/data.md, "What is checked"). Strain is a
# fraction: |Ecc| > 1 is a unit mistake (percent, thousandths), never physiology.
MAX_ABS_STRAIN = 1.0
FRAME_PERIOD_RANGE_MS = (5.0, 100.0)
MAX_ABS_SLICE_LOCATION_MM = 1e4
# TOS below 17 ms by at most this much (rounding, float noise) is set to 17 ms.
TOS_CLAMP_TOLERANCE_MS = 0.5
MAX_ID_LENGTH = 256


def _float32(name: str, value, check_finite: bool = True) -> np.ndarray:
    """`value` as a float32 array; SliceError unless real numbers, finite as float32.

    Finiteness is checked after the cast: 1e300 is finite in float64 but
    becomes inf in the float32 records.
    """
    try:
        arr = np.asarray(value)
    except Exception:  # ragged nested lists and the like
        raise SliceError(f"{name} is not a numeric array") from None
    if arr.dtype.kind == "O":  # e.g. a list of numbers from a pickled file
        if any(isinstance(v, complex) for v in arr.flat):
            raise SliceError(f"{name} is complex; only real values are accepted")
        try:
            arr = arr.astype(np.float64)
        except Exception:
            raise SliceError(f"{name} has non-numeric dtype object") from None
    if arr.dtype.kind == "c":
        raise SliceError(f"{name} is complex; only real values are accepted")
    if arr.dtype.kind not in "iuf":
        raise SliceError(f"{name} has non-numeric dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    if check_finite and not np.all(np.isfinite(out)):
        raise SliceError(
            f"{name} contains NaN or inf (after conversion to float32, whose "
            "largest value is 3.4e38)"
        )
    return out


def _scalar(name: str, value) -> float:
    """A single real number, finite as float32 (as the records store it)."""
    arr = _float32(name, value)
    if arr.size != 1:
        raise SliceError(f"{name} must be a single number, got shape {arr.shape}")
    return float(arr.reshape(-1)[0])


def _as_vector(name: str, value, n: int) -> np.ndarray:
    arr = np.squeeze(_float32(name, value))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise SliceError(f"{name} has shape {np.shape(value)}, expected ({n},)")
    return arr


def _check_id(name: str, value) -> str:
    if isinstance(value, bytes | bytearray):
        raise SliceError(f"{name} is bytes, not text")
    value = value if isinstance(value, str) else str(value)
    if not value:
        raise SliceError(f"empty {name}")
    if len(value) > MAX_ID_LENGTH:
        raise SliceError(
            f"{name} is {len(value)} characters long, at most {MAX_ID_LENGTH}"
        )
    if not textsafe.is_utf8(value):
        raise SliceError(f"{name} is not valid UTF-8")
    return value


def _strain_unit_hint(max_abs: float) -> str:
    if max_abs <= 100.0:
        return "looks like percent: divide by 100"
    if max_abs <= 1000.0:
        return "looks like thousandths (x1000 integers): divide by 1000"
    return "far outside any strain unit"


def _check_strain(value) -> np.ndarray:
    shape = np.shape(value) if isinstance(value, np.ndarray) else None
    strain = _float32("strain_matrix", value, check_finite=False)
    shape = strain.shape if shape is None else shape
    if strain.ndim != 2 or strain.shape[0] != constants.NUM_SECTORS:
        raise SliceError(
            f"strain_matrix has shape {shape}, expected "
            f"({constants.NUM_SECTORS}, frames)"
        )
    frames = strain.shape[1]
    if not constants.MIN_FRAMES <= frames <= constants.MAX_FRAMES:
        raise SliceError(
            f"strain_matrix has {frames} frames, expected "
            f"{constants.MIN_FRAMES}..{constants.MAX_FRAMES}"
        )
    _float32("strain_matrix", strain)  # finite, now that the shape is right
    max_abs = float(np.max(np.abs(strain)))
    if max_abs > MAX_ABS_STRAIN:
        raise SliceError(
            f"strain_matrix has |Ecc| up to {max_abs:.4g}, but strain is a "
            f"fraction (|Ecc| <= {MAX_ABS_STRAIN:g}; -0.15 = 15 % shortening): "
            f"{_strain_unit_hint(max_abs)}"
        )
    return np.ascontiguousarray(strain)


def _check_tos(value, frames: int, period: float) -> np.ndarray:
    """TOS in [17 ms, end of the sequence]; just below 17 ms is set to 17 ms."""
    tos = _as_vector("tos_ms", value, constants.NUM_SECTORS)
    floor = constants.TOS_FLOOR_MS
    if np.any(tos < 0):
        raise SliceError(f"tos_ms has negative values (min {tos.min():.1f} ms)")
    if np.any(tos < floor - TOS_CLAMP_TOLERANCE_MS):
        raise SliceError(
            f"tos_ms below {floor:g} ms (min {tos.min():.4g} ms): TOS counts from "
            f"the first frame at {floor:g} ms, which means 'not late'; check the "
            f"unit (frames instead of ms?) or set values below {floor:g} ms to "
            f"{floor:g} before converting"
        )
    duration = frames * period
    if np.any(tos > duration + 1e-3):
        raise SliceError(
            f"tos_ms beyond the sequence (max {tos.max():.1f} ms > "
            f"{frames} frames x {period:g} ms = {duration:.1f} ms)"
        )
    return np.maximum(tos, np.float32(floor))


def _check_range(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not low <= value <= high:
        raise SliceError(f"{name} is {value:.6g} {unit}, expected {low:g}..{high:g}")


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise SliceError(f"{name} must be text, one of {', '.join(allowed)}")
    text = value.strip().lower()
    if text not in allowed:  # the value is not quoted: it may be anything
        raise SliceError(f"{name} is not one of {', '.join(allowed)}")
    return text


def _check_orientation(s: DenseSlice) -> dict[str, object]:
    """The orientation fields normalised: all three or none, each in its set.

    The offset is stored as float32 like every number of the records; 126
    (the end of the ring) is the same place as 0 and becomes 0.
    """
    values = orientation_values(s)
    if all(v is None for v in values):
        return orientation_fields(None)
    missing = [f for f, v in zip(ORIENTATION_FIELDS, values, strict=True) if v is None]
    if missing:
        raise SliceError(
            f"incomplete orientation: {', '.join(missing)} missing; give "
            f"{', '.join(ORIENTATION_FIELDS)} together, or none of them"
        )
    sector0 = _check_choice(
        "orientation_sector0", values[0], tuple(orientation_lib.LANDMARK_DEG)
    )
    offset = _scalar("orientation_offset", values[1])
    _check_range("orientation_offset", offset, 0.0, float(orientation_lib.N), "sectors")
    direction = _check_choice(
        "orientation_direction", values[2], orientation_lib.DIRECTIONS
    )
    return orientation_fields(Orientation(sector0, offset, direction))


def validate_slice(s: DenseSlice) -> DenseSlice:
    """Checks one slice against the data contract; returns it normalised.

    Normalised means float32 arrays, a (126, F) strain matrix, (126,) label
    vectors, TOS just below 17 ms set to 17 ms. Every number is checked
    against its range (docs/data.md) as float32, the precision of the
    records; the orientation fields are all three or none, lower case.
    Raises `SliceError` naming the first problem found.
    """
    subject_id = _check_id("subject_id", s.subject_id)
    slice_id = _check_id("slice_id", s.slice_id)
    strain = _check_strain(s.strain_matrix)
    period = _scalar("frame_period_ms", s.frame_period_ms)
    _check_range("frame_period_ms", period, *FRAME_PERIOD_RANGE_MS, "ms")

    tos = None
    if s.tos_ms is not None:
        tos = _check_tos(s.tos_ms, strain.shape[1], period)
    scar = None
    if s.scar_fraction is not None:
        scar = _as_vector("scar_fraction", s.scar_fraction, constants.NUM_SECTORS)
        if np.any(scar < 0) or np.any(scar > 1):
            raise SliceError(
                f"scar_fraction outside [0, 1] (min {scar.min():.4g}, max "
                f"{scar.max():.4g})"
            )
    location = None
    if s.slice_location is not None:
        location = _scalar("slice_location", s.slice_location)
        limit = MAX_ABS_SLICE_LOCATION_MM
        _check_range("slice_location", location, -limit, limit, "mm")

    return dataclasses.replace(
        s,
        subject_id=subject_id,
        slice_id=slice_id,
        strain_matrix=strain,
        frame_period_ms=period,
        tos_ms=tos,
        scar_fraction=scar,
        slice_location=location,
        **_check_orientation(s),
    )
