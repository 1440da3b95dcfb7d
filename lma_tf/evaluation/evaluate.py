"""Evaluation on a split: the paper's metrics, per-slice CSV and figures.

`lma-tf evaluate --model_dir=M --split=test --output_dir=R` (or `--compare=M1,M2`)
writes R/metrics.json, R/per_slice.csv, R/reliability.png,
R/decision_quality.png (labelled subjects with a target), R/figures/*.png;
with --compare, R/comparison.md, R/comparison.json, R/comparison.png and
R/cost_frontier.png (combined TOS MAE against FLOPs per example).
"""

from __future__ import annotations

import os

import numpy as np

from lma_tf import atomic, constants, inference, rules, textsafe
from lma_tf.evaluation import metrics
from lma_tf.models import registry
from lma_tf.training import run_dir
from lma_tf.viz import charts
from lma_tf.viz import strain as strain_fig

# MC-dropout passes per slice for the TOS intervals (0: constant-width intervals).
MC_SAMPLES = 20
CALIBRATION_SPLIT = "val"
_MC_CHUNK = 256  # slices per MC-dropout call, to bound memory


def evaluate(
    model_dir: str,
    output_dir: str,
    records_dir: str = "",
    split: str = "test",
    num_figures: int = 6,
    mc_samples: int = MC_SAMPLES,
) -> dict:
    """Scores one trained experiment; writes metrics.json, CSV and figures.

    Besides the paper's metrics, the validation split calibrates P(LMA)
    (`lma_calibration`) and the 90 % TOS intervals (`tos_interval`), which
    are then scored on `split`; see `_calibrate_lma` and `_tos_intervals`.
    """
    config = run_dir.load_config(model_dir)
    if records_dir:
        config.data.records_dir = records_dir
    kind = registry.get(config.model.kind)
    model = run_dir.restore_best(config, model_dir) if kind.is_network else None
    if model is not None:
        from lma_tf.models import test_time

        net = test_time.wrap(model, config)
        predictor = inference.network_predictor(net, kind)
    else:
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
    val, why_not = _validation(config, predictor, split, batch, pred)
    result["calibration_split"] = CALIBRATION_SPLIT if val else None
    os.makedirs(output_dir, exist_ok=True)
    calib, calibrated = _calibrate_lma("lma" in kind.heads, val, why_not, batch, pred)
    result.update(calib)
    result.update(_decision_and_calibration(batch, pred, output_dir, calibrated))
    result.update(_tos_intervals(model, val, why_not, batch, pred, mc_samples))
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
    metrics.write_json(result, os.path.join(output_dir, "metrics.json"))
    rows = metrics.per_slice_rows(ids, *arrays)
    metrics.write_csv(rows, os.path.join(output_dir, "per_slice.csv"))
    _figures(batch, pred, output_dir, num_figures)
    return result


_Split = tuple[inference.SliceBatch, inference.Predictions]


def _validation(
    config, predictor: inference.Predictor, split: str, batch, pred
) -> tuple[_Split | None, str]:
    """The calibration split's slices and predictions, or (None, why not)."""
    if split == CALIBRATION_SPLIT:
        return (batch, pred), ""
    try:
        val = inference.predict_split(config, predictor, CALIBRATION_SPLIT)
    except ValueError as e:  # an empty split
        return None, f"no calibration: {e}"
    if not (val[0].weight > 0).any():
        return None, f"no calibration: the {CALIBRATION_SPLIT!r} split has no labels"
    return val, ""


def _calibrate_lma(
    has_lma_head: bool, val: _Split | None, why_not: str, batch, pred
) -> tuple[dict, np.ndarray | None]:
    """Fits P(LMA)'s calibration on the validation split; applies it to `pred`.

    Temperature scaling, or isotonic regression where its cross-fitted ECE on
    the validation split is lower (`calibration.select_calibrator`). Returns
    ({"lma_calibration": the calibrator and how it was chosen}, the
    calibrated probabilities of `pred`, or None when nothing was fitted: no
    LMA head, whose 0/1 calls have nothing to rescale, no validation labels,
    or one class only).
    """
    from lma_tf.decision import calibration

    if not has_lma_head:
        return {"lma_calibration": {"method": "none", "reason": "no LMA head"}}, None
    if val is None:
        return {"lma_calibration": {"method": "none", "reason": why_not}}, None
    vb, vp = val
    try:
        calibrator, info = calibration.select_calibrator(
            vp.lma_probability, vb.true_lma, vb.weight, groups=np.asarray(vb.subject_id)
        )
    except ValueError as e:
        reason = f"no calibration: {e}"
        return {"lma_calibration": {"method": "none", "reason": reason}}, None
    doc = calibrator.to_dict() | {"fitted_on": CALIBRATION_SPLIT} | info
    return {"lma_calibration": doc}, calibrator(pred.lma_probability)


def _decision_and_calibration(
    batch: inference.SliceBatch,
    pred: inference.Predictions,
    output_dir: str,
    calibrated: np.ndarray | None = None,
) -> dict:
    """Pacing-target accuracy per subject and the LMA probability's calibration.

    Decision metrics (`lma_tf.decision.report`): whether the top recommended
    AHA segment is the true latest-activating scar-free one (synthetic
    convention: the default orientation), from the model's own probabilities.
    Calibration: expected calibration error over 15 bins before
    (`lma_ece_uncalibrated`) and after (`lma_ece`) the validation-fitted
    calibration, and a reliability diagram with both curves; a model with no
    LMA head gives 0/1 probabilities, whose ECE is its error rate. With TOS,
    decision_quality.png: top-1 / top-2 by the true target's margin.
    """
    from lma_tf.decision import calibration
    from lma_tf.decision import report as decision_report
    from lma_tf.viz import reliability

    out: dict = {}
    labelled = batch.weight.sum(axis=1) > 0
    if labelled.any():
        raw = calibration.ece(pred.lma_probability, batch.true_lma, batch.weight)
        out["lma_ece_uncalibrated"] = raw
        out["lma_ece"] = raw
        curves = {"P(LMA)": pred.lma_probability}
        if calibrated is not None:
            out["lma_ece"] = calibration.ece(calibrated, batch.true_lma, batch.weight)
            curves = {"uncalibrated": pred.lma_probability, "calibrated": calibrated}
        reliability.plot_reliability(
            curves,
            batch.true_lma,
            os.path.join(output_dir, "reliability.png"),
            batch.weight,
        )
    if pred.tos_ms is not None:
        slices = batch.predicted_slices(pred.tos_ms, pred.lma_probability)
        decision = decision_report.decision_metrics(slices)
        out.update(decision_report.decision_scores(slices, decision))
        from lma_tf.viz import decision_quality

        decision_quality.write_if_targets(decision, output_dir)
    return out


def _mc_spread(model, batch: inference.SliceBatch, num_samples: int) -> tuple:
    """(spread, raw 90 % lo, raw hi) of `num_samples` MC-dropout passes, (N, 126)."""
    from lma_tf.decision import intervals, uncertainty

    spread, lo, hi = [], [], []
    for start in range(0, len(batch), _MC_CHUNK):
        x = batch.model_input[start : start + _MC_CHUNK]
        tos, prob = uncertainty.mc_dropout(model, x, num_samples)
        spread.append(intervals.mc_spread(tos))
        summary = uncertainty.summarise_members(tos, prob)
        lo.append(summary["tos_lo_ms"])
        hi.append(summary["tos_hi_ms"])
    return np.concatenate(spread), np.concatenate(lo), np.concatenate(hi)


def _tos_intervals(
    model, val: _Split | None, why_not: str, batch, pred, mc_samples: int
) -> dict:
    """90 % intervals of the combined TOS, made honest on the validation split.

    With a network that has dropout (and `mc_samples` > 0), the spread of
    `mc_samples` MC-dropout passes sets each sector's relative width and a
    split-conformal scale fitted on the validation split sets the overall
    width (`lma_tf.decision.intervals`); otherwise every sector gets the same
    half-width, the validation residual quantile. Scored on `split` as
    `tos_interval_coverage_90` (the share of labelled sectors whose true TOS
    is inside; goal 0.85-0.95); `tos_interval_coverage_90_raw` is the raw
    5-95 % range of the passes, before any scaling.
    """
    from lma_tf.decision import calibration, intervals, uncertainty

    out: dict = {"tos_interval_coverage_90": None}
    if pred.tos_ms is None:
        out["tos_interval"] = {"method": None, "reason": "no TOS head"}
        return out
    if val is None:
        out["tos_interval"] = {"method": None, "reason": why_not}
        return out
    vb, vp = val
    use_mc = model is not None and mc_samples > 0 and uncertainty.has_dropout(model)
    note = ""
    if model is None:
        note = "constant width: no network, no MC dropout"
    elif mc_samples <= 0:
        note = "constant width: MC dropout off (mc_samples=0)"
    elif not use_mc:
        note = "constant width: the network has no dropout"
    val_spread = test_spread = None
    if use_mc:
        val_spread = _mc_spread(model, vb, mc_samples)[0]
        test_spread, raw_lo, raw_hi = _mc_spread(model, batch, mc_samples)
        out["tos_interval_coverage_90_raw"] = calibration.interval_coverage(
            batch.true_tos, raw_lo, raw_hi, batch.weight
        )
    try:
        rule = intervals.fit(vb.true_tos, vp.combined_tos_ms, val_spread, vb.weight)
    except ValueError as e:
        out["tos_interval"] = {"method": None, "reason": f"no interval: {e}"}
        return out
    lo, hi = rule.bounds(pred.combined_tos_ms, test_spread)
    out["tos_interval_coverage_90"] = calibration.interval_coverage(
        batch.true_tos, lo, hi, batch.weight
    )
    width = np.where(batch.weight > 0, hi - lo, np.nan)
    out["tos_interval_mean_width_ms"] = (
        float(np.nanmean(width)) if np.isfinite(width).any() else None
    )
    out["tos_interval_method"] = rule.method
    out["tos_interval_scale"] = rule.scale
    out["tos_interval"] = rule.to_dict() | {
        "fitted_on": CALIBRATION_SPLIT,
        "mc_samples": mc_samples if use_mc else 0,
        "point": "combined_tos_ms",
        **({"note": note} if note else {}),
    }
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
    model_dirs: list[str],
    output_dir: str,
    records_dir: str = "",
    split: str = "test",
    cost: bool = True,
) -> dict[str, dict]:
    """Evaluates several experiments on the same records; writes the table.

    With `cost`, each result also gets what its network costs
    (`evaluation.cost.network_cost`: parameters, FLOPs per example,
    single-slice serving latency p50, training examples/s), shown as the
    cost columns of the table, and `cost_frontier.png` plots combined TOS
    MAE against FLOPs.
    """
    results = {}
    for model_dir in model_dirs:
        config = run_dir.load_config(model_dir)
        name = config.name
        if name in results:  # two runs of one experiment: tell them apart
            name = f"{name} ({os.path.basename(os.path.normpath(model_dir))})"
        sub = os.path.join(output_dir, textsafe.safe_name(name))
        results[name] = evaluate(model_dir, sub, records_dir, split)
        if cost:
            from lma_tf.evaluation import cost as cost_lib

            results[name].update(cost_lib.network_cost(config))
    table = metrics.comparison_table(results)
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_text(os.path.join(output_dir, "comparison.md"), table + "\n")
    metrics.write_json(results, os.path.join(output_dir, "comparison.json"))
    charts.plot_comparison(
        results,
        ["tos_mae_ms", "tos_mae_ms_scar", "combined_tos_mae_ms", "lma_accuracy"],
        os.path.join(output_dir, "comparison.png"),
    )
    if cost:
        from lma_tf.evaluation import frontier
        from lma_tf.viz import frontier as frontier_fig

        rows = [{"name": n, **r} for n, r in results.items()]
        if frontier.plottable(rows):
            frontier_fig.plot_frontier(
                rows,
                os.path.join(output_dir, "cost_frontier.png"),
                title=f"Accuracy per cost ({split} split)",
            )
    return results
