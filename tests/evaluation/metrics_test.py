"""Evaluation metrics against hand-computed cases (numpy only, no TensorFlow)."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

from lma_tf import constants, rules
from lma_tf.evaluation import metrics

# Two slices x 4 sectors, small enough to compute by hand. Sector 3 of slice 1
# has weight 0 (a padded sector): its error of 6 ms must never count.
TRUE_TOS = np.array([[17.0, 50.0, 80.0, 17.0], [17.0, 17.0, 40.0, 60.0]])
PRED_TOS = np.array([[17.0, 60.0, 70.0, 21.0], [20.0, 17.0, 40.0, 66.0]])
LMA_PROB = np.array([[0.1, 0.9, 0.8, 0.2], [0.6, 0.3, 0.7, 0.9]])
SCAR = np.array([[0.0, 0.0, 0.0, 0.7], [0.0, 0.2, 0.0, 0.0]])  # slice 0 is scar
WEIGHT = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
HAS_SCAR = np.array([1, 1])


def _inputs(**overrides) -> dict:
    true_lma = np.array([[0, 1, 1, 0], [0, 0, 1, 1]])
    args = dict(
        true_tos=TRUE_TOS,
        pred_tos=PRED_TOS,
        combined_tos=rules.combine_tos(PRED_TOS, LMA_PROB),
        true_lma=true_lma,
        pred_lma=(LMA_PROB >= 0.5).astype(int),
        scar_fraction=SCAR,
        has_scar=HAS_SCAR,
        weight=WEIGHT,
    )
    args.update(overrides)
    return args


def test_two_slice_example_by_hand():
    m = metrics.sector_metrics(**_inputs())
    # Counted errors: 0, 10, 10, 4 | 3, 0, 0 -> sum 27, squares 225, n 7.
    assert m["num_sectors"] == 7
    assert m["tos_mae_ms"] == pytest.approx(27 / 7)
    assert m["tos_rmse_ms"] == pytest.approx(math.sqrt(225 / 7))
    assert m["tos_mae_frames"] == pytest.approx(27 / 7 / 17)
    assert m["tos_rmse_frames"] == pytest.approx(math.sqrt(225 / 7) / 17)
    # Scar slice 0: (0 + 10 + 10 + 4) / 4; scar-free slice 1: (3 + 0 + 0) / 3.
    assert m["tos_mae_ms_scar"] == pytest.approx(6.0)
    assert m["tos_mae_ms_scar_free"] == pytest.approx(1.0)
    # Combined zeroes sector 3 of slice 0 (prob 0.2): 0, 10, 10, 0 | 3, 0, 0.
    assert m["combined_tos_mae_ms"] == pytest.approx(23 / 7)
    assert m["combined_tos_rmse_ms"] == pytest.approx(math.sqrt(209 / 7))
    assert m["combined_tos_mae_ms_scar"] == pytest.approx(5.0)
    assert m["combined_tos_mae_ms_scar_free"] == pytest.approx(1.0)
    assert (m["num_scar_slices"], m["num_scar_free_slices"]) == (1, 1)


def test_classification_against_hand_count():
    m = metrics.sector_metrics(**_inputs())
    # Slice 0: tp tp tn tn. Slice 1 (3 counted): fp, tn, tp.
    assert (m["lma_tp"], m["lma_fp"], m["lma_fn"], m["lma_tn"]) == (3, 1, 0, 3)
    assert m["lma_accuracy"] == pytest.approx(6 / 7)
    assert m["lma_precision"] == pytest.approx(3 / 4)
    assert m["lma_recall"] == pytest.approx(1.0)
    assert m["lma_f1"] == pytest.approx(2 * 0.75 / 1.75)


def test_weighted_out_values_never_move_the_metrics():
    base = metrics.sector_metrics(**_inputs())
    pred, true, scar = PRED_TOS.copy(), TRUE_TOS.copy(), SCAR.copy()
    pred[1, 3], true[1, 3], scar[1, 3] = np.nan, 999.0, 1.0
    lma = np.array([[0, 1, 1, 0], [0, 0, 1, 0]])
    moved_combined = rules.combine_tos(PRED_TOS, LMA_PROB)
    moved_combined[1, 3] = -50.0
    moved = metrics.sector_metrics(
        **_inputs(
            true_tos=true,
            pred_tos=pred,
            combined_tos=moved_combined,
            true_lma=lma,
            scar_fraction=scar,
        )
    )
    assert moved == base
    # An unlabelled third slice (weight 0 everywhere) with garbage, too.
    rng = np.random.default_rng(0)
    extra = dict(
        true_tos=np.vstack([TRUE_TOS, rng.uniform(0, 500, (1, 4))]),
        pred_tos=np.vstack([PRED_TOS, rng.uniform(0, 500, (1, 4))]),
        combined_tos=np.vstack(
            [rules.combine_tos(PRED_TOS, LMA_PROB), np.full((1, 4), np.inf)]
        ),
        true_lma=np.vstack([_inputs()["true_lma"], np.ones((1, 4))]),
        pred_lma=np.vstack([_inputs()["pred_lma"], np.zeros((1, 4))]),
        scar_fraction=np.vstack([SCAR, np.ones((1, 4))]),
        has_scar=np.array([1, 1, 1]),
        weight=np.vstack([WEIGHT, np.zeros((1, 4))]),
    )
    assert metrics.sector_metrics(**extra) == base


def test_scar_split_and_unknown_scar():
    # Slice 1 crosses the threshold only at 0.5 exactly: scar too.
    scar = SCAR.copy()
    scar[1, 0] = constants.SCAR_THRESHOLD
    m = metrics.sector_metrics(**_inputs(scar_fraction=scar))
    assert (m["num_scar_slices"], m["num_scar_free_slices"]) == (2, 0)
    assert m["tos_mae_ms_scar"] == pytest.approx(27 / 7)
    assert m["tos_mae_ms_scar_free"] is None
    # Without scar data for slice 0, it counts as scar-free.
    m = metrics.sector_metrics(**_inputs(has_scar=np.array([0, 1])))
    assert m["tos_mae_ms_scar"] is None
    assert m["tos_mae_ms_scar_free"] == pytest.approx(27 / 7)
    assert m["num_slices_scar_unknown"] == 1
    m = metrics.sector_metrics(**_inputs(scar_fraction=None, has_scar=None))
    assert m["tos_mae_ms_scar"] is None and m["num_slices_scar_unknown"] == 2


def test_not_computable_is_none_and_json_clean(tmp_path):
    # Classification-only model: no TOS metrics, LMA metrics present.
    m = metrics.sector_metrics(**_inputs(pred_tos=None, combined_tos=None))
    for key in ("tos_mae_ms", "tos_rmse_frames", "combined_tos_mae_ms_scar"):
        assert m[key] is None
    assert m["lma_f1"] == pytest.approx(6 / 7)
    json.dumps(m, allow_nan=False)
    # Nothing counted at all.
    m = metrics.sector_metrics(**_inputs(weight=np.zeros_like(WEIGHT)))
    assert m["num_sectors"] == 0
    assert all(v is None for k, v in m.items() if not k.startswith("num_"))
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


def test_pred_lma_derived_from_tos_when_missing():
    m = metrics.sector_metrics(**_inputs(pred_lma=None))
    # Late = TOS > 18 ms. Slice 0 pred: 0 1 1 1 vs true 0 1 1 0 -> tn tp tp fp;
    # slice 1 pred (3 counted): 1 0 1 vs true 0 0 1 -> fp tn tp.
    assert (m["lma_tp"], m["lma_fp"], m["lma_fn"], m["lma_tn"]) == (3, 2, 0, 2)


def test_f1_when_no_lma_is_true_and_none_is_called():
    # Only slice 1's counted sectors, all negative in truth and prediction.
    none = np.zeros_like(WEIGHT)
    weight = WEIGHT * np.array([[0.0], [1.0]])
    m = metrics.sector_metrics(**_inputs(true_lma=none, pred_lma=none, weight=weight))
    assert (m["lma_precision"], m["lma_recall"], m["lma_f1"]) == (1.0, 1.0, 1.0)
    assert m["lma_accuracy"] == 1.0 and m["lma_tp"] == 0
    # One missed LMA sector: F1 falls to 0, not 1.
    one = none.copy()
    one[1, 0] = 1
    m = metrics.sector_metrics(**_inputs(true_lma=one, pred_lma=none, weight=weight))
    assert m["lma_f1"] == 0.0


def test_no_predicted_positives_gives_zero_precision():
    m = metrics.sector_metrics(**_inputs(pred_lma=np.zeros_like(WEIGHT)))
    assert m["lma_precision"] == 0.0 and m["lma_recall"] == 0.0
    assert m["lma_f1"] == 0.0
    assert m["lma_accuracy"] == pytest.approx(4 / 7)


def test_full_ring_matches_direct_numpy():
    rng = np.random.default_rng(1)
    n, s = 3, constants.NUM_SECTORS
    true = rng.uniform(17, 140, (n, s))
    pred = true + rng.normal(0, 5, (n, s))
    m = metrics.sector_metrics(
        true, pred, None, None, None, None, None, np.ones((n, s)), frame_period_ms=20
    )
    err = pred - true
    assert m["tos_mae_ms"] == pytest.approx(np.abs(err).mean())
    assert m["tos_rmse_frames"] == pytest.approx(np.sqrt((err**2).mean()) / 20)
    assert m["num_sectors"] == n * s


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="pred_tos"):
        metrics.sector_metrics(**_inputs(pred_tos=PRED_TOS[:, :3]))
    with pytest.raises(ValueError, match="has_scar"):
        metrics.sector_metrics(**_inputs(has_scar=np.array([1, 1, 1])))


def test_per_slice_rows():
    args = _inputs()
    ids = [(b"p01", b"base"), ("p01", "mid")]
    rows = metrics.per_slice_rows(ids, **args)
    assert [r["slice_id"] for r in rows] == ["base", "mid"]
    assert rows[0]["subject_id"] == "p01"
    assert set(rows[0]) == set(metrics.CSV_COLUMNS)
    r0, r1 = rows
    assert r0["tos_mae_ms"] == pytest.approx(6.0)
    assert r1["tos_mae_ms"] == pytest.approx(1.0)
    assert r0["combined_tos_mae_ms"] == pytest.approx(5.0)
    assert (r0["scar_known"], r0["num_scar_sectors"], r1["num_scar_sectors"]) == (
        True,
        1,
        0,
    )
    assert r0["lma_accuracy"] == 1.0 and r0["lma_f1"] == 1.0
    assert r1["lma_accuracy"] == pytest.approx(2 / 3)
    assert r1["lma_f1"] == pytest.approx(2 / 3)  # p = 1/2, r = 1
    assert (r1["num_lma_true"], r1["num_lma_pred"]) == (1, 2)
    assert r1["true_max_tos_ms"] == 40.0  # sector 3 (60 ms) is not counted
    assert r1["pred_max_tos_ms"] == 66.0  # a prediction exists everywhere
    unlabelled = metrics.per_slice_rows(
        ids, **_inputs(weight=np.array([[1, 1, 1, 1], [0, 0, 0, 0]]))
    )[1]
    assert unlabelled["tos_mae_ms"] is None and unlabelled["lma_f1"] is None
    assert unlabelled["true_max_tos_ms"] is None
    with pytest.raises(ValueError, match="ids"):
        metrics.per_slice_rows(ids[:1], **args)


def test_write_csv_and_json_atomically(tmp_path):
    rows = metrics.per_slice_rows([("a", "1"), ("a", "2")], **_inputs())
    rows[1]["tos_mae_ms"] = None
    path = metrics.write_csv(rows, str(tmp_path / "out" / "slices.csv"))
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["slice_id"] for r in got] == ["1", "2"]
    assert float(got[0]["tos_mae_ms"]) == pytest.approx(6.0)
    assert got[1]["tos_mae_ms"] == ""

    m = metrics.sector_metrics(**_inputs())
    jpath = metrics.write_json(
        {"multitask": m, "n": np.int64(3)}, str(tmp_path / "m.json")
    )
    with open(jpath) as f:
        assert json.load(f)["multitask"]["tos_mae_ms"] == pytest.approx(27 / 7)
    with pytest.raises(ValueError):
        metrics.write_json({"bad": float("nan")}, jpath)
    with open(jpath) as f:  # the old file survives a failed write
        assert json.load(f)["n"] == 3
    assert sorted(os.listdir(tmp_path)) == ["m.json", "out"]  # no temp files
    assert os.listdir(tmp_path / "out") == ["slices.csv"]


def test_comparison_table():
    results = {
        "multitask": {"tos_mae_ms": 3.7123, "lma_f1": 0.81, "num_sectors": 252},
        "classification_only": {"tos_mae_ms": None, "lma_f1": 0.8},
    }
    table = metrics.comparison_table(
        results, keys=("tos_mae_ms", "lma_f1", "num_sectors")
    )
    lines = table.strip().splitlines()
    assert lines[0] == "| experiment | tos_mae_ms | lma_f1 | num_sectors |"
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| multitask | 3.712 | 0.810 | 252 |"
    assert lines[3] == "| classification_only | - | 0.800 | - |"
    default = metrics.comparison_table(results)
    assert all(k in default.splitlines()[0] for k in metrics.DEFAULT_TABLE_KEYS)
