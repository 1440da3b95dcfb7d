"""Evaluation on a split: the paper's metrics, per-slice CSV and figures.

`lma-tf evaluate --model_dir=M --split=test --output_dir=R` (or `--compare=M1,M2`)
writes R/metrics.json, R/per_slice.csv, R/figures/*.png; with --compare,
R/comparison.md, R/comparison.json and R/comparison.png.
"""

from __future__ import annotations

import os

import numpy as np

from lma_tf import atomic, constants, inference, rules, textsafe
from lma_tf.evaluation import metrics
from lma_tf.training import run_dir
from lma_tf.viz import charts
from lma_tf.viz import strain as strain_fig


def evaluate(
    model_dir: str,
    output_dir: str,
    records_dir: str = "",
    split: str = "test",
    num_figures: int = 6,
) -> dict:
    """Scores one trained experiment; writes metrics.json, CSV and figures."""
    config = run_dir.load_config(model_dir)
    if records_dir:
        config.data.records_dir = records_dir
    predictor = inference.load_predictor(config, model_dir)
    batch, pred = inference.predict_split(config, predictor, split)
    # The positional arrays of metrics.sector_metrics / per_slice_rows.
    arrays = (
        batch.true_tos,
        pred.tos_ms,
        pred.combined_tos_ms,
        batch.true_lma,
        rules.lma_call(pred.lma_probability).astype(np.int64),
        batch.scar,
        batch.has_scar,
        batch.weight,
    )
    result = metrics.sector_metrics(*arrays, float(config.data.frame_period_ms))
    result.update(_decision_and_calibration(batch, pred, output_dir))
    ids = list(zip(batch.subject_id, batch.slice_id))
    result.update(
        {
            "experiment": config.name,
            "split": split,
            "num_slices": len(ids),
            "num_subjects": len({s for s, _ in ids}),
            "num_labelled_slices": int((batch.weight.sum(axis=1) > 0).sum()),
        }
    )
    os.makedirs(output_dir, exist_ok=True)
    metrics.write_json(result, os.path.join(output_dir, "metrics.json"))
    rows = metrics.per_slice_rows(ids, *arrays)
    metrics.write_csv(rows, os.path.join(output_dir, "per_slice.csv"))
    _figures(batch, pred, output_dir, num_figures)
    return result


def _decision_and_calibration(
    batch: inference.SliceBatch, pred: inference.Predictions, output_dir: str
) -> dict:
    """Pacing-target accuracy per subject and the LMA probability's calibration.

    Decision metrics (`lma_tf.decision.report`): whether the top recommended
    AHA segment is the true latest-activating scar-free one (synthetic
    convention: the default orientation). Calibration: expected calibration
    error over 15 bins and a reliability diagram; a model with no LMA head
    gives 0/1 probabilities, whose ECE is its error rate.
    """
    from lma_tf.decision import calibration
    from lma_tf.decision import report as decision_report
    from lma_tf.viz import reliability

    out: dict = {}
    labelled = batch.weight.sum(axis=1) > 0
    if labelled.any():
        out["lma_ece"] = calibration.ece(
            pred.lma_probability, batch.true_lma, batch.weight
        )
        reliability.plot_reliability(
            {"P(LMA)": pred.lma_probability},
            batch.true_lma,
            os.path.join(output_dir, "reliability.png"),
            batch.weight,
        )
    if pred.tos_ms is not None:
        slices = decision_report.predicted_slices(
            batch.subject_id,
            batch.slice_id,
            batch.slice_location,
            pred.tos_ms,
            pred.lma_probability,
            batch.true_tos,
            batch.scar,
            batch.has_tos,
            batch.has_scar,
        )
        decision = decision_report.decision_metrics(slices)
        for key in ("top1_accuracy", "top2_accuracy", "adjacent_accuracy"):
            out[f"decision_{key}"] = decision[key]
        out["decision_num_subjects"] = decision["num_subjects"]
    return out


def _figures(
    batch: inference.SliceBatch,
    pred: inference.Predictions,
    output_dir: str,
    num_figures: int,
) -> None:
    """Strain + TOS figures: scarred slices first (where the heads disagree)."""
    fig_dir = os.path.join(output_dir, "figures")
    scar_first = np.argsort(
        -(batch.scar >= constants.SCAR_THRESHOLD).sum(axis=1), kind="stable"
    )
    combined = pred.combined_tos_ms
    for i in scar_first[:num_figures]:
        subject, slice_id = batch.subject_id[i], batch.slice_id[i]
        name = textsafe.safe_name(f"{subject}_{slice_id}") + ".png"
        strain_fig.plot_strain_tos(
            batch.strain[i][:, : batch.num_frames[i]],
            true_tos=batch.true_tos[i],
            pred_tos=None if pred.tos_ms is None else pred.tos_ms[i],
            combined_tos=None if combined is None else combined[i],
            scar_fraction=batch.scar[i] if batch.has_scar[i] else None,
            title=f"{textsafe.clean(subject)} / {textsafe.clean(slice_id)}",
            path=textsafe.inside(fig_dir, name),
        )


def compare(
    model_dirs: list[str], output_dir: str, records_dir: str = "", split: str = "test"
) -> dict[str, dict]:
    """Evaluates several experiments on the same records; writes the table."""
    results = {}
    for model_dir in model_dirs:
        name = run_dir.load_config(model_dir).name
        if name in results:  # two runs of one experiment: tell them apart
            name = f"{name} ({os.path.basename(os.path.normpath(model_dir))})"
        sub = os.path.join(output_dir, textsafe.safe_name(name))
        results[name] = evaluate(model_dir, sub, records_dir, split)
    table = metrics.comparison_table(results)
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_text(os.path.join(output_dir, "comparison.md"), table + "\n")
    metrics.write_json(results, os.path.join(output_dir, "comparison.json"))
    charts.plot_comparison(
        results,
        ["tos_mae_ms", "tos_mae_ms_scar", "combined_tos_mae_ms", "lma_accuracy"],
        os.path.join(output_dir, "comparison.png"),
    )
    return results
