"""Small predicted subjects for the decision tests (imported by tests/decision/*)."""

from __future__ import annotations

import numpy as np

from lma_tf import constants, rules
from lma_tf.serving.prediction_csv import PredictedSlice

N = constants.NUM_SECTORS
# Sector ranges of AHA segments in the default orientation (anterior RV
# insertion at sector 0, counter-clockwise): 21 sectors per basal/mid segment,
# anteroseptal first.
BASAL = {
    2: range(0, 21),
    3: range(21, 42),
    4: range(42, 63),
    5: range(63, 84),
    6: range(84, 105),
    1: range(105, 126),
}


def predicted(
    subject: str,
    slice_id: str,
    location: float | None,
    late=(),
    tos_late: float = 100.0,
    prob_late: float = 0.95,
    prob_early: float = 0.05,
    true_late=None,
    true_tos_late: float = 100.0,
    scar=(),
    labelled: bool = True,
) -> PredictedSlice:
    """A slice at 17 ms except `late` sectors (TOS `tos_late`, P `prob_late`).

    The truth is late on `true_late` (default: `late`); `scar` sectors have
    scar fraction 0.8 (and true TOS 17 ms, as labels have).
    """
    tos = np.full(N, 17.0)
    prob = np.full(N, prob_early)
    tos[list(late)] = tos_late
    prob[list(late)] = prob_late
    true = np.full(N, 17.0)
    true[list(late if true_late is None else true_late)] = true_tos_late
    scar_fraction = np.zeros(N)
    scar_fraction[list(scar)] = 0.8
    true[list(scar)] = 17.0
    return PredictedSlice(
        subject_id=subject,
        slice_id=slice_id,
        slice_location=location,
        tos_ms=tos,
        lma_probability=prob,
        combined_tos_ms=rules.combine_tos(tos, prob),
        true_tos_ms=true if labelled else None,
        scar_fraction=scar_fraction if labelled else None,
    )


def three_slices(subject: str, **basal_kw) -> list[PredictedSlice]:
    """Basal (30 mm, with `basal_kw`), mid (20 mm) and apical (10 mm) slices."""
    labelled = basal_kw.get("labelled", True)
    return [
        predicted(subject, f"{subject}_b", 30.0, **basal_kw),
        predicted(subject, f"{subject}_m", 20.0, labelled=labelled),
        predicted(subject, f"{subject}_a", 10.0, labelled=labelled),
    ]
