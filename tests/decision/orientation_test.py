"""Sector -> AHA segment mapping under an orientation, and DENSEanalysis' references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from decision_samples import BASAL, N, three_slices

from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision import report
from lma_tf.decision.orientation import Orientation
from lma_tf.viz import aha


def test_the_maps_default_is_the_reports_default():
    for level in ("basal", "mid"):
        np.testing.assert_array_equal(
            orientation_lib.DEFAULT.sector_segments(level), aha.aha_segments(level)
        )
        np.testing.assert_array_equal(
            orientation_lib.LEGACY.sector_segments(level),
            aha.aha_segments(level, orientation=orientation_lib.LEGACY),
        )
    # Segment 1 starting sector 0 (--sector0=segment1) is 60 deg away.
    assert aha.segment_edges("apical", orientation=orientation_lib.LEGACY) == [
        pytest.approx(e) for e in (26.25, 57.75, 89.25, 120.75)
    ]
    assert aha.segment_edges("apical", orientation=orientation_lib.DEFAULT) == [
        5.25,
        36.75,
        68.25,
        99.75,
    ]


def test_default_orientation_puts_walls_where_the_synthetic_cohort_has_them():
    seg = orientation_lib.DEFAULT.sector_segments("basal")
    for segment, sectors in BASAL.items():
        assert set(seg[list(sectors)]) == {segment}
    # The septum (sectors 0-41) is the anteroseptal + inferoseptal segments,
    # the lateral wall (63-104) inferolateral + anterolateral.
    assert set(seg[:42]) == {2, 3} and set(seg[63:105]) == {5, 6}
    apical = orientation_lib.DEFAULT.sector_segments("apical")
    # Apical septal (14) is centred on the septum (sector 21).
    assert apical[21] == 14 and apical[4] == 13 and apical[5] == 14
    assert list(np.bincount(apical)[13:]) == [31, 32, 31, 32]
    assert orientation_lib.DEFAULT.segment_centre(14) == pytest.approx(21.0)


def test_every_sector_has_one_segment_of_its_ring():
    o = Orientation("rv_insertion", 10.3, "cw")
    for level, segs in (
        ("basal", range(1, 7)),
        ("mid", range(7, 13)),
        ("apical", range(13, 17)),
    ):
        got = o.sector_segments(level)
        assert set(got) == set(segs)
        counts = np.bincount(got)[min(segs) :]
        assert counts.max() - counts.min() <= 1  # equal arcs
        # A segment's sectors are contiguous around the ring.
        for s in segs:
            changes = np.count_nonzero(np.diff(np.r_[got, got[0]] == s))
            assert changes == 2


@pytest.mark.parametrize("roll", [0, 17, 63, 125])
@pytest.mark.parametrize("mirror", [False, True])
def test_rotated_and_mirrored_subject_keeps_its_target_segment(roll, mirror):
    """A late basal inferolateral region is segment 5 however the ring is stored."""
    slices = three_slices("p", late=range(66, 81))  # segment 5 in DEFAULT
    base = report.analyse(slices)[0]
    assert base.decision.recommended.segment == 5
    moved = []
    for s in slices:
        arrays = {}
        for name in (
            "tos_ms",
            "lma_probability",
            "combined_tos_ms",
            "true_tos_ms",
            "scar_fraction",
        ):
            a = getattr(s, name)
            a = a[::-1] if mirror else a  # sector k -> 125 - k
            arrays[name] = np.roll(a, roll)  # sector k -> k + roll
        moved.append(dataclasses.replace(s, **arrays))
    # The RV insertion sat at coordinate 0: mirroring sends it to 126 = 0 and
    # reverses the direction; rolling moves it to `roll`.
    o = Orientation("rv_insertion", roll, "cw" if mirror else "ccw")
    got = report.analyse(moved, o)[0]
    assert got.decision.segments == base.decision.segments
    assert [s.tos_median_ms for s in got.segments] == [
        s.tos_median_ms for s in base.segments
    ]
    # Read with the unrotated convention, half a turn away, it lands elsewhere.
    if roll == 63:
        assert report.analyse(moved)[0].decision.recommended.segment != 5


def test_segment1_landmark_is_the_same_ring_read_from_another_point():
    # Segment 1 starts 60 deg before the RV insertion: 21 sectors earlier.
    o = Orientation("segment1", 126 - 21, "ccw")
    for level in ("basal", "mid", "apical"):
        np.testing.assert_array_equal(
            o.sector_segments(level), orientation_lib.DEFAULT.sector_segments(level)
        )
    assert o.rv_insertion_sector == pytest.approx(0.0)
    assert orientation_lib.LEGACY.rv_insertion_sector == pytest.approx(21.0)


def test_angles_and_positions_invert():
    o = Orientation("rv_insertion", 12.5, "cw")
    s = np.linspace(0, N, 50, endpoint=False)
    np.testing.assert_allclose(o.position(o.angle(s)), s, atol=1e-9)
    assert o.angle(12.5) == pytest.approx(120.0)
    assert o.angle(12.5 + 21) == pytest.approx(60.0)  # clockwise: towards anterior


def test_bad_orientations_are_refused():
    with pytest.raises(ValueError, match="sector0"):
        Orientation("apex")
    with pytest.raises(ValueError, match="direction"):
        Orientation(direction="left")
    with pytest.raises(ValueError, match="finite"):
        Orientation(offset=float("nan"))
    assert Orientation(offset=-1).offset == 125.0
    assert Orientation.from_dict(Orientation("segment1", 3, "cw").to_dict()) == (
        Orientation("segment1", 3, "cw")
    )


def test_adjacency():
    assert orientation_lib.neighbours(1) == (2, 6, 7)
    assert orientation_lib.neighbours(8) == (2, 7, 9, 13, 14)  # overlaps 13 and 14
    assert orientation_lib.neighbours(16) == (11, 12, 13, 15)
    assert not orientation_lib.adjacent(1, 8)  # corners only
    assert not orientation_lib.adjacent(1, 13)  # basal and apical never
    assert not orientation_lib.adjacent(5, 5)
    for a in range(1, 17):
        for b in orientation_lib.neighbours(a):
            assert a in orientation_lib.neighbours(b)


# DENSEanalysis: PositionA (LV centre), PositionB (reference), Clockwise.
CENTRE = np.array([60.0, 50.0])


def _image_point(deg: float, view: str, r: float = 20.0) -> np.ndarray:
    """Image (x, y down) of anatomical angle `deg` for an apex or base view."""
    a = np.deg2rad(deg)
    x = np.cos(a) if view == "apex" else -np.cos(a)  # base view: mirrored
    return CENTRE + r * np.array([x, -np.sin(a)])


@pytest.mark.parametrize("clockwise", [False, True])
@pytest.mark.parametrize("view", ["apex", "base"])
@pytest.mark.parametrize("reference_deg", [120.0, 75.0])
def test_dense_analysis_reference_points_give_the_anatomy(
    clockwise, view, reference_deg
):
    b = _image_point(reference_deg, view)
    rv = None if reference_deg == 120.0 else _image_point(120.0, view)
    o = orientation_lib.from_dense_analysis(
        CENTRE, b, np.array([[int(clockwise)]]), rv_insertion=rv, view=view
    )
    if rv is None:
        assert o.offset == 0.0
    for deg in np.arange(3.0, 360.0, 29.0):
        s = orientation_lib.dense_sector_position(
            _image_point(deg, view, r=13.0), CENTRE, b, clockwise
        )
        assert float(o.angle(s)) == pytest.approx(deg, abs=1e-6)
    # A loader that reversed the sector axis: coordinate s becomes 126 - s.
    rev = orientation_lib.from_dense_analysis(
        CENTRE, b, clockwise, rv_insertion=rv, view=view, sectors_reversed=True
    )
    s = orientation_lib.dense_sector_position(
        _image_point(200.0, view), CENTRE, b, clockwise
    )
    assert float(rev.angle(N - s)) == pytest.approx(200.0, abs=1e-6)


def test_dense_analysis_direction_follows_the_clockwise_flag():
    b = _image_point(120.0, "apex")
    assert orientation_lib.from_dense_analysis(CENTRE, b, 0).direction == "ccw"
    assert orientation_lib.from_dense_analysis(CENTRE, b, 1).direction == "cw"
    assert orientation_lib.from_dense_analysis(CENTRE, b, 0, view="base").direction == (
        "cw"
    )
    with pytest.raises(ValueError, match="coincide"):
        orientation_lib.dense_sector_position(CENTRE, CENTRE, CENTRE, False)
    with pytest.raises(ValueError, match="PositionB"):
        orientation_lib.from_dense_analysis(CENTRE, [1.0, np.nan], False)
    with pytest.raises(ValueError, match="view"):
        orientation_lib.from_dense_analysis(CENTRE, b, False, view="side")
