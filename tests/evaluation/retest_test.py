"""Test-retest of the decision: same synthetic hearts, measurement noise redrawn."""

import csv
import json

import numpy as np
import pytest

from lma_tf import testing
from lma_tf.data import synthetic
from lma_tf.errors import UsageError
from lma_tf.evaluation import retest
from lma_tf.training import crossval


def test_a_remeasured_subject_is_the_same_heart_with_new_noise():
    first = synthetic.generate_subject(synthetic.subject_rng(3, 5), "SYN0005")
    again = synthetic.generate_subject(synthetic.subject_rng(3, 5), "SYN0005")
    other = synthetic.generate_subject(
        synthetic.subject_rng(3, 5),
        "SYN0005",
        noise_rng=synthetic.remeasure_rng(3, 1, 5),
    )
    assert len(first.slices) == len(other.slices) and first.group == other.group
    for a, b, c in zip(first.slices, again.slices, other.slices, strict=True):
        np.testing.assert_array_equal(a.strain_matrix, b.strain_matrix)
        np.testing.assert_array_equal(a.tos_ms, c.tos_ms)
        np.testing.assert_array_equal(a.scar_fraction, c.scar_fraction)
        assert a.slice_id == c.slice_id and a.slice_location == c.slice_location
        assert a.strain_matrix.shape == c.strain_matrix.shape
        diff = np.abs(a.strain_matrix - c.strain_matrix)
        # New noise of the cohort's size (0.007-0.012 before SVD), not a new heart.
        assert 1e-3 < diff.mean() < 0.02, diff.mean()
    draw2 = synthetic.remeasure_rng(3, 2, 5).standard_normal(4)
    assert not np.allclose(draw2, synthetic.remeasure_rng(3, 1, 5).standard_normal(4))


def test_subject_ids_and_draws_are_checked():
    assert synthetic.subject_index(synthetic.subject_id_for(42)) == 42
    with pytest.raises(ValueError, match="not a synthetic subject id"):
        synthetic.subject_index("patient7")
    with pytest.raises(ValueError, match="draw must be >= 1"):
        synthetic.remeasure_rng(0, 0, 1)
    with pytest.raises(UsageError, match="not a synthetic subject id"):
        retest.remeasured(["P001"], 0, "passive", 1)


def _q(top1: bool, top2: bool = True, ties=()) -> dict:
    return {"top1": top1, "top2": top2, "within_5ms": top1, "near_ties": list(ties)}


def test_summary_figures_by_hand():
    # a: always 5 and right; b: 5 then 11 (unstable), right at draw 0 only;
    # c: no target throughout, wrong every time.
    firsts = {"a": [5, 5, 5], "b": [5, 11, 5], "c": [None, None, None]}
    hits = {
        "a": [_q(True)] * 3,
        "b": [_q(True, ties=[11]), _q(False), _q(True)],
        "c": [_q(False, False)] * 3,
    }
    s = retest.summarize(firsts, hits)
    assert s["num_subjects"] == 3 and s["num_draws"] == 3
    assert [p["top1"] for p in s["per_draw"]] == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert [p["top2"] for p in s["per_draw"]] == pytest.approx([2 / 3] * 3)
    assert s["top1"]["mean"] == pytest.approx(5 / 9)
    assert s["top1"]["sd"] == pytest.approx(np.std([2 / 3, 1 / 3, 2 / 3], ddof=1))
    assert (s["top1"]["min"], s["top1"]["max"]) == pytest.approx((1 / 3, 2 / 3))
    assert s["first_target_same_as_draw0"] == pytest.approx(5 / 6)
    assert s["num_stable"] == 2 and s["stable_share"] == pytest.approx(2 / 3)
    assert s["top1_draw0_stable"] == pytest.approx(0.5)
    assert s["top1_draw0_unstable"] == pytest.approx(1.0)
    # b had a near-tie at draw 0 and moved; a and c had none and held.
    assert s["stable_share_with_near_tie"] == 0.0
    assert s["stable_share_without_near_tie"] == 1.0
    averaged = retest.summarize_averaged({"a": _q(True), "b": _q(False, True)})
    assert averaged == {"top1": 0.5, "top2": 1.0, "within_5ms": 0.5}
    assert retest.summarize_averaged({})["top1"] is None


def test_retest_reproduces_the_fold_and_measures_again(tmp_path):
    records_dir = testing.synthetic_records(str(tmp_path / "data"), 9, 4)
    out = str(tmp_path / "cv")
    crossval.prepare_folds(records_dir, out, 3, 0.15)
    c = testing.tiny_config(
        crossval.experiment_config("multitask"), records_dir, epochs=1
    )
    result = crossval.run_fold(c, out, 0, progress=False)
    exp_dir = str(tmp_path / "cv" / "multitask")

    with pytest.raises(UsageError, match="seed 5.*not the one cross-validated"):
        retest.retest(exp_dir, 5, "passive", 1, str(tmp_path / "bad"), progress=False)
    assert not (tmp_path / "bad").exists()

    doc = retest.retest(exp_dir, 4, "passive", 2, str(tmp_path / "rt"), progress=False)
    assert doc["folds"] == [0] and doc["num_draws"] == 3
    # Draw 0 is the original measurement: the fold's own cross-validated figure.
    metrics = result["metrics"]
    assert doc["per_draw"][0]["top1"] == pytest.approx(
        metrics["decision_top1_accuracy"]
    )
    assert doc["num_subjects"] == metrics["decision_num_subjects"]
    assert set(doc["averaged"]) == {"top1", "top2", "within_5ms"}
    assert 0.0 <= doc["averaged"]["top1"] <= doc["averaged"]["top2"] <= 1.0
    saved = json.loads((tmp_path / "rt" / retest.RETEST_JSON).read_text())
    assert saved["per_draw"] == doc["per_draw"]
    with open(tmp_path / "rt" / retest.RETEST_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == doc["num_subjects"]
    assert set(rows[0]) >= {"subject_id", "fold", "true_target", "draw2", "stable"}
    assert "near_ties_draw0" in rows[0]
    assert sum(r["stable"] == "True" for r in rows) == doc["num_stable"]
    assert (tmp_path / "rt" / retest.RETEST_PNG).stat().st_size > 10_000

    with pytest.raises(UsageError, match="no finished fold"):
        retest.held_out_folds(str(tmp_path))

    # The original measurement predicted otherwise than the saved fold (as
    # another scar model's strain would be) is refused, naming the slice.
    (fold,) = retest.held_out_folds(exp_dir)
    tos = fold.tos_ms.copy()
    retest.check_same_predictions(fold, fold.slice_ids, tos + 0.1, "passive")
    tos[1, 70] += 3.0
    with pytest.raises(UsageError, match=f"slice {fold.slice_ids[1]} .*3.0 ms"):
        retest.check_same_predictions(fold, fold.slice_ids, tos, "tethered")
