"""The paper's evaluation metrics, from arrays of predictions (numpy only).

Inputs are (N, S) arrays for N slices and S = 126 sectors, plus a weight array
of the same shape that is 1 on the sectors that count (labelled slices, real
sectors) and 0 elsewhere. Only sectors with weight > 0 ever enter a metric:
values elsewhere (padding, unlabelled slices, even NaN) cannot move a result.

Conventions:
  - TOS errors are per sector, weighted means over the counted sectors
    (pooled over slices, not a mean of per-slice means); frames = ms / period.
  - Scar slices have scar data and at least one counted sector with scar
    fraction >= `constants.SCAR_THRESHOLD`; every other slice (including one
    without scar data) is scar-free for the `_scar` / `_scar_free` split.
  - LMA labels and predictions are binarised at `rules.LMA_THRESHOLD`.
  - When there are neither true nor predicted LMA sectors, precision,
    recall and F1 are 1.0: "no target" was the right answer. Otherwise
    precision with no predicted positives is 0.0, recall with no true
    positives is 0.0, and F1 is 0.0 when both are 0.
  - A metric that cannot be computed (no TOS head, no scar slice, nothing
    counted) is `None` (JSON null), never NaN.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lma_tf import atomic, constants, rules

Number = float | int | None

DEFAULT_TABLE_KEYS = (
    "tos_mae_ms",
    "tos_rmse_ms",
    "tos_mae_ms_scar",
    "tos_mae_ms_scar_free",
    "combined_tos_mae_ms",
    "combined_tos_mae_ms_scar",
    "combined_tos_mae_ms_scar_free",
    "lma_accuracy",
    "lma_precision",
    "lma_recall",
    "lma_f1",
    # Decision, calibration (on the val-fitted calibration) and interval goals.
    "decision_top1_accuracy",
    "decision_top2_accuracy",
    "lma_ece",
    "tos_interval_coverage_90",
)

# --- Cost column group (lma_tf.evaluation.cost), shown by comparison_table
# after the metric columns whenever a result carries them.
COST_TABLE_KEYS = (
    "params",
    "flops_per_example",
    "train_examples_per_s",
    "latency_p50_ms",
)
# --- end of the cost column group

CSV_COLUMNS = (
    "subject_id",
    "slice_id",
    "scar_known",
    "num_scar_sectors",
    "num_sectors",
    "tos_mae_ms",
    "combined_tos_mae_ms",
    "lma_accuracy",
    "lma_f1",
    "num_lma_true",
    "num_lma_pred",
    "true_max_tos_ms",
    "pred_max_tos_ms",
)

_SUBSETS = ("", "_scar", "_scar_free")


@dataclasses.dataclass
class _Arrays:
    """Validated inputs: float64 arrays with non-counted entries zeroed."""

    w: np.ndarray  # (N, S) weights, 0 where a sector does not count
    true_tos: np.ndarray | None
    pred_tos: np.ndarray | None
    combined_tos: np.ndarray | None
    true_lab: np.ndarray | None  # bool (N, S)
    pred_lab: np.ndarray | None  # bool (N, S)
    scar: np.ndarray  # bool (N, S): scar sector (False where unknown)
    has_scar: np.ndarray  # bool (N,)

    @property
    def scar_slice(self) -> np.ndarray:
        """(N,) slices with at least one counted scar sector."""
        return np.any(self.scar & (self.w > 0), axis=1)


def _prepare(
    true_tos,
    pred_tos,
    combined_tos,
    true_lma,
    pred_lma,
    scar_fraction,
    has_scar,
    weight,
) -> _Arrays:
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weight must be (slices, sectors), got shape {w.shape}")
    counted = np.isfinite(w) & (w > 0)
    w = np.where(counted, w, 0.0)

    def arr(name: str, x) -> np.ndarray | None:
        if x is None:
            return None
        a = np.asarray(x, dtype=np.float64)
        if a.shape != w.shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {w.shape}")
        return np.where(counted, a, 0.0)

    t_tos, p_tos = arr("true_tos", true_tos), arr("pred_tos", pred_tos)
    c_tos = arr("combined_tos", combined_tos)
    t_lma, p_lma = arr("true_lma", true_lma), arr("pred_lma", pred_lma)

    n = w.shape[0]
    if has_scar is None:
        known = np.ones(n, dtype=bool)
    else:
        known = np.asarray(has_scar).astype(bool).reshape(-1)
        if known.shape != (n,):
            raise ValueError(f"has_scar has shape {known.shape}, expected ({n},)")
    if scar_fraction is None:
        known = np.zeros(n, dtype=bool)
        scar = np.zeros(w.shape, dtype=bool)
    else:
        frac = np.asarray(scar_fraction, dtype=np.float64)
        if frac.shape != w.shape:
            raise ValueError(
                f"scar_fraction has shape {frac.shape}, expected {w.shape}"
            )
        scar = (frac >= constants.SCAR_THRESHOLD) & known[:, None]

    if p_lma is not None:
        pred_lab = rules.lma_call(p_lma)
    elif p_tos is not None:
        pred_lab = (rules.lma_from_tos(p_tos) > 0) & counted
    else:
        pred_lab = None
    return _Arrays(
        w=w,
        true_tos=t_tos,
        pred_tos=p_tos,
        combined_tos=c_tos,
        true_lab=None if t_lma is None else rules.lma_call(t_lma),
        pred_lab=pred_lab,
        scar=scar,
        has_scar=known,
    )


def _errors(pred, true, w: np.ndarray) -> tuple[Number, Number]:
    """(MAE, RMSE) over the sectors with w > 0; (None, None) if not computable."""
    total = float(w.sum())
    if pred is None or true is None or total <= 0:
        return None, None
    err = pred - true
    mae = float((w * np.abs(err)).sum() / total)
    rmse = math.sqrt(float((w * err * err).sum() / total))
    return mae, rmse


def _classification(true_lab, pred_lab, w: np.ndarray) -> dict[str, Number]:
    """Weighted confusion counts and accuracy / precision / recall / F1."""
    keys = ("accuracy", "precision", "recall", "f1", "tp", "fp", "fn", "tn")
    if true_lab is None or pred_lab is None or float(w.sum()) <= 0:
        return dict.fromkeys(keys)
    tp = float((w * (true_lab & pred_lab)).sum())
    fp = float((w * (~true_lab & pred_lab)).sum())
    fn = float((w * (true_lab & ~pred_lab)).sum())
    tn = float((w * (~true_lab & ~pred_lab)).sum())
    if tp + fp + fn == 0:  # no LMA, none called: the right answer, "no target"
        precision = recall = f1 = 1.0
    else:
        precision = tp / (tp + fp) if tp + fp > 0 else 0.0
        recall = tp / (tp + fn) if tp + fn > 0 else 0.0
        f1 = (
            2 * precision * recall / (precision + recall) if precision + recall else 0.0
        )
    return dict(
        accuracy=(tp + tn) / (tp + fp + fn + tn),
        precision=precision,
        recall=recall,
        f1=f1,
        tp=_count(tp),
        fp=_count(fp),
        fn=_count(fn),
        tn=_count(tn),
    )


def _count(x: float) -> float | int:
    """A weighted count, as an int when the weights were 0/1."""
    return int(x) if float(x).is_integer() else x


def sector_metrics(
    true_tos: np.ndarray | None,
    pred_tos: np.ndarray | None,
    combined_tos: np.ndarray | None,
    true_lma: np.ndarray | None,
    pred_lma: np.ndarray | None,
    scar_fraction: np.ndarray | None,
    has_scar: np.ndarray | None,
    weight: np.ndarray,
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS,
) -> dict[str, Number]:
    """The paper's per-sector metrics over N slices, as a flat JSON-ready dict.

    Args:
      true_tos: (N, S) label TOS in ms.
      pred_tos: (N, S) regressed TOS, or None (classification-only model).
      combined_tos: (N, S) combined TOS (`combine_tos`), or None.
      true_lma: (N, S) 0/1 scar-free LMA labels.
      pred_lma: (N, S) predicted LMA (0/1 or probability), or None: then
        derived from `pred_tos` (TOS > 17 ms + `LMA_TOS_EPS_MS`).
      scar_fraction: (N, S) LGE scar fraction, or None (no scar data).
      has_scar: (N,) whether the slice has scar data, or None: every slice
        has it when `scar_fraction` is given.
      weight: (N, S), > 0 on the sectors that count.
      frame_period_ms: ms per frame, to express errors in frames.

    Returns:
      `{tos,combined_tos}_{mae,rmse}_{ms,frames}` plus `_scar` / `_scar_free`
      variants, `lma_{accuracy,precision,recall,f1,tp,fp,fn,tn}`, and counts:
      `num_sectors`, `num_slices`, `num_scar_slices`, `num_scar_free_slices`,
      `num_slices_scar_unknown` (all counted slices only).
    """
    a = _prepare(
        true_tos,
        pred_tos,
        combined_tos,
        true_lma,
        pred_lma,
        scar_fraction,
        has_scar,
        weight,
    )
    counted_slice = np.any(a.w > 0, axis=1)
    scar_slice = a.scar_slice
    subset_masks = {"": counted_slice, "_scar": scar_slice, "_scar_free": ~scar_slice}
    out: dict[str, Number] = {}
    for prefix, pred in (("tos", a.pred_tos), ("combined_tos", a.combined_tos)):
        for subset in _SUBSETS:
            w = a.w * subset_masks[subset][:, None]
            mae, rmse = _errors(pred, a.true_tos, w)
            for stat, value in (("mae", mae), ("rmse", rmse)):
                out[f"{prefix}_{stat}_ms{subset}"] = value
                out[f"{prefix}_{stat}_frames{subset}"] = (
                    None if value is None else value / frame_period_ms
                )
    for key, value in _classification(a.true_lab, a.pred_lab, a.w).items():
        out[f"lma_{key}"] = value
    out["num_sectors"] = int(np.count_nonzero(a.w))
    out["num_slices"] = int(counted_slice.sum())
    out["num_scar_slices"] = int((counted_slice & scar_slice).sum())
    out["num_scar_free_slices"] = int((counted_slice & ~scar_slice).sum())
    out["num_slices_scar_unknown"] = int((counted_slice & ~a.has_scar).sum())
    return out


def _id(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def per_slice_rows(
    ids: Sequence[tuple[Any, Any]],
    true_tos: np.ndarray | None,
    pred_tos: np.ndarray | None,
    combined_tos: np.ndarray | None,
    true_lma: np.ndarray | None,
    pred_lma: np.ndarray | None,
    scar_fraction: np.ndarray | None,
    has_scar: np.ndarray | None,
    weight: np.ndarray,
) -> list[dict[str, Any]]:
    """One row per slice (columns `CSV_COLUMNS`) for the per-slice CSV.

    `ids` holds (subject_id, slice_id) pairs (str or bytes). Arrays are as in
    `sector_metrics`. Errors, LMA scores and `true_max_tos_ms` use the
    counted sectors (None for a slice with none); `num_scar_sectors` and
    `pred_max_tos_ms` describe all sectors of the slice.
    """
    a = _prepare(
        true_tos,
        pred_tos,
        combined_tos,
        true_lma,
        pred_lma,
        scar_fraction,
        has_scar,
        weight,
    )
    if len(ids) != a.w.shape[0]:
        raise ValueError(f"{len(ids)} ids for {a.w.shape[0]} slices")
    raw_pred = None if pred_tos is None else np.asarray(pred_tos, dtype=np.float64)

    def row_of(x: np.ndarray | None, i: int) -> np.ndarray | None:
        return None if x is None else x[i]

    rows = []
    for i, (subject_id, slice_id) in enumerate(ids):
        w = a.w[i]
        counted = w > 0
        true_i = row_of(a.true_tos, i)
        cls = _classification(row_of(a.true_lab, i), row_of(a.pred_lab, i), w)
        has_lab = a.true_lab is not None and counted.any()
        has_pred = a.pred_lab is not None and counted.any()
        rows.append(
            {
                "subject_id": _id(subject_id),
                "slice_id": _id(slice_id),
                "scar_known": bool(a.has_scar[i]),
                "num_scar_sectors": (int(a.scar[i].sum()) if a.has_scar[i] else None),
                "num_sectors": int(counted.sum()),
                "tos_mae_ms": _errors(row_of(a.pred_tos, i), true_i, w)[0],
                "combined_tos_mae_ms": _errors(row_of(a.combined_tos, i), true_i, w)[0],
                "lma_accuracy": cls["accuracy"],
                "lma_f1": cls["f1"],
                "num_lma_true": int(a.true_lab[i][counted].sum()) if has_lab else None,
                "num_lma_pred": int(a.pred_lab[i][counted].sum()) if has_pred else None,
                "true_max_tos_ms": (
                    float(true_i[counted].max())
                    if true_i is not None and counted.any()
                    else None
                ),
                "pred_max_tos_ms": (
                    None if raw_pred is None else float(np.max(raw_pred[i]))
                ),
            }
        )
    return rows


def write_csv(
    rows: Sequence[Mapping[str, Any]],
    path: str,
    columns: Sequence[str] | None = None,
) -> str:
    """Writes rows as CSV atomically (None -> empty cell); returns the path.

    Columns default to the keys of the rows in first-seen order.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def write_json(obj: Any, path: str) -> str:
    """Writes `obj` as indented JSON atomically; returns the path.

    numpy scalars and arrays are converted; NaN or inf raise ValueError
    (metrics use None for "not computable").
    """
    return atomic.write_json(path, obj, allow_nan=False)


def _cell(value: Any, digits: int) -> str:
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}f}" if math.isfinite(value) else "-"
    return str(value).replace("|", "\\|")


def comparison_table(
    results: Mapping[str, Mapping[str, Any]],
    keys: Sequence[str] = DEFAULT_TABLE_KEYS,
    digits: int = 3,
) -> str:
    """A markdown table: one row per experiment, one column per metric.

    Missing or None values show as `-`. The cost columns (COST_TABLE_KEYS)
    follow the metric columns when the results carry them.
    """
    # Cost column group: appended when any result has cost figures.
    cost = [k for k in COST_TABLE_KEYS if any(k in m for m in results.values())]
    keys = [*keys, *(k for k in cost if k not in keys)]
    header = "| experiment | " + " | ".join(keys) + " |"
    rule = "|---|" + "---:|" * len(keys)
    lines = [header, rule]
    for name, metrics in results.items():
        cells = [_cell(str(name), digits)] + [
            _cell(metrics.get(k), digits) for k in keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
