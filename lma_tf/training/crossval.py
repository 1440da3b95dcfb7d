"""Subject-level k-fold cross-validation of an experiment (`lma-tf crossval`).

  O/folds/folds.json            subject -> fold (the same for every experiment)
  O/folds/fold{i}/              records of fold i (`lma_tf.data.folds`)
  O/<experiment>/fold{i}/model/ the run directory of fold i's model
  O/<experiment>/fold{i}/result.json       its held-out metrics (fold done)
  O/<experiment>/fold{i}/predictions.npz   its held-out predictions
  O/<experiment>/crossval.json, crossval.md   per-fold metrics, mean +- sd,
                                 pooled metrics (and the pooled decision by
                                 true margin); predictions.npz, per_slice.csv,
                                 per_subject.csv: the pooled predictions;
                                 decision_quality.png (top-1/top-2 by margin)

Each fold's model is trained on the other folds (minus a validation share,
used for checkpoint selection and for choosing a decision rule) and scored
on its own fold, which it never saw. A fold with a result.json is done and
skipped on a rerun; an interrupted fold resumes from its training backup.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import time

import ml_collections
import numpy as np

from lma_tf import atomic, inference, rules
from lma_tf import config as lma_config
from lma_tf.data import folds as folds_lib
from lma_tf.errors import UsageError
from lma_tf.evaluation import metrics, paired, rule_search
from lma_tf.models import registry
from lma_tf.training import run_dir

FOLDS_DIR = "folds"
RESULT_JSON = "result.json"
PREDICTIONS_NPZ = "predictions.npz"
SUMMARY_JSON = "crossval.json"
# Shown in the summaries; "_tuned": with the rule chosen on validation.
SUMMARY_KEYS = (
    *paired.METRICS,
    "combined_tos_mae_ms_scar_tuned",
    "lma_accuracy_tuned",
    "decision_top1_accuracy",
    "decision_top2_accuracy",
    "decision_within_5ms_accuracy",
    "decision_tie_set_accuracy",
    "decision_decisive_share",
    "decision_decisive_top1_accuracy",
    "decision_clear_share",
    "decision_clear_top1_accuracy",
    "lma_ece",
    "lma_ece_calibrated",
)


def experiment_config(
    name_or_path: str,
    epochs: int = 0,
    overrides: tuple[str, ...] = (),
) -> ml_collections.ConfigDict:
    """An experiment's config with `--epochs` and `FIELD=VALUE` overrides.

    Raises:
      UsageError: an unknown experiment, field or an invalid value.
    """
    config = lma_config.load_experiment(name_or_path)
    if epochs:
        config.train.epochs = int(epochs)
    for item in overrides:
        field, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set={item}: expected FIELD=VALUE")
        *parents, leaf = field.split(".")
        node = config
        try:
            for part in parents:
                node = node[part]
            old = node[leaf]
        except (KeyError, AttributeError, TypeError):
            raise UsageError(f"--set={item}: no config field {field!r}") from None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        try:
            node[leaf] = type(old)(value) if isinstance(old, float | int) else value
        except (TypeError, ValueError):
            kind = type(old).__name__
            raise UsageError(f"--set={item}: {field} takes a {kind}") from None
    try:
        return lma_config.validate_config(config)
    except ValueError as e:
        raise UsageError(str(e)) from None


def prepare_folds(
    records_dir: str,
    output_dir: str,
    num_folds: int,
    val_fraction: float,
    extra_train_dir: str = "",
) -> dict:
    """The shared fold records under `output_dir/folds` (written once);
    `extra_train_dir`'s slices join every fold's train split."""
    return folds_lib.make_fold_records(
        records_dir,
        os.path.join(output_dir, FOLDS_DIR),
        num_folds,
        val_fraction,
        extra_train_dir,
    )


def fold_records(output_dir: str, fold: int) -> str:
    """The records folder of `fold` (shared by every experiment)."""
    return folds_lib.fold_dir(os.path.join(output_dir, FOLDS_DIR), fold)


def experiment_dir(output_dir: str, config: ml_collections.ConfigDict) -> str:
    """Where one experiment's folds, summary and pooled predictions go."""
    return os.path.join(output_dir, config.name)


def fold_done(exp_dir: str, fold: int) -> bool:
    """Whether `fold` has its result (written last, so the fold is complete)."""
    return os.path.exists(os.path.join(exp_dir, f"fold{fold}", RESULT_JSON))


@dataclasses.dataclass
class Estimate:
    """Expected wall time of the folds still to run, from a few timed steps."""

    seconds: float
    step_seconds: float
    steps_per_epoch: int
    epochs: int
    folds: int
    epochs_left: int = 0  # over every training left (interrupted ones resume)

    def line(self, name: str) -> str:
        if not self.folds:
            return f"{name}: every fold already done"
        detail = (
            f"{self.folds} training(s), {self.epochs_left} epochs left of "
            f"{self.epochs} each, x {self.steps_per_epoch} steps at "
            f"{self.step_seconds:.2f} s/step"
            if self.step_seconds
            else f"{self.folds} fold(s), fitted not trained"
        )
        return (
            f"{name}: {detail} -> about {format_seconds(self.seconds)} "
            "(early stopping may end folds sooner)"
        )


def format_seconds(seconds: float) -> str:
    """`12 min`, `3 h 05 min`: an expected duration."""
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{max(minutes, 1) if seconds > 0 else 0} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def member_model_dir(
    output_dir: str,
    config: ml_collections.ConfigDict,
    fold: int,
    member: int,
    members: int,
) -> str:
    """Where member `member` of fold `fold` trains: member 0 is the single
    model's fold (`<name>/fold<i>/model`), the others sit in the ensemble's
    (`<name>_x<K>/fold<i>/member<m>/model`)."""
    if member == 0:
        return os.path.join(experiment_dir(output_dir, config), f"fold{fold}", "model")
    ens_dir = experiment_dir(output_dir, ensemble_config(config, members))
    return os.path.join(ens_dir, f"fold{fold}", f"member{member}", "model")


def epochs_left(config: ml_collections.ConfigDict, model_dir: str) -> int:
    """Epochs a training of `config` into `model_dir` still has to run.

    From its history.json: 0 once it has every epoch, or once its selection
    metric has not improved for `train.early_stopping_patience` epochs (it
    stopped early); all of them where nothing was trained.
    """
    from lma_tf import config as lma_config

    epochs = int(config.train.epochs)
    history = run_dir.load_history(model_dir)
    key = str(config.train.selection_metric)
    patience = int(config.train.early_stopping_patience)
    values = [h[key] for h in history if isinstance(h.get(key), int | float)]
    if patience > 0 and len(values) == len(history) and values:
        pick = np.argmin if lma_config.SELECTION_METRICS[key] == "min" else np.argmax
        if len(values) - 1 - int(pick(values)) >= patience:
            return 0
    return max(epochs - len(history), 0)


def estimate(
    config: ml_collections.ConfigDict,
    output_dir: str,
    folds: list[int],
    members: int = 1,
) -> Estimate:
    """Times a few training steps on fold `folds[0]`; extrapolates to the
    trainings left: the folds not done, and with `members` > 1 the other
    members of each ensemble fold not done, each for the epochs its run
    has left (an interrupted run resumes where it stopped)."""
    single_dir = experiment_dir(output_dir, config)
    left = [
        epochs_left(config, member_model_dir(output_dir, config, f, 0, members))
        for f in folds
        if not fold_done(single_dir, f)
    ]
    if members > 1:
        ens_dir = experiment_dir(output_dir, ensemble_config(config, members))
        for f in folds:
            if not fold_done(ens_dir, f):
                left += [
                    epochs_left(
                        config, member_model_dir(output_dir, config, f, m, members)
                    )
                    for m in range(1, members)
                ]
    runs = sum(1 for n in left if n)
    epochs = int(config.train.epochs)
    if not runs:
        return Estimate(0.0, 0.0, 0, epochs, 0)
    if not registry.get(config.model.kind).is_network:
        return Estimate(30.0 * runs, 0.0, 0, epochs, runs)
    import tensorflow as tf

    from lma_tf.data import pipeline
    from lma_tf.training import loop, steps, train_lib

    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.data.records_dir = fold_records(output_dir, folds[0])
    cfg = train_lib.resolve_config(cfg)
    num_steps = loop.steps_per_epoch(cfg)
    strategy = tf.distribute.get_strategy()
    model = registry.get(cfg.model.kind).build(cfg)
    optimizer = steps.make_optimizer(cfg, num_steps)
    step = steps.build_train_step(
        strategy, model, optimizer, cfg, int(cfg.train.batch_size)
    )
    iterator = iter(pipeline.make_dataset(cfg, "train", repeat=True))
    for _ in range(2):  # tracing and the pipeline's start-up
        step(iterator)
    timed = 5
    start = time.perf_counter()
    for _ in range(timed):
        float(step(iterator)["loss"])
    per_step = (time.perf_counter() - start) / timed
    val_batches = pipeline.count_examples(cfg, "val") / float(cfg.train.batch_size)
    # Validation runs forward only, about a third of a training step.
    per_epoch = num_steps * per_step + np.ceil(val_batches) * per_step / 3
    seconds = sum(left) * per_epoch + 20.0 * runs  # plus prediction, bookkeeping
    return Estimate(seconds, per_step, num_steps, epochs, runs, sum(left))


def _prediction_arrays(
    batch: inference.SliceBatch,
    pred: inference.Predictions,
    rule: rule_search.Rule,
    calibrator,
) -> dict[str, np.ndarray]:
    """What a fold saves about its held-out slices (see `paired.slice_terms`).

    `calibrator` is the `calibration.Calibrator` fitted on the fold's val split.
    """
    n = len(batch)
    tos = pred.tos_ms if pred.tos_ms is not None else np.full((n, 126), np.nan)
    calls = rules.lma_call(pred.lma_probability)
    tuned = rule.calls(pred.tos_ms, pred.lma_probability)
    return {
        "subject_id": np.asarray(batch.subject_id, dtype=str),
        "slice_id": np.asarray(batch.slice_id, dtype=str),
        "slice_location": np.asarray(batch.slice_location, np.float64),
        "has_tos": batch.has_tos.astype(np.float32),
        "true_tos": batch.true_tos,
        "true_lma": batch.true_lma,
        "scar": batch.scar,
        "has_scar": batch.has_scar.astype(np.float32),
        "weight": batch.weight,
        "tos": tos,
        "probability": pred.lma_probability,
        "probability_calibrated": calibrator(pred.lma_probability).astype(np.float32),
        "calls": calls.astype(np.int8),
        "combined": rule_search.combined_tos(tos, calls),
        "calls_tuned": tuned.astype(np.int8),
        "combined_tuned": rule_search.combined_tos(tos, tuned),
    }


def scores(
    arrays: dict[str, np.ndarray],
    period_ms: float,
    suffix: str = "",
    decision: dict | None = None,
) -> dict:
    """`metrics.sector_metrics` of saved prediction arrays (the shipped rule),
    plus pacing-target accuracy and LMA calibration where the arrays allow.
    `decision`: the arrays' `decision_metrics`, where already computed."""
    has_tos = bool(np.isfinite(arrays["tos"]).any())
    out = metrics.sector_metrics(
        arrays["true_tos"],
        arrays["tos"] if has_tos else None,
        arrays["combined" + suffix] if has_tos else None,
        arrays["true_lma"],
        arrays["calls" + suffix],
        arrays["scar"],
        arrays["has_scar"] > 0,
        arrays["weight"],
        period_ms,
    )
    if not suffix:
        out.update(_decision_and_calibration(arrays, has_tos, decision))
    return out


def _decision_and_calibration(
    arrays: dict[str, np.ndarray], has_tos: bool, decision: dict | None = None
) -> dict:
    """Top-1/top-2 pacing-target accuracy (default orientation) and LMA ECE,
    before and after the calibration fitted on the fold's validation split.

    Arrays saved before these fields existed give no such figures.
    """
    from lma_tf.decision import calibration
    from lma_tf.decision import report as decision_report

    out: dict = {}
    labels = np.where(arrays["weight"] > 0, arrays["true_lma"], np.nan)
    out["lma_ece"] = calibration.ece(arrays["probability"], labels, arrays["weight"])
    if "probability_calibrated" in arrays:
        out["lma_ece_calibrated"] = calibration.ece(
            arrays["probability_calibrated"], labels, arrays["weight"]
        )
    if has_tos and "slice_location" in arrays:
        slices = _decision_slices(arrays)
        out.update(decision_report.decision_scores(slices, decision))
    return out


def _decision_slices(arrays: dict[str, np.ndarray]) -> list:
    """The saved predictions as the decision report's slices."""
    from lma_tf.decision import report as decision_report

    return decision_report.predicted_slices(
        arrays["subject_id"].tolist(),
        arrays["slice_id"].tolist(),
        arrays["slice_location"],
        arrays["tos"],
        arrays["probability"],
        arrays["true_tos"],
        arrays["scar"],
        arrays["has_tos"] > 0,
        arrays["has_scar"] > 0,
    )


def _pooled_decision(pooled: dict[str, np.ndarray]) -> dict | None:
    """The pooled predictions' `decision_metrics`; None without TOS or slice
    locations."""
    if not np.isfinite(pooled["tos"]).any() or "slice_location" not in pooled:
        return None
    from lma_tf.decision import report as decision_report

    return decision_report.decision_metrics(_decision_slices(pooled))


def _val_calibrator(
    val: inference.SliceBatch, val_pred: inference.Predictions, has_lma: bool
):
    """The LMA calibration fitted on the validation split, as `lma-tf evaluate`
    fits it (temperature, or isotonic where a subject-grouped cross-fit on val
    says it is better); the identity where none fits."""
    from lma_tf.decision import calibration

    if not has_lma or not len(val):
        return calibration.Calibrator()
    try:
        calibrator, _ = calibration.select_calibrator(
            val_pred.lma_probability,
            val.true_lma,
            val.weight,
            groups=np.asarray(val.subject_id),
        )
    except ValueError:  # one class only in val, or nothing labelled
        return calibration.Calibrator()
    # Through its saved form, so the saved probabilities are exactly what the
    # calibration in result.json gives (isotonic knots are rounded there).
    return calibration.Calibrator.from_dict(calibrator.to_dict())


def ensemble_config(
    config: ml_collections.ConfigDict, members: int
) -> ml_collections.ConfigDict:
    """The config of `members` copies of `config` (seeds seed .. seed+K-1).

    Its name, `<name>_x<K>`, is the experiment directory of the ensemble.
    """
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.name = f"{config.name}_x{members}"
    return cfg


def _ensemble_predictor(model_dirs: list[str]) -> inference.Predictor:
    """The trained runs of `model_dirs` averaged as `lma-tf export` serves them
    (`lma_tf.models.ensemble.Ensemble`: mean TOS, mean P(LMA), each member on
    its own views; without an LMA head, LMA from the mean TOS)."""
    from lma_tf.models import ensemble

    configs = [run_dir.load_config(d) for d in model_dirs]
    models = [run_dir.restore_best(c, d) for c, d in zip(configs, model_dirs)]
    kind = registry.get(configs[0].model.kind)
    return inference.network_predictor(ensemble.Ensemble(models, configs), kind)


def run_fold(
    config: ml_collections.ConfigDict,
    output_dir: str,
    fold: int,
    *,
    progress: bool = True,
    members: int = 1,
) -> dict:
    """Trains fold `fold`'s model, picks a rule on val, scores the held-out fold.

    With `members` > 1 it then trains members 1..K-1 (seeds seed+1 ..) beside
    that model (member 0) and scores their average as the experiment
    `ensemble_config(config, members).name`; the single model's fold is
    written as usual (and reused when already done, once training into its
    directory again has confirmed it is a run of this config), so one run
    gives both.
    Returns the result of the experiment asked for (the ensemble's, if any).
    """
    from lma_tf.training import train_lib

    single_dir = experiment_dir(output_dir, config)
    single_out = os.path.join(single_dir, f"fold{fold}")
    ens = ensemble_config(config, members)
    ens_out = os.path.join(experiment_dir(output_dir, ens), f"fold{fold}")
    start = time.perf_counter()
    single_done = fold_done(single_dir, fold)
    model_dirs, epochs_run = [], 0
    for m in range(members):
        model_dir = member_model_dir(output_dir, config, fold, m, members)
        model_dirs.append(model_dir)
        if m == 0 and single_done and members == 1:
            break
        cfg = ml_collections.ConfigDict(config.to_dict())
        cfg.data.records_dir = fold_records(output_dir, fold)
        cfg.seed = int(config.seed) + m
        # A finished run of the same config returns at once ("completed");
        # one of another config (other epochs, overrides) is refused, so a
        # reused member 0 is always the model asked for.
        trained = train_lib.train(cfg, model_dir, progress=progress)
        epochs_run += len(trained.get("history", []))
        if m == 0 and not single_done:
            saved = run_dir.load_config(model_dir)
            predictor = inference.load_predictor(saved, model_dir)
            _score_fold(config.name, saved, predictor, fold, single_out, start, trained)
    if members <= 1:
        return _load_json(os.path.join(single_out, RESULT_JSON))
    saved = run_dir.load_config(model_dirs[0])
    predictor = _ensemble_predictor(model_dirs)
    info = {"history": [None] * epochs_run, "stopped": f"{members} members"}
    return _score_fold(ens.name, saved, predictor, fold, ens_out, start, info)


def _score_fold(
    name: str,
    saved: ml_collections.ConfigDict,
    predictor: inference.Predictor,
    fold: int,
    fold_out: str,
    start: float,
    trained: dict,
) -> dict:
    """Picks the rule and calibration on val, scores the held-out fold, saves."""
    kind = registry.get(saved.model.kind)
    val, val_pred = inference.predict_split(saved, predictor, "val", progress=False)
    rule, val_scores = rule_search.choose(
        val_pred.tos_ms,
        val_pred.lma_probability,
        val.true_lma,
        val.weight,
        kind.has_lma,
    )
    calibrator = _val_calibrator(val, val_pred, kind.has_lma)
    test, test_pred = inference.predict_split(saved, predictor, "test", progress=False)
    arrays = _prediction_arrays(test, test_pred, rule, calibrator)
    atomic.write_npz(os.path.join(fold_out, PREDICTIONS_NPZ), arrays)
    period = float(saved.data.frame_period_ms)
    tuned = scores(arrays, period, "_tuned")
    result = {
        "experiment": name,
        "fold": fold,
        "metrics": scores(arrays, period),
        "lma_calibration": calibrator.to_dict(),
        "tuned": {
            "rule": rule.name,
            "val_accuracy": val_scores[rule.name],
            "val_accuracy_shipped_rule": next(iter(val_scores.values())),
            "combined_tos_mae_ms_scar": tuned["combined_tos_mae_ms_scar"],
            "combined_tos_mae_ms": tuned["combined_tos_mae_ms"],
            "lma_accuracy": tuned["lma_accuracy"],
            "lma_f1": tuned["lma_f1"],
        },
        "num_test_subjects": len(set(test.subject_id)),
        "num_test_slices": len(test),
        "epochs_run": len(trained.get("history", [])),
        "stopped": trained.get("stopped", "fitted"),
        "seconds": time.perf_counter() - start,
    }
    metrics.write_json(result, os.path.join(fold_out, RESULT_JSON))
    return result


def _fold_row(result: dict) -> dict:
    row = {k: result["metrics"].get(k) for k in SUMMARY_KEYS}
    row["combined_tos_mae_ms_scar_tuned"] = result["tuned"]["combined_tos_mae_ms_scar"]
    row["lma_accuracy_tuned"] = result["tuned"]["lma_accuracy"]
    return row


def _mean_sd(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            out[key] = {"mean": float(np.mean(values)), "sd": sd, "n": len(values)}
    return out


def load_pooled(exp_dir: str) -> dict[str, np.ndarray]:
    """The pooled held-out predictions of a cross-validated experiment.

    Raises:
      UsageError: `exp_dir` holds no finished cross-validation.
    """
    path = os.path.join(exp_dir, PREDICTIONS_NPZ)
    if not os.path.exists(path):
        raise UsageError(
            f"{path} not found: {exp_dir} is not a finished cross-validation "
            "(run `lma-tf crossval` for every fold first)"
        )
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def summarize(
    config: ml_collections.ConfigDict, output_dir: str, num_folds: int
) -> dict | None:
    """Per-fold metrics, mean +- sd, pooled metrics; None while folds remain."""
    exp_dir = experiment_dir(output_dir, config)
    if not all(fold_done(exp_dir, f) for f in range(num_folds)):
        return None
    results, parts = [], []
    for f in range(num_folds):
        fold_out = os.path.join(exp_dir, f"fold{f}")
        results.append(_load_json(os.path.join(fold_out, RESULT_JSON)))
        with np.load(os.path.join(fold_out, PREDICTIONS_NPZ)) as z:
            part = {k: z[k] for k in z.files}
        part["fold"] = np.full(len(part["slice_id"]), f, np.int64)
        parts.append(part)
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    atomic.write_npz(os.path.join(exp_dir, PREDICTIONS_NPZ), pooled)
    period = float(config.data.frame_period_ms)
    rows = [_fold_row(r) for r in results]
    decision = _pooled_decision(pooled)
    pooled_metrics = scores(pooled, period, decision=decision)
    tuned = scores(pooled, period, "_tuned")
    pooled_metrics["combined_tos_mae_ms_scar_tuned"] = tuned["combined_tos_mae_ms_scar"]
    pooled_metrics["lma_accuracy_tuned"] = tuned["lma_accuracy"]
    summary = {
        "experiment": config.name,
        "num_folds": num_folds,
        "epochs": int(config.train.epochs),
        "folds": [{"fold": r["fold"], **row} for r, row in zip(results, rows)],
        "rules": [r["tuned"]["rule"] for r in results],
        "mean_sd": _mean_sd(rows),
        "pooled": pooled_metrics,
        "decision_by_true_margin": decision and decision["top1_by_true_margin"],
        "extra_train": _extra_train(output_dir),
        "num_subjects": len(set(pooled["subject_id"].tolist())),
        "num_slices": len(pooled["slice_id"]),
        "seconds": sum(r["seconds"] for r in results),
    }
    metrics.write_json(summary, os.path.join(exp_dir, SUMMARY_JSON))
    atomic.write_text(os.path.join(exp_dir, "crossval.md"), summary_markdown(summary))
    _write_tables(pooled, exp_dir)
    if decision is not None:
        from lma_tf.viz import decision_quality

        decision_quality.write_if_targets(decision, exp_dir)
    return summary


def _extra_train(output_dir: str) -> dict | None:
    """The extra training records every fold's model also saw (folds.json)."""
    path = os.path.join(output_dir, FOLDS_DIR, folds_lib.FOLDS_JSON)
    info = _load_json(path) if os.path.exists(path) else {}
    if not info.get("extra_train_source"):
        return None
    return {k: info[f"extra_train_{k}"] for k in ("source", "subjects", "slices")}


def _load_json(path: str) -> dict:
    import json

    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_tables(pooled: dict[str, np.ndarray], exp_dir: str) -> None:
    """per_slice.csv (with the fold) and per_subject.csv of the pooled predictions."""
    ids = list(zip(pooled["subject_id"].tolist(), pooled["slice_id"].tolist()))
    has_tos = bool(np.isfinite(pooled["tos"]).any())
    rows = metrics.per_slice_rows(
        ids,
        pooled["true_tos"],
        pooled["tos"] if has_tos else None,
        pooled["combined"] if has_tos else None,
        pooled["true_lma"],
        pooled["calls"],
        pooled["scar"],
        pooled["has_scar"] > 0,
        pooled["weight"],
    )
    for row, fold in zip(rows, pooled["fold"].tolist()):
        row["fold"] = fold
    metrics.write_csv(rows, os.path.join(exp_dir, "per_slice.csv"))
    subjects, terms = paired.subject_terms(
        pooled["subject_id"], paired.slice_terms(pooled)
    )
    fold_of = dict(zip(pooled["subject_id"].tolist(), pooled["fold"].tolist()))
    table = []
    for i, s in enumerate(subjects):
        row = {"subject_id": s, "fold": fold_of[s]}
        for key, (num, den) in terms.items():
            row[key] = float(num[i] / den[i]) if den[i] > 0 else None
        table.append(row)
    metrics.write_csv(table, os.path.join(exp_dir, "per_subject.csv"))


def summary_markdown(summary: dict) -> str:
    """Mean +- sd over folds, and the pooled value, per metric."""
    lines = [
        f"{summary['experiment']}: {summary['num_folds']}-fold cross-validation, "
        f"{summary['num_subjects']} subjects, {summary['num_slices']} slices",
        "",
        "| metric | mean +- sd over folds | pooled |",
        "|---|---:|---:|",
    ]
    for key, v in summary["mean_sd"].items():
        pooled = summary["pooled"].get(key)
        shown = "-" if pooled is None else f"{pooled:.3f}"
        lines.append(f"| {key} | {v['mean']:.3f} +- {v['sd']:.3f} | {shown} |")
    lines += ["", f"rules chosen on validation: {', '.join(summary['rules'])}"]
    return "\n".join(lines) + "\n"


def is_crossval_dir(path: str) -> bool:
    """Whether `path` is a cross-validated experiment's directory (summarised)."""
    return os.path.isfile(os.path.join(path, SUMMARY_JSON))


def compare_markdown(results: dict[str, dict]) -> str:
    """The paired tables of `compare`'s results, shipped and tuned rules."""
    parts = []
    for name, r in results.items():
        parts.append(paired.markdown(r["shipped_rule"], r["a"], name))
        parts.append("with the decision rule chosen on validation:")
        parts.append(paired.markdown(r["tuned_rule"], r["a"], name))
    return "\n".join(parts)


def compare(
    exp_dirs: list[str], output_dir: str, resamples: int = 2000, seed: int = 0
) -> dict[str, dict]:
    """The first cross-validated experiment against each of the others.

    Writes output_dir/<first>_vs_<other>/paired.{json,md,png} and
    crossval_means.png (mean +- sd over folds of the two), and
    output_dir/crossval_means.png (of every experiment listed).

    Raises:
      UsageError: fewer than two directories, one unfinished, or runs that
        did not predict the same slices.
    """
    from lma_tf.viz import comparison

    if len(exp_dirs) < 2:
        raise UsageError("--compare needs two or more cross-validation directories")
    loaded = []
    for d in exp_dirs:
        load_pooled(d)  # a clear error when unfinished
        loaded.append(_load_json(os.path.join(d, SUMMARY_JSON)))
    names = [s["experiment"] for s in loaded]
    if len(set(names)) != len(names):
        # The same experiment from several roots (say with and without extra
        # training records): named by root, e.g. cv_extra_multitask.
        names = [
            f"{os.path.basename(os.path.dirname(os.path.abspath(d)))}_{n}"
            for d, n in zip(exp_dirs, names)
        ]
    if len(set(names)) != len(names):
        raise UsageError(f"--compare lists one experiment twice: {exp_dirs}")
    summaries = dict(zip(names, loaded))
    first = load_pooled(exp_dirs[0])
    results = {}
    for name, d in zip(names[1:], exp_dirs[1:]):
        pair_dir = os.path.join(output_dir, f"{names[0]}_vs_{name}")
        try:
            results[name] = paired.write_comparison(
                first, load_pooled(d), names[0], name, pair_dir, resamples, seed
            )
        except ValueError as e:
            raise UsageError(f"{exp_dirs[0]} vs {d}: {e}") from None
        comparison.plot_crossval_means(
            {n: summaries[n]["mean_sd"] for n in (names[0], name)},
            SUMMARY_KEYS,
            os.path.join(pair_dir, "crossval_means.png"),
        )
    comparison.plot_crossval_means(
        {n: s["mean_sd"] for n, s in summaries.items()},
        SUMMARY_KEYS,
        os.path.join(output_dir, "crossval_means.png"),
    )
    return results
