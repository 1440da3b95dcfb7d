"""The in-memory slice (one short-axis DENSE slice) and its validation.

Every reader (`lma_tf.data.formats`, via `sources.py`) produces `DenseSlice`
objects; `validate_slice` decides whether one may enter the records (the
rules are listed in docs/data.md). Numpy only: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lma_tf import constants


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
    """

    subject_id: str
    slice_id: str
    strain_matrix: np.ndarray
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS
    tos_ms: np.ndarray | None = None
    scar_fraction: np.ndarray | None = None
    slice_location: float | None = None
    source: str = ""

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
    """A slice (or file) refused by the reader or the validator."""

    file: str
    slice_id: str
    reason: str

    def line(self) -> str:
        """The one-line report: file, slice, reason."""
        return f"REJECT file={self.file} slice={self.slice_id or '?'}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        """file, slice_id and reason, as the manifest records them."""
        return dataclasses.asdict(self)


def _as_vector(name: str, value, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    arr = np.squeeze(arr)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise SliceError(f"{name} has shape {np.shape(value)}, expected ({n},)")
    if not np.all(np.isfinite(arr)):
        raise SliceError(f"{name} contains NaN or inf")
    return arr.astype(np.float32)


def validate_slice(s: DenseSlice) -> DenseSlice:
    """Checks one slice against the data contract; returns it normalised.

    Normalised means float32 arrays, a (126, F) strain matrix and (126,)
    label vectors. Raises `SliceError` naming the first problem found.
    """
    if not s.subject_id:
        raise SliceError("empty subject_id")
    if not s.slice_id:
        raise SliceError("empty slice_id")
    strain = np.asarray(s.strain_matrix)
    if strain.dtype == object or not np.issubdtype(strain.dtype, np.number):
        raise SliceError(f"strain_matrix has non-numeric dtype {strain.dtype}")
    if strain.ndim != 2 or strain.shape[0] != constants.NUM_SECTORS:
        raise SliceError(
            f"strain_matrix has shape {strain.shape}, expected "
            f"({constants.NUM_SECTORS}, frames)"
        )
    frames = strain.shape[1]
    if not constants.MIN_FRAMES <= frames <= constants.MAX_FRAMES:
        raise SliceError(
            f"strain_matrix has {frames} frames, expected "
            f"{constants.MIN_FRAMES}..{constants.MAX_FRAMES}"
        )
    if not np.all(np.isfinite(strain)):
        raise SliceError("strain_matrix contains NaN or inf")
    period = float(s.frame_period_ms)
    if not math.isfinite(period) or period <= 0:
        raise SliceError(f"frame_period_ms must be positive, got {s.frame_period_ms}")

    tos = None
    if s.tos_ms is not None:
        tos = _as_vector("tos_ms", s.tos_ms, constants.NUM_SECTORS)
        if np.any(tos < 0):
            raise SliceError(f"tos_ms has negative values (min {tos.min():.1f} ms)")
        duration = frames * period
        if np.any(tos > duration + 1e-3):
            raise SliceError(
                f"tos_ms beyond the sequence (max {tos.max():.1f} ms > "
                f"{frames} frames x {period:g} ms = {duration:.1f} ms)"
            )
    scar = None
    if s.scar_fraction is not None:
        scar = _as_vector("scar_fraction", s.scar_fraction, constants.NUM_SECTORS)
        if np.any(scar < 0) or np.any(scar > 1):
            raise SliceError("scar_fraction outside [0, 1]")
    location = None
    if s.slice_location is not None:
        location = float(np.asarray(s.slice_location).squeeze())
        if not math.isfinite(location):
            raise SliceError("slice_location is NaN or inf")

    return dataclasses.replace(
        s,
        subject_id=str(s.subject_id),
        slice_id=str(s.slice_id),
        strain_matrix=np.ascontiguousarray(strain, dtype=np.float32),
        frame_period_ms=period,
        tos_ms=tos,
        scar_fraction=scar,
        slice_location=location,
    )
