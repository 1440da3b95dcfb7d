"""AHA 16-segment geometry: sectors to segments, slices to levels, segment means."""

from __future__ import annotations

import numpy as np
import pytest
from viz_samples import N, ring, subject

from lma_tf.viz import aha


def test_aha_segments_of_sectors():
    basal = aha.aha_segments("basal")
    assert basal[0] == basal[20] == 1 and basal[21] == 2 and basal[125] == 6
    assert np.all(np.bincount(basal)[1:] == 21)
    mid = aha.aha_segments("mid")
    assert mid[0] == 7 and mid[125] == 12
    apical = aha.aha_segments("apical")  # 31.5 sectors per segment
    assert apical[31] == 13 and apical[32] == 14 and apical[125] == 16
    assert list(np.bincount(apical)[13:]) == [32, 31, 32, 31]
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
        rings, [r.tos_ms for r in rings], levels=["basal", "mid"]
    )
    assert values[3] == 100.0  # segment 4 = sectors 63-83 of the basal ring
    assert np.all(values[[0, 1, 2, 4, 5]] == 17.0)
    assert np.all(values[6:12] == 17.0)
    assert np.isnan(values[12:]).all()
    half = np.full(N, np.nan)
    half[:10] = 40.0
    half[10:21] = 20.0
    got = aha.aha_segment_values(rings[:1], [half], levels=["mid"])
    assert got[6] == pytest.approx((10 * 40 + 11 * 20) / 21)  # NaN not counted
    assert np.isnan(got[7])


def test_segment_edges_split_the_ring_evenly():
    assert aha.segment_edges("basal") == [0, 21, 42, 63, 84, 105]
    assert aha.segment_edges("apical") == [0, 31.5, 63, 94.5]
    assert aha.aha_segment_values([ring("x", 1.0)], [None]).shape == (16,)
