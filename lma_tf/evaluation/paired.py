"""Paired comparisons of two experiments, with subject-level bootstrap CIs.

Both experiments must have predicted the same slices (cross-validation
folds are the same for every experiment, so each slice is predicted by a
model that never saw its subject). Every metric compared is a ratio of sums
over sectors (MAE = sum |error| / sectors, accuracy = hits / sectors,
F1 = 2 TP / (2 TP + FP + FN)), so each subject contributes a numerator and a
denominator, and a resample of subjects gives the metric exactly as
`metrics.sector_metrics` would on those subjects' slices. Resampling subjects
(not sectors or slices) respects that a subject's sectors and slices are not
independent. The difference A - B gets a percentile 95% interval; when it
spans 0 the verdict is "no detectable difference".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lma_tf import constants, rules

# metric -> direction: "min" (lower is better) or "max".
METRICS = {
    "tos_mae_ms": "min",
    "tos_mae_ms_scar": "min",
    "tos_mae_ms_scar_free": "min",
    "combined_tos_mae_ms": "min",
    "combined_tos_mae_ms_scar": "min",
    "combined_tos_mae_ms_scar_free": "min",
    "lma_accuracy": "max",
    "lma_f1": "max",
}
NO_DIFFERENCE = "no detectable difference"


def _subsets(pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(N,) masks of the slice subsets, as `metrics.sector_metrics` defines them."""
    w = pred["weight"] > 0
    scar = (pred["scar"] >= constants.SCAR_THRESHOLD) & (pred["has_scar"][:, None] > 0)
    scar_slice = np.any(scar & w, axis=1)
    return {"": np.ones(len(w), bool), "_scar": scar_slice, "_scar_free": ~scar_slice}


def slice_terms(pred: Mapping[str, np.ndarray], suffix: str = "") -> dict:
    """Per-slice (numerator, denominator) of every metric in `METRICS`.

    `pred` holds the arrays crossval saves: true_tos, tos (regressed),
    combined (combined TOS), true_lma, calls (0/1 LMA calls), scar,
    has_scar, weight; with `suffix` ("_tuned"), calls and combined are read
    from `calls_tuned` / `combined_tuned`.
    """
    w = np.where(np.asarray(pred["weight"]) > 0, pred["weight"], 0.0).astype(float)
    out = {}
    for prefix, key in (("tos", "tos"), ("combined_tos", "combined" + suffix)):
        if key not in pred or not np.isfinite(pred[key]).any():
            continue  # no TOS head: no TOS metrics
        err = np.abs(np.nan_to_num(pred[key] - pred["true_tos"])) * w
        for subset, mask in _subsets(pred).items():
            out[f"{prefix}_mae_ms{subset}"] = (
                (err * mask[:, None]).sum(axis=1),
                (w * mask[:, None]).sum(axis=1),
            )
    calls = np.asarray(pred["calls" + suffix]) > 0
    true = rules.lma_call(pred["true_lma"])
    out["lma_accuracy"] = ((w * (calls == true)).sum(axis=1), w.sum(axis=1))
    tp = (w * (calls & true)).sum(axis=1)
    wrong = (w * (calls != true)).sum(axis=1)
    out["lma_f1"] = (2 * tp, 2 * tp + wrong)
    return out


def subject_terms(
    subject_ids: Sequence[str], terms: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Slice terms summed per subject; subjects in sorted order."""
    subjects, index = np.unique(np.asarray(subject_ids, dtype=str), return_inverse=True)
    out = {
        k: (
            np.bincount(index, num, len(subjects)),
            np.bincount(index, den, len(subjects)),
        )
        for k, (num, den) in terms.items()
    }
    return list(subjects), out


def ratio(num: np.ndarray, den: np.ndarray, metric: str) -> np.ndarray:
    """num.sum / den.sum along the last axis; None-like NaN when nothing counts.

    F1 with nothing to find and nothing called is 1 (the metrics' convention).
    """
    n, d = np.sum(num, axis=-1), np.sum(den, axis=-1)
    empty = 1.0 if metric == "lma_f1" else np.nan
    return np.where(d > 0, n / np.where(d > 0, d, 1.0), empty)


def bootstrap_difference(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    metric: str,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Metric(A) - metric(B) and its percentile CI, resampling subjects in pairs.

    `a` and `b` are (numerator, denominator) per subject, the same subjects
    in the same order. Deterministic for a seed.
    """
    num_a, den_a = (np.asarray(x, float) for x in a)
    num_b, den_b = (np.asarray(x, float) for x in b)
    if num_a.shape != num_b.shape:
        raise ValueError("the two experiments must cover the same subjects")
    n = num_a.size
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(resamples), n))
    diffs = ratio(num_a[idx], den_a[idx], metric) - ratio(
        num_b[idx], den_b[idx], metric
    )
    diffs = diffs[np.isfinite(diffs)]
    value_a, value_b = ratio(num_a, den_a, metric), ratio(num_b, den_b, metric)
    if not np.isfinite(value_a - value_b) or diffs.size == 0:
        return {"a": None, "b": None, "difference": None, "ci": None, "verdict": None}
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {
        "a": float(value_a),
        "b": float(value_b),
        "difference": float(value_a - value_b),
        "ci": [float(low), float(high)],
        "verdict": verdict(float(low), float(high), METRICS.get(metric, "min")),
        "num_subjects": int(n),
        "resamples": int(resamples),
    }


def verdict(low: float, high: float, direction: str) -> str:
    """Which of A and B is better, or that the interval spans 0."""
    if low <= 0.0 <= high:
        return NO_DIFFERENCE
    a_lower = high < 0.0
    return "A better" if a_lower == (direction == "min") else "B better"


def compare_predictions(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    resamples: int = 2000,
    seed: int = 0,
    suffix: str = "",
) -> dict[str, dict]:
    """Every metric of `METRICS`: A, B, A - B with its CI, and the verdict.

    `a` and `b` are pooled prediction arrays (see `slice_terms`) with
    `subject_id` and `slice_id`; rows are matched by (subject, slice).

    Raises:
      ValueError: the two did not predict the same slices.
    """
    a, b = _aligned(a, b)
    subjects, terms_a = subject_terms(a["subject_id"], slice_terms(a, suffix))
    _, terms_b = subject_terms(b["subject_id"], slice_terms(b, suffix))
    return {
        m: bootstrap_difference(terms_a[m], terms_b[m], m, resamples, seed)
        for m in METRICS
        if m in terms_a and m in terms_b
    } | {"_subjects": {"count": len(subjects)}}


def _aligned(a: Mapping, b: Mapping) -> tuple[dict, dict]:
    """Both prediction sets in the same (subject, slice) order."""

    def keys(p: Mapping) -> list[tuple[str, str]]:
        return list(zip(map(str, p["subject_id"]), map(str, p["slice_id"])))

    ka, kb = keys(a), keys(b)
    if set(ka) != set(kb) or len(ka) != len(kb):
        only = sorted(set(ka) ^ set(kb))[:3]
        raise ValueError(
            "the two experiments did not predict the same slices (e.g. "
            f"{only}); compare cross-validations of the same records and folds"
        )
    order_b = {k: i for i, k in enumerate(kb)}
    take = np.array([order_b[k] for k in ka])
    return dict(a), {k: np.asarray(v)[take] for k, v in b.items()}


def markdown(results: Mapping[str, dict], name_a: str, name_b: str) -> str:
    """A table: metric, A, B, A - B [95% CI], verdict."""
    lines = [
        f"A = {name_a}, B = {name_b}; 95% CI from a paired bootstrap over subjects",
        "",
        "| metric | A | B | A - B [95% CI] | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for metric, r in results.items():
        if metric.startswith("_") or r.get("difference") is None:
            continue
        lo, hi = r["ci"]
        lines.append(
            f"| {metric} | {r['a']:.3f} | {r['b']:.3f} | "
            f"{r['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def write_comparison(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    name_a: str,
    name_b: str,
    output_dir: str,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """`compare_predictions` for the shipped and the tuned rules, written out.

    Writes output_dir/paired.json, paired.md and paired.png (differences
    with their intervals). Returns {"shipped_rule": ..., "tuned_rule": ...}.
    """
    import os

    from lma_tf import atomic
    from lma_tf.viz import comparison

    out = {
        "a": name_a,
        "b": name_b,
        "shipped_rule": compare_predictions(a, b, resamples, seed),
        "tuned_rule": compare_predictions(a, b, resamples, seed, "_tuned"),
    }
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_json(os.path.join(output_dir, "paired.json"), out)
    text = "Shipped decision rule\n\n" + markdown(out["shipped_rule"], name_a, name_b)
    text += "\nDecision rule chosen on validation, per fold\n\n"
    text += markdown(out["tuned_rule"], name_a, name_b)
    atomic.write_text(os.path.join(output_dir, "paired.md"), text)
    comparison.plot_paired_differences(
        out["shipped_rule"], name_a, name_b, os.path.join(output_dir, "paired.png")
    )
    return out
