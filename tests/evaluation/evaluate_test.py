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


def test_evaluate_calibrates_on_val_and_scores_intervals_on_test(trained, tmp_path):
    _, dirs = trained
    result = evaluate.evaluate(
        dirs["multitask"], str(tmp_path), split="test", num_figures=0, mc_samples=8
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["calibration_split"] == "val"
    calib = saved["lma_calibration"]
    assert calib["method"] in ("temperature", "isotonic"), calib
    assert calib["fitted_on"] == "val" and calib["num_sectors"] > 0
    if calib["method"] == "temperature":
        assert 0.05 <= calib["temperature"] <= 20.0
    assert 0.0 <= saved["lma_ece"] <= 1.0
    assert 0.0 <= saved["lma_ece_uncalibrated"] <= 1.0
    # The multitask network has dropout: MC-dropout spread, conformal scale.
    tos = saved["tos_interval"]
    assert saved["tos_interval_method"] == tos["method"] == "mc_dropout_conformal"
    assert tos["mc_samples"] == 8 and tos["scale"] > 0 and tos["floor_ms"] >= 0.5
    assert tos["residual_quantile_ms"] > 0
    assert 0.0 <= saved["tos_interval_coverage_90"] <= 1.0
    assert 0.0 <= saved["tos_interval_coverage_90_raw"] <= 1.0
    assert saved["tos_interval_mean_width_ms"] > 0
    assert result["tos_interval_scale"] == pytest.approx(tos["scale"])
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    # The test subjects have true targets: the decision by true margin.
    assert 0.0 <= saved["decision_clear_share"] <= 1.0
    assert (tmp_path / "decision_quality.png").stat().st_size > 1000
    # Evaluated on val itself, the conformal interval covers at least 90 %
    # of the sectors it was fitted on (by construction of the quantile).
    on_val = evaluate.evaluate(
        dirs["multitask"], str(tmp_path / "v"), split="val", num_figures=0,
        mc_samples=0,
    )  # fmt: skip
    assert on_val["tos_interval_method"] == "residual_conformal"
    assert "MC dropout off" in on_val["tos_interval"]["note"]
    assert on_val["tos_interval_coverage_90"] >= 0.9


def test_calibration_without_an_lma_head_or_a_val_split(trained, tmp_path):
    root, dirs = trained
    reg = evaluate.evaluate(
        dirs["regression_only"], str(tmp_path / "r"), split="test", num_figures=0
    )
    # No LMA head: nothing to rescale, the ECE is the raw one.
    assert reg["lma_calibration"] == {"method": "none", "reason": "no LMA head"}
    assert reg["lma_ece"] == reg["lma_ece_uncalibrated"]
    assert reg["tos_interval"]["method"] in (
        "mc_dropout_conformal",
        "residual_conformal",
    )
    cla = evaluate.evaluate(
        dirs["classical"], str(tmp_path / "c"), split="test", num_figures=0
    )
    assert cla["tos_interval_method"] == "residual_conformal"
    assert "no network" in cla["tos_interval"]["note"]
    # Records whose val split is empty: said so in metrics.json, no crash.
    empty = root / "no_val"
    shutil.copytree(root / "r", empty)
    manifest = json.loads((empty / "manifest.json").read_text())
    for name in manifest["splits"]["val"]["shards"]:
        (empty / name).unlink()
    manifest["splits"]["val"].update(shards=[], num_slices=0, num_subjects=0)
    (empty / "manifest.json").write_text(json.dumps(manifest))
    out = evaluate.evaluate(
        dirs["multitask"], str(tmp_path / "e"), str(empty), "test", num_figures=0
    )
    assert out["calibration_split"] is None
    assert out["lma_calibration"]["method"] == "none"
    assert "val" in out["lma_calibration"]["reason"]
    assert out["tos_interval_coverage_90"] is None
    assert out["tos_interval"]["method"] is None
    assert out["lma_ece"] == out["lma_ece_uncalibrated"]
    assert manifest["splits"]["test"]["num_slices"] == out["num_slices"]
