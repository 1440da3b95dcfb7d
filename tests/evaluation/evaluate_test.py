"""Evaluation: metrics.json, per-slice CSV, figures, comparison across experiments."""

import csv
import json
import os
import shutil

import pytest

from lma_tf.data import records
from lma_tf.errors import UsageError
from lma_tf.evaluation import evaluate, metrics


def test_evaluate_writes_the_papers_metrics(trained, tmp_path):
    root, dirs = trained
    result = evaluate.evaluate(
        dirs["multitask"], str(tmp_path), split="test", num_figures=2
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "tos_mae_ms", "tos_rmse_ms", "tos_mae_ms_scar", "tos_mae_ms_scar_free",
        "combined_tos_mae_ms", "lma_accuracy", "lma_precision", "lma_recall",
        "lma_f1", "num_slices", "num_subjects",
    ):  # fmt: skip
        assert key in saved, key
    manifest = records.load_manifest(str(root / "r"))
    assert saved["num_slices"] == manifest["splits"]["test"]["num_slices"]
    assert saved["num_subjects"] == manifest["splits"]["test"]["num_subjects"]
    assert 0.0 <= saved["lma_accuracy"] <= 1.0 and saved["tos_mae_ms"] > 0
    assert saved == json.loads(json.dumps(result))
    with open(tmp_path / "per_slice.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == saved["num_slices"]
    # Every test slice is labelled with 126 sectors: the overall MAE is the
    # mean of the per-slice MAEs, computed independently.
    per_slice = [float(r["tos_mae_ms"]) for r in rows]
    assert saved["tos_mae_ms"] == pytest.approx(sum(per_slice) / len(per_slice))
    acc = [float(r["lma_accuracy"]) for r in rows]
    assert saved["lma_accuracy"] == pytest.approx(sum(acc) / len(acc))
    pngs = os.listdir(tmp_path / "figures")
    assert len(pngs) == 2 and all(p.endswith(".png") for p in pngs)


def test_classical_and_regression_only_go_through_the_same_path(trained, tmp_path):
    _, dirs = trained
    # The train split: the only one of this tiny cohort sure to hold scar.
    reg = evaluate.evaluate(
        dirs["regression_only"], str(tmp_path / "r"), split="train", num_figures=0
    )
    cla = evaluate.evaluate(
        dirs["classical"], str(tmp_path / "c"), split="train", num_figures=0
    )
    for r in (reg, cla):
        # Without a classifier, combined TOS equals the regressed TOS.
        assert r["combined_tos_mae_ms"] == pytest.approx(r["tos_mae_ms"])
        assert r["lma_accuracy"] is not None
    # The classical detector calls scar late: large error on scar slices.
    assert cla["tos_mae_ms_scar"] > cla["tos_mae_ms_scar_free"]


def test_compare_writes_a_table_across_experiments(trained, tmp_path):
    _, dirs = trained
    results = evaluate.compare(list(dirs.values()), str(tmp_path))
    assert set(results) == {"multitask", "regression_only", "classical"}
    table = (tmp_path / "comparison.md").read_text()
    assert table == metrics.comparison_table(results) + "\n"
    assert all(name in table for name in results)
    assert (tmp_path / "comparison.png").stat().st_size > 1000


def test_untrained_model_dir_is_refused(trained, tmp_path):
    with pytest.raises(UsageError, match="config.json not found"):
        evaluate.evaluate(str(tmp_path), str(tmp_path / "out"))
    # A config but no checkpoint: said so, and how to get one.
    _, dirs = trained
    shutil.copy(os.path.join(dirs["multitask"], "config.json"), tmp_path)
    with pytest.raises(UsageError, match="no trained checkpoint.*lma-tf train"):
        evaluate.evaluate(str(tmp_path), str(tmp_path / "out"))
