"""AHA 16-segment geometry: sectors to segments, slices to levels, segment means."""

from __future__ import annotations

import numpy as np
import pytest
from viz_samples import N, ring, subject

from lma_tf.decision import orientation as orientation_lib
from lma_tf.viz import aha

# Sector 0 at the start of segment 1: the layout these geometry checks read.
SEG1 = orientation_lib.LEGACY


def test_aha_segments_of_sectors():
    basal = aha.aha_segments("basal", orientation=SEG1)
    assert basal[0] == basal[20] == 1 and basal[21] == 2 and basal[125] == 6
    assert np.all(np.bincount(basal)[1:] == 21)
    mid = aha.aha_segments("mid", orientation=SEG1)
    assert mid[0] == 7 and mid[125] == 12
    apical = aha.aha_segments("apical", orientation=SEG1)  # 31.5 sectors per segment
    # Apical segments are 90 deg from 45 deg: 13 starts 15 deg (5.25 sectors)
    # before segment 1 does.
    assert apical[120] == 16 and apical[121] == apical[0] == apical[25] == 13
    assert apical[26] == 14 and apical[125] == 13
    assert list(np.bincount(apical)[13:]) == [31, 32, 31, 32]
    with pytest.raises(ValueError):
        aha.aha_segments("apex")


@pytest.mark.parametrize(
    "locations, levels",
    [
        ([30, 20, 10], ["basal", "mid", "apical"]),
        ([30, 20, 10, 0], ["basal", "mid", "mid", "apical"]),
        ([5, 4, 3, 2, 1, 0], ["basal", "basal", "mid", "mid", "apical", "apical"]),
        ([10, 0], ["basal", "apical"]),
        ([7.5], ["mid"]),
        ([0, 20, 10], ["apical", "basal", "mid"]),  # order does not matter
    ],
)
def test_slice_levels_by_thirds_of_the_long_axis(locations, levels):
    assert aha.slice_levels(np.asarray(locations, float)) == levels


def test_ring_heights_conventions():
    rings = subject()
    np.testing.assert_array_equal(aha.ring_heights(rings), [30, 20, 10])
    np.testing.assert_array_equal(aha.ring_heights(rings, False), [-30, -20, -10])
    rings[1].location = None  # without every location: file order, base first
    np.testing.assert_array_equal(aha.ring_heights(rings), [0, -1, -2])


def test_segment_values_average_and_leave_missing_segments_nan():
    rings = subject()[:2]  # no apical slice: segments 13-16 missing
    # (Two slices alone would be basal + apical by thirds: set the levels.)
    values = aha.aha_segment_values(
        rings, [r.tos_ms for r in rings], levels=["basal", "mid"], orientation=SEG1
    )
    assert values[3] == 100.0  # segment 4 = sectors 63-83 of the basal ring
    assert np.all(values[[0, 1, 2, 4, 5]] == 17.0)
    assert np.all(values[6:12] == 17.0)
    assert np.isnan(values[12:]).all()
    half = np.full(N, np.nan)
    half[:10] = 40.0
    half[10:21] = 20.0
    got = aha.aha_segment_values(rings[:1], [half], levels=["mid"], orientation=SEG1)
    assert got[6] == pytest.approx((10 * 40 + 11 * 20) / 21)  # NaN not counted
    assert np.isnan(got[7])


def test_segment_edges_split_the_ring_evenly():
    assert aha.segment_edges("basal", orientation=SEG1) == [0, 21, 42, 63, 84, 105]
    assert aha.segment_edges("apical", orientation=SEG1) == pytest.approx(
        [26.25, 57.75, 89.25, 120.75]
    )
    assert aha.aha_segment_values([ring("x", 1.0)], [None]).shape == (16,)


def test_the_default_layout_is_the_reports_default_orientation():
    for level in ("basal", "mid", "apical"):
        np.testing.assert_array_equal(
            aha.aha_segments(level),
            orientation_lib.DEFAULT.sector_segments(level),
        )
        assert aha.segment_edges(level) == orientation_lib.DEFAULT.segment_edges(level)
    # The anterior RV insertion starts sector 0: segment 2 (anteroseptal) follows.
    assert aha.aha_segments("basal")[0] == 2 and aha.aha_segments("basal")[125] == 1
    cw = orientation_lib.Orientation("rv_insertion", 0.0, "cw")
    orients = aha.ring_orientations([None, cw], 2)
    assert orients == [orientation_lib.DEFAULT, cw]
    assert aha.ring_orientations(cw, 3) == [cw] * 3
    with pytest.raises(ValueError, match="orientations for"):
        aha.ring_orientations([cw], 2)
