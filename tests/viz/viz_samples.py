"""Sample slices for the activation-map tests (imported by tests/viz/*_test.py)."""

from __future__ import annotations

import numpy as np

from lma_tf import constants
from lma_tf.viz.rings import RingData

N = constants.NUM_SECTORS


def ring(slice_id, location, late=(), scar=(), tos_late=100.0, **kw) -> RingData:
    """A ring at 17 ms with `late` sectors at `tos_late` and `scar` at 0.8."""
    tos = np.full(N, 17.0)
    tos[list(late)] = tos_late
    scar_fraction = np.zeros(N)
    scar_fraction[list(scar)] = 0.8
    return RingData(slice_id, location, tos, scar_fraction, **kw)


def subject() -> list[RingData]:
    """Basal ring late in AHA segment 4 (sectors 63-83), mid with scar, apical."""
    return [
        ring("base", 30.0, late=range(63, 84)),
        ring("mid", 20.0, scar=range(0, 10)),
        ring("apex", 10.0, late=range(0, 32), tos_late=60.0),
    ]
