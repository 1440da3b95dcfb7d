"""`lma-tf maps` places segments like `lma-tf report`: flags or the CSV's columns."""

from __future__ import annotations

import numpy as np
import pytest

from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation
from lma_tf.serving import prediction_csv
from lma_tf.viz import activation_map, aha

N = 126
# Sectors stored clockwise with segment 1 starting 10 sectors in.
STORED = Orientation("segment1", 10.0, "cw")
TARGET = 5  # basal inferolateral


def _slices(with_columns: bool) -> list[prediction_csv.PredictedSlice]:
    late = STORED.sector_segments("basal") == TARGET
    out = []
    for name, loc in (("base", 30.0), ("mid", 20.0), ("apex", 10.0)):
        tos = np.full(N, 17.0)
        if name == "base":
            tos[late] = 90.0
        cells = ("segment1", 10.0, "cw") if with_columns else (None, None, None)
        out.append(
            prediction_csv.PredictedSlice(
                "S",
                name,
                loc,
                tos,
                np.where(tos > 17, 0.9, 0.1),
                tos.copy(),
                orientation_sector0=cells[0],
                orientation_offset=cells[1],
                orientation_direction=cells[2],
            )  # fmt: skip
        )
    return out


def _latest_segment(path, orientation) -> int:
    ((rings, orients),) = activation_map.read_oriented_rings(
        str(path), orientation=orientation
    ).values()
    values = aha.aha_segment_values(rings, [r.tos_ms for r in rings], None, orients)
    return int(np.nanargmax(values)) + 1


def test_late_region_lands_in_its_segment_by_flags_or_by_columns(tmp_path):
    plain, tagged = tmp_path / "plain.csv", tmp_path / "tagged.csv"
    prediction_csv.write(_slices(False), str(plain))
    prediction_csv.write(_slices(True), str(tagged))
    # By the flags (no columns in the CSV).
    assert _latest_segment(plain, STORED) == TARGET
    # By the CSV's columns: they win over the (default) flags.
    assert _latest_segment(tagged, orientation_lib.DEFAULT) == TARGET
    assert _latest_segment(tagged, Orientation("rv_insertion", 3.0, "ccw")) == TARGET
    # The same sectors under the default convention are another segment.
    assert _latest_segment(plain, orientation_lib.DEFAULT) != TARGET
    paths = activation_map.activation_maps_from_csv(
        str(plain), str(tmp_path / "maps"), orientation=STORED
    )
    assert len(paths) == 2


def test_bad_orientation_cells_are_a_usage_error(tmp_path):
    from lma_tf.errors import UsageError

    slices = _slices(True)
    for s in slices:
        s.orientation_direction = "sideways"
    path = tmp_path / "bad.csv"
    prediction_csv.write(slices, str(path))
    with pytest.raises((UsageError, prediction_csv.PredictionCsvError)):
        activation_map.activation_maps_from_csv(str(path), str(tmp_path / "o"))


def test_maps_and_report_share_the_orientation_flags():
    from lma_tf.cli import orientation_flags

    assert orientation_flags.SECTOR0 == tuple(orientation_lib.LANDMARK_DEG)
    assert orientation_flags.DIRECTIONS == orientation_lib.DIRECTIONS
    default = Orientation(
        orientation_flags.DEFAULT_SECTOR0, 0.0, orientation_flags.DEFAULT_DIRECTION
    )
    assert default == orientation_lib.DEFAULT
