"""The prediction CSV: one writer and one reader, orientation carried per slice."""

from __future__ import annotations

import numpy as np
import pytest

from lma_tf.decision import uncertainty
from lma_tf.serving import prediction_csv as pcsv

N = 126


def _slice(slice_id: str, **orientation) -> pcsv.PredictedSlice:
    tos = np.linspace(17.0, 90.0, N)
    return pcsv.PredictedSlice(
        subject_id="P001",
        slice_id=slice_id,
        slice_location=-12.5,
        tos_ms=tos,
        lma_probability=np.linspace(0.0, 1.0, N),
        combined_tos_ms=np.where(tos > 50, tos, 17.0),
        **orientation,
    )


def test_round_trip_keeps_values_and_orientation(tmp_path):
    path = str(tmp_path / "p.csv")
    oriented = _slice(
        "s1",
        orientation_sector0="rv_insertion",
        orientation_offset=3.5,
        orientation_direction="cw",
    )
    rows = pcsv.write([oriented, _slice("s2")], path)
    assert rows == 2 * N
    back = pcsv.read(path)
    assert [s.slice_id for s in back] == ["s1", "s2"]
    np.testing.assert_allclose(back[0].tos_ms, oriented.tos_ms, atol=1e-4)
    assert (back[0].orientation_sector0, back[0].orientation_offset) == (
        "rv_insertion",
        3.5,
    )
    assert back[0].orientation_direction == "cw"
    assert back[1].orientation_sector0 is None  # not stated: flags decide
    # The report reads the slice's own orientation from these fields.
    o = uncertainty.slice_orientation(back[0])
    assert o is not None and o.direction == "cw"
    assert uncertainty.slice_orientation(back[1]) is None


def test_rows_of_one_slice_must_agree_on_orientation(tmp_path):
    path = tmp_path / "p.csv"
    pcsv.write(
        [
            _slice(
                "s1",
                orientation_sector0="rv_insertion",
                orientation_offset=0.0,
                orientation_direction="ccw",
            )
        ],
        str(path),
    )
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace(",ccw", ",cw")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(pcsv.PredictionCsvError, match=r":6: the orientation"):
        pcsv.read(str(path))
