"""Test-retest of the pacing decision on the synthetic cohort: same hearts, new noise.

Cross-validation scores each held-out subject's first pacing target on one
measurement of its heart. `retest` measures every held-out subject again,
`draws` times: the generator redraws only the measurement noise
(`synthetic.remeasure_rng`; TOS, scar, labels and contraction are unchanged).
Each measurement is predicted by the fold's own model, as cross-validation
did, and the decision is scored on it. Draw 0 is the original measurement. The
decision on the mean prediction over all measurements is scored too.

It tells how much of a top-1 figure is the luck of one noise draw, and how
often the model's first target would change on a repeat scan. Only the
synthetic cohort can be measured again, so the cohort's seed and scar model
are checked against the labels the cross-validation saved. See
docs/decision.md ("How stable is the decision?").

  O/retest.json          per-draw accuracies, agreement, stable vs unstable
  O/retest_subjects.csv  per subject: fold, true target, first target per
                         draw, stable, the original's near-ties
  O/retest.png           the figure of both
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import ml_collections
import numpy as np

from lma_tf import atomic
from lma_tf.data import synthetic
from lma_tf.data.slices import DenseSlice
from lma_tf.errors import LmaError, UsageError

if TYPE_CHECKING:
    from lma_tf import inference

RETEST_JSON = "retest.json"
RETEST_CSV = "retest_subjects.csv"
RETEST_PNG = "retest.png"
_FOLD = re.compile(r"fold(\d+)$")


@dataclasses.dataclass
class HeldOutFold:
    """One fold of a cross-validated experiment: its model and held-out subjects."""

    index: int
    model_dir: str
    subject_ids: list[str]
    slice_ids: list[str]
    true_tos: np.ndarray  # (slices, 126) as saved, NaN where unlabelled
    tos_ms: np.ndarray  # (slices, 126) the fold's saved predictions


def held_out_folds(exp_dir: str) -> list[HeldOutFold]:
    """The folds of `exp_dir` (`lma-tf crossval`'s O/<experiment>), in order.

    Raises:
      UsageError: no finished fold, or a fold without its own model (an
        ensemble's folds hold members, not one model: retest a single model).
    """
    from lma_tf.training import crossval

    folds = []
    names = sorted(os.listdir(exp_dir)) if os.path.isdir(exp_dir) else []
    for name in names:
        m = _FOLD.match(name)
        saved = os.path.join(exp_dir, name, crossval.PREDICTIONS_NPZ)
        if not m or not crossval.fold_done(exp_dir, int(m.group(1))):
            continue
        model_dir = os.path.join(exp_dir, name, "model")
        if not os.path.isdir(model_dir):
            raise UsageError(
                f"{os.path.join(exp_dir, name)} has no model/: retest a "
                "single-model experiment (an ensemble's folds hold members)"
            )
        with np.load(saved, allow_pickle=False) as z:
            has = z["has_tos"] > 0
            true = np.where(has[:, None], z["true_tos"], np.nan)
            folds.append(
                HeldOutFold(
                    int(m.group(1)),
                    model_dir,
                    list(dict.fromkeys(z["subject_id"].tolist())),
                    z["slice_id"].tolist(),
                    true,
                    z["tos"],
                )
            )
    if not folds:
        raise UsageError(
            f"{exp_dir}: no finished fold (fold<i>/{crossval.RESULT_JSON}); "
            "run `lma-tf crossval` first"
        )
    return sorted(folds, key=lambda f: f.index)


def remeasured(
    subject_ids: Sequence[str], seed: int, scar_model: str, draw: int
) -> list[DenseSlice]:
    """The slices of synthetic subjects, measured again (`draw` 0: the original).

    Raises:
      UsageError: an id is not a synthetic subject's (`SYN0007`).
    """
    out = []
    for sid in subject_ids:
        try:
            index = synthetic.subject_index(sid)
        except ValueError as e:
            raise UsageError(str(e)) from None
        noise = None if draw == 0 else synthetic.remeasure_rng(seed, draw, index)
        subject = synthetic.generate_subject(
            synthetic.subject_rng(seed, index),
            sid,
            scar_model=scar_model,
            noise_rng=noise,
        )
        out += subject.slices
    return out


def check_same_cohort(
    fold: HeldOutFold, slices: Sequence[DenseSlice], seed: int, scar_model: str
) -> None:
    """Refuses a seed other than the cross-validated cohort's (labels differ).

    The scar model changes the strain of scarred subjects, not their labels:
    `check_same_predictions` catches it after the original is predicted.

    Raises:
      UsageError: a held-out slice is missing or its labels differ, named.
    """
    by_id = {s.slice_id: s for s in slices}
    for i, sid in enumerate(fold.slice_ids):
        s = by_id.get(sid)
        saved = fold.true_tos[i]
        ok = np.isfinite(saved)
        if s is None or not np.allclose(s.tos_ms[ok], saved[ok], atol=1e-3):
            raise UsageError(
                f"slice {sid} of fold {fold.index}: the synthetic cohort of "
                f"seed {seed}, scar model {scar_model!r} is not the one "
                "cross-validated (its labels differ); give the cohort's "
                "--seed and --scar_model"
            )


def check_same_predictions(
    fold: HeldOutFold,
    slice_ids: Sequence[str],
    tos_ms: np.ndarray,
    scar_model: str,
    tol_ms: float = 0.5,
) -> None:
    """Refuses an original measurement whose predictions are not the saved ones.

    The same model on the same strain predicts the same TOS (to float
    rounding); a larger difference means other strain, such as another scar
    model's.

    Raises:
      UsageError: a held-out slice predicted differently, named.
    """
    row = {sid: i for i, sid in enumerate(slice_ids)}
    for i, sid in enumerate(fold.slice_ids):
        diff = np.nanmax(np.abs(tos_ms[row[sid]] - fold.tos_ms[i]))
        if diff > tol_ms:
            raise UsageError(
                f"slice {sid} of fold {fold.index}: regenerated with scar model "
                f"{scar_model!r} it is predicted {diff:.1f} ms away from the "
                "cross-validation's prediction, so its strain is not the one "
                "cross-validated; give the cohort's --scar_model"
            )


def predict(
    config: ml_collections.ConfigDict,
    predictor: Callable,
    slices: Sequence[DenseSlice],
    work_dir: str,
) -> tuple[inference.SliceBatch, inference.Predictions]:
    """(batch, predictions) of `predictor` on `slices`, as cross-validation's.

    The slices go through records (written to `work_dir`, all as the test
    split) and the evaluation pipeline, in its fixed order.
    """
    from lma_tf import inference
    from lma_tf.data import records

    options = records.RecordsOptions(work_dir, split=(0.0, 0.0, 1.0), progress=False)
    records.write_records(list(slices), [], options)
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.data.records_dir = work_dir
    cfg.data.cache = False
    cfg.data.deterministic = True
    return inference.predict_split(cfg, predictor, "test", progress=False)


def decisions(
    batch: inference.SliceBatch, tos_ms: np.ndarray, probability: np.ndarray
) -> dict[str, dict]:
    """subject -> `report.SubjectResult.quality()` of one prediction of `batch`."""
    from lma_tf.decision import report

    predicted = batch.predicted_slices(tos_ms, probability)
    return {r.subject_id: r.quality() for r in report.analyse(predicted)}


def _fold_measurements(
    fold: HeldOutFold, seed: int, scar_model: str, draws: int, tmp: str, bar
) -> tuple[list[dict[str, dict]], dict[str, dict]]:
    """The fold's decisions per measurement, and on their mean prediction.

    Raises:
      UsageError: the model has no TOS output, or another cohort (named).
    """
    from lma_tf import inference
    from lma_tf.models import registry
    from lma_tf.training import run_dir

    config = run_dir.load_config(fold.model_dir)
    if not registry.get(config.model.kind).has_tos:
        raise UsageError(
            f"{fold.model_dir}: a {config.model.kind} model has no TOS output, "
            "and the pacing decision ranks segments by TOS"
        )
    predictor = inference.load_predictor(config, fold.model_dir)
    held_out = set(fold.slice_ids)
    per_draw, tos, prob, first = [], [], [], None
    for d in range(draws + 1):
        slices = remeasured(fold.subject_ids, seed, scar_model, d)
        slices = [s for s in slices if s.slice_id in held_out]
        if d == 0:
            check_same_cohort(fold, slices, seed, scar_model)
        work = os.path.join(tmp, f"fold{fold.index}_draw{d}")
        batch, pred = predict(config, predictor, slices, work)
        if first is None:
            first = batch
            check_same_predictions(fold, batch.slice_id, pred.tos_ms, scar_model)
        if list(batch.slice_id) != list(first.slice_id):
            raise LmaError(
                f"fold {fold.index}: measurement {d} came back in another slice "
                "order than the original"
            )
        tos.append(pred.tos_ms)
        prob.append(pred.lma_probability)
        per_draw.append(decisions(batch, pred.tos_ms, pred.lma_probability))
        bar.update(1)
    return per_draw, decisions(first, np.mean(tos, axis=0), np.mean(prob, axis=0))


def _share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def _accuracies(qualities: Sequence[dict]) -> dict:
    """Top-1, top-2 and within-5-ms shares of subjects' quality dicts."""
    return {
        key: _share([q[key] for q in qualities])
        for key in ("top1", "top2", "within_5ms")
    }


def summarize(
    firsts: dict[str, list[int | None]],
    hits: dict[str, list[dict]],
) -> dict:
    """Per-draw accuracies and how often the first target holds.

    `firsts`: subject -> first target per draw (None: no target); `hits`:
    subject -> quality dict per draw. Returns the figures of retest.json.
    """
    subjects = sorted(firsts)
    draws = len(firsts[subjects[0]])
    per_draw = [
        {"draw": d, **_accuracies([hits[s][d] for s in subjects])} for d in range(draws)
    ]
    top1 = np.array([p["top1"] for p in per_draw])
    same = [firsts[s][d] == firsts[s][0] for s in subjects for d in range(1, draws)]
    stable = {s: len(set(firsts[s])) == 1 for s in subjects}
    first_hit = {s: hits[s][0]["top1"] for s in subjects}
    stable_ids = [s for s in subjects if stable[s]]
    unstable_ids = [s for s in subjects if not stable[s]]
    tied = {s: bool(hits[s][0].get("near_ties")) for s in subjects}
    return {
        "num_subjects": len(subjects),
        "num_draws": draws,
        "per_draw": per_draw,
        "top1": {
            "mean": float(top1.mean()),
            "sd": float(top1.std(ddof=1)) if draws > 1 else 0.0,
            "min": float(top1.min()),
            "max": float(top1.max()),
        },
        "first_target_same_as_draw0": _share(same),
        "stable_share": _share(list(stable.values())),
        "top1_draw0_stable": _share([first_hit[s] for s in stable_ids]),
        "top1_draw0_unstable": _share([first_hit[s] for s in unstable_ids]),
        "num_stable": len(stable_ids),
        "stable_share_without_near_tie": _share(
            [stable[s] for s in subjects if not tied[s]]
        ),
        "stable_share_with_near_tie": _share([stable[s] for s in subjects if tied[s]]),
    }


def summarize_averaged(qualities: dict[str, dict]) -> dict:
    """Accuracies of the decision on the mean prediction over all measurements.

    What the model would decide if the noise of single scans averaged out:
    when this is much better than one measurement, the noise, not the
    model, limits the decision.
    """
    return _accuracies(list(qualities.values()))


def _csv(firsts: dict, hits: dict, truth: dict, fold_of: dict) -> str:
    draws = len(next(iter(firsts.values())))
    cols = ["subject_id", "fold", "true_target"] + [f"draw{d}" for d in range(draws)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols + ["stable", "near_ties_draw0"])
    for s in sorted(firsts):
        row = [s, fold_of[s], truth[s]] + list(firsts[s])
        ties = " ".join(str(t) for t in hits[s][0].get("near_ties") or [])
        stable = len(set(firsts[s])) == 1
        w.writerow(["" if v is None else v for v in row] + [stable, ties])
    return buf.getvalue()


def retest(
    exp_dir: str,
    seed: int,
    scar_model: str,
    draws: int,
    output_dir: str,
    *,
    progress: bool = True,
) -> dict:
    """Measures every held-out subject `draws` more times; writes O/ (see above).

    Returns retest.json's document, with "paths" (the files written).

    Raises:
      UsageError: bad arguments, no finished fold, or another cohort.
    """
    if draws < 1:
        raise UsageError(f"--draws must be >= 1, got {draws}")
    if scar_model not in synthetic.SCAR_MODELS:
        raise UsageError(
            f"scar model must be one of {synthetic.SCAR_MODELS}, got {scar_model!r}"
        )
    import tqdm

    folds = held_out_folds(exp_dir)
    firsts: dict[str, list] = {}
    hits: dict[str, list] = {}
    truth: dict[str, int | None] = {}
    fold_of: dict[str, int] = {}
    averaged: dict[str, dict] = {}
    bar = tqdm.tqdm(
        total=len(folds) * (draws + 1), desc="retest", unit="draw", disable=not progress
    )
    with bar, tempfile.TemporaryDirectory(prefix="lma_tf_retest_") as tmp:
        for fold in folds:
            per_draw, mean_q = _fold_measurements(
                fold, seed, scar_model, draws, tmp, bar
            )
            averaged.update(mean_q)
            for qualities in per_draw:
                for sid, q in qualities.items():
                    pred = q["predicted_targets"]
                    firsts.setdefault(sid, []).append(pred[0] if pred else None)
                    hits.setdefault(sid, []).append(q)
                    truth[sid] = q["true_target"]
                    fold_of[sid] = fold.index
    doc = {
        "experiment_dir": os.path.abspath(exp_dir),
        "cohort": {"seed": seed, "scar_model": scar_model},
        "folds": [f.index for f in folds],
        **summarize(firsts, hits),
        "averaged": summarize_averaged(averaged),
    }
    os.makedirs(output_dir, exist_ok=True)
    paths = [
        atomic.write_json(os.path.join(output_dir, RETEST_JSON), doc),
        atomic.write_text(
            os.path.join(output_dir, RETEST_CSV), _csv(firsts, hits, truth, fold_of)
        ),
    ]
    from lma_tf.viz import retest as retest_fig

    paths.append(
        retest_fig.plot_retest(doc, firsts, os.path.join(output_dir, RETEST_PNG))
    )
    return doc | {"paths": paths}
