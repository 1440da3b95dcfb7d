"""Per-segment tables: levels, TOS statistics, LMA share, scar, confidence, LGE."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from decision_samples import predicted, three_slices

from lma_tf.decision import segments, uncertainty
from lma_tf.decision.orientation import Orientation
from lma_tf.errors import UsageError


def _table(slices, **kw):
    return segments.subject_segments(uncertainty.as_ensemble(slices), **kw)


def test_statistics_of_a_segment():
    # Basal segment 5 = sectors 63-83: 14 late at 100 ms, 7 at 17 ms.
    slices = three_slices("p", late=range(63, 77), scar=range(80, 84))
    table = _table(slices)
    assert [s.segment for s in table] == list(range(1, 17))
    s5 = table[4]
    assert (s5.name, s5.level, s5.num_slices, s5.num_sectors) == (
        "basal inferolateral",
        "basal",
        1,
        21,
    )
    assert s5.tos_median_ms == 100.0
    assert s5.tos_q1_ms == 17.0 and s5.tos_q3_ms == 100.0
    assert s5.lma_fraction == pytest.approx(14 / 21)
    assert s5.lma_probability == pytest.approx((14 * 0.95 + 7 * 0.05) / 21)
    assert s5.scar_fraction == pytest.approx(4 * 0.8 / 21)
    assert s5.scar_source == "data" and not s5.scar
    assert s5.late and not s5.low_confidence and s5.tos_interval_ms is None
    assert s5.true_tos_median_ms == 100.0
    early = table[0]
    assert early.tos_median_ms == 17.0 and not early.late and early.lma_fraction == 0
    # Mid and apical rings are covered by their own slices only.
    assert table[6].num_slices == 1 and table[12].num_sectors == 31


def test_slices_of_one_level_are_pooled_and_missing_levels_not_imaged():
    slices = [
        predicted("p", "b1", 40.0, late=range(63, 84), tos_late=80.0),
        predicted("p", "b2", 35.0, late=range(63, 84), tos_late=120.0),
        predicted("p", "m", 20.0),
    ]
    # 40/35/20 mm: median spacing 10, axis 15-45 mm; thirds: 35 and 40 basal,
    # 20 apical, no mid slice.
    table = _table(slices)
    assert table[4].num_slices == 2 and table[4].num_sectors == 42
    assert table[4].tos_median_ms == 100.0  # median of 21 x 80 and 21 x 120
    assert table[12].imaged
    assert not table[6].imaged and table[6].tos_median_ms is None


def test_missing_sectors_do_not_count():
    s = predicted("p", "b", 30.0, late=range(63, 84))
    s.combined_tos_ms[63:70] = np.nan
    table = _table([s, predicted("p", "m", 20.0), predicted("p", "a", 10.0)])
    assert table[4].num_sectors == 14


@pytest.mark.parametrize("base_at_high", [True, False])
def test_basal_apical_order_from_either_scanner_convention(base_at_high):
    """Locations growing towards the base or towards the apex give one table."""
    slices = three_slices("p", late=range(63, 84))
    sign = 1.0 if base_at_high else -1.0
    flipped = [
        dataclasses.replace(s, slice_location=sign * s.slice_location) for s in slices
    ]
    ens = uncertainty.as_ensemble(flipped)
    assert segments.slice_levels(ens, base_at_high) == ["basal", "mid", "apical"]
    table = _table(flipped, base_at_high=base_at_high)
    assert table[4].late and table[4].level == "basal"
    # The wrong convention makes the late slice apical.
    wrong = _table(flipped, base_at_high=not base_at_high)
    assert not wrong[4].late and wrong[15].late  # apical lateral


def test_low_confidence_rules():
    # P(LMA) 0.55 on the late sectors: within the 0.15 margin of 0.5.
    slices = three_slices("p", late=range(63, 84), prob_late=0.55)
    s5 = _table(slices)[4]
    assert s5.late and s5.uncertain_fraction == 1.0 and s5.low_confidence
    assert "P(LMA) within 0.15 of 0.5 in 100% of its sectors" in s5.confidence_notes
    # A wide ensemble interval: members at 40 and 140 ms.
    a = three_slices("p", late=range(63, 84), tos_late=40.0)
    b = three_slices("p", late=range(63, 84), tos_late=140.0)
    ens = uncertainty.aggregate([a, b], ["a.csv", "b.csv"])
    s5 = segments.subject_segments(ens)[4]
    assert s5.tos_interval_ms == pytest.approx(0.9 * 100.0)
    assert any("interval 90 ms wide" in n for n in s5.confidence_notes)


def test_orientation_moves_the_segments():
    slices = three_slices("p", late=range(63, 84))
    # Read clockwise from the RV insertion, sectors 63-83 are the inferior wall.
    table = _table(slices, orientation=Orientation("rv_insertion", 0, "cw"))
    late = [s.segment for s in table if s.late]
    assert late == [4]


def test_lge_table_overrides_the_data_scar(tmp_path):
    path = tmp_path / "lge.csv"
    path.write_text(
        "subject_id,segment,scar_percent\n"
        "p,5,60\n"
        "p,basal anterior,10\n"
        "p,Mid-Inferior,\n"  # unknown: the data's scar stays
        "q,16,0\n"
    )
    lge = segments.read_segment_scar(str(path))
    assert lge == {"p": {5: 0.6, 1: 0.1}, "q": {16: 0.0}}
    table = _table(three_slices("p", late=range(63, 84)), lge=lge["p"])
    assert table[4].scar_fraction == 0.6 and table[4].scar_source == "lge_table"
    assert table[4].scar and table[9].scar_source == "data"


@pytest.mark.parametrize(
    "text, match",
    [
        ("subject_id,segment\np,5\n", "scar_fraction or scar_percent"),
        ("subject_id,segment,scar_fraction\np,17,0.5\n", r":2: segment '17'"),
        ("subject_id,segment,scar_fraction\np,5,1.5\n", r":2: scar_fraction 1.5"),
        ("subject_id,segment,scar_fraction\np,5,x\n", ":2:"),
        ("subject_id,segment,scar_fraction\np,5,0.1\np,5,0.2\n", ":3: segment 5"),
        ("subject_id,segment,scar_fraction\n,5,0.1\n", "empty subject_id"),
    ],
)
def test_bad_lge_tables_name_the_file_and_line(tmp_path, text, match):
    path = tmp_path / "lge.csv"
    path.write_text(text)
    with pytest.raises(UsageError, match=match) as e:
        segments.read_segment_scar(str(path))
    assert str(path) in str(e.value)


def test_to_dict_is_json_ready():
    s = _table(three_slices("p", late=range(63, 84)))[4].to_dict()
    assert s["segment"] == 5 and s["late"] and s["imaged"] and not s["low_confidence"]
    assert isinstance(s["tos_median_ms"], float) and s["confidence_notes"] == []
