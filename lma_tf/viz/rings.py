"""One subject's short-axis slices as the activation maps draw them.

The 3-D map and the bullseye both take a list of `RingData` (one per slice,
126 sector values each) and a shared TOS colour range, so that a cohort's
figures use one scale. `read_rings` builds them from a prediction CSV
through `lma_tf.serving.prediction_csv`, the one reader of that format.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from lma_tf import constants
from lma_tf.serving import prediction_csv


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


def tos_upper_range(arrays: Sequence[np.ndarray | None], step: float = 10.0) -> float:
    """The top of the TOS colour scale: the largest finite TOS, rounded up.

    At least 17 + `step` ms, so a cohort with no late sector still has a scale.
    """
    values = [np.asarray(a, np.float64).ravel() for a in arrays if a is not None]
    flat = np.concatenate(values) if values else np.zeros(0)
    flat = flat[np.isfinite(flat)]
    top = float(flat.max()) if flat.size else constants.TOS_FLOOR_MS
    return max(step * math.ceil(top / step), constants.TOS_FLOOR_MS + step)


def tos_range(rings: Sequence[RingData]) -> tuple[float, float]:
    """17 ms to `tos_upper_range` of the rings' predicted and true TOS."""
    top = tos_upper_range([r.tos_ms for r in rings] + [r.true_tos_ms for r in rings])
    return (constants.TOS_FLOOR_MS, top)


def check_tos_column(tos_column: str) -> None:
    """ValueError unless `tos_column` is a TOS column of the prediction CSV."""
    if tos_column not in prediction_csv.TOS_COLUMNS:
        raise ValueError(
            f"tos_column must be one of {prediction_csv.TOS_COLUMNS}, "
            f"got {tos_column!r}"
        )


def ring_from_prediction(
    s: prediction_csv.PredictedSlice, tos_column: str = prediction_csv.COMBINED_TOS_MS
) -> RingData:
    """The ring of one predicted slice; `tos_column` becomes `RingData.tos_ms`."""
    check_tos_column(tos_column)
    return RingData(
        slice_id=s.slice_id,
        location=s.slice_location,
        tos_ms=getattr(s, tos_column),
        scar_fraction=s.scar_fraction,
        true_tos_ms=s.true_tos_ms,
        lma_probability=s.lma_probability,
    )


def read_rings(
    path: str, tos_column: str = prediction_csv.COMBINED_TOS_MS
) -> dict[str, list[RingData]]:
    """Rings per subject from a prediction CSV, in the file's order.

    `tos_column` ("combined_tos_ms" or "tos_ms") becomes `RingData.tos_ms`.
    Missing sectors are NaN (grey in the figures); an optional column empty
    for a whole slice is None.

    Raises:
      ValueError: a bad `tos_column`.
      prediction_csv.PredictionCsvError: the file is not a prediction CSV.
    """
    check_tos_column(tos_column)
    subjects = prediction_csv.by_subject(prediction_csv.read(path))
    return {
        subject: [ring_from_prediction(s, tos_column) for s in slices]
        for subject, slices in subjects.items()
    }
