"""The per-subject report (report.json), the cohort summary and the decision metrics.

`analyse` turns predicted slices into one `SubjectResult` per subject (the
segment table and the ranked targets). On labelled data (true TOS in the
prediction CSV) each subject also has a true target, the latest scar-free
segment by true TOS and scar, or none, and the decision is scored:

  - top-1 hit: the first target is the true one (or there is no true target
    and none is recommended);
  - top-2 hit: the true target is among the first two (no true target: none
    recommended);
  - adjacent hit: the first target is the true one or shares an edge with it
    (same ring, or the ring above or below);
  - delay: how much earlier, in truth, the first target activates than the
    true one (median true TOS, ms; 0 on a top-1 hit), for subjects with a
    true target and a scar-free first target; a within-5-ms hit is a first
    target that is the true one or scar-free and at most `NEAR_MS` earlier,
    less than a third of a 17 ms frame: a near-tie that DENSE cannot
    separate;
  - tie-set hit: the true target is the first target or one of its
    near-ties (`targets.NEAR_TIE_MS`, predicted); a subject given a first
    target without a near-tie is decisive;
  - true margin: how much later, in truth, the true target activates than
    the next choice (`targets.true_margin`); over `NEAR_MS` the truth is
    clear, and top-1 is also given by band of margin, because a near-tie in
    truth is ordered by errors of a few ms.

`decision_metrics(slices)` gives these over a cohort for evaluation;
`sector_calibration` the ECE of P(LMA) and the 90 % TOS interval coverage.
The report folder itself is written by `lma_tf.decision.run`. Numpy only.
See docs/decision.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lma_tf import __version__, constants, rules
from lma_tf.decision import calibration, targets, uncertainty
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation
from lma_tf.decision.segments import SegmentSummary, slice_levels, subject_segments
from lma_tf.decision.targets import Decision
from lma_tf.decision.uncertainty import EnsembleSlice
from lma_tf.serving.prediction_csv import PredictedSlice

SCHEMA = "lma_tf.decision.report"
SCHEMA_VERSION = 1
COHORT_SCHEMA = "lma_tf.decision.cohort"
BANNER = "Research use only \u2014 not a medical device"
# A first target this close to the latest in truth is a near miss (the same
# 5 ms as the near-ties of a decision, `targets.NEAR_TIE_MS`).
NEAR_MS = targets.NEAR_TIE_MS
# Bands of the true margin (`targets.true_margin`) for top-1 by margin: at
# most 2 ms, 2-5 ms (both near-ties in truth), over 5 ms (clear in truth).
MARGIN_BANDS_MS = (2.0, NEAR_MS)


@dataclasses.dataclass
class SubjectResult:
    """One subject: its slices, their levels, the segment table and the decision."""

    subject_id: str
    slices: list[EnsembleSlice]
    levels: list[str]
    segments: list[SegmentSummary]
    decision: Decision

    @property
    def labelled(self) -> bool:
        """Whether every slice has a true TOS (the decision can be scored)."""
        return all(s.true_tos_ms is not None for s in self.slices)

    @property
    def true_target(self) -> int | None:
        """The labelled answer (None: no target, or unlabelled)."""
        return targets.true_target(self.segments) if self.labelled else None

    def quality(self) -> dict | None:
        """The hits of the decision against the true target (module doc): top-1,
        top-2, adjacent, within 5 ms with the delay, the tie set (with the
        near-ties), and the true target's margin in truth; None unlabelled."""
        if not self.labelled:
            return None
        true, pred = self.true_target, self.decision.segments
        ties = [t.segment for t in self.decision.near_ties]
        delay = None
        if true is None:
            hit = not pred
            top1 = top2 = adjacent = near = tie_hit = hit
        else:
            tie_hit = bool(pred) and true in [pred[0], *ties]
            top1 = bool(pred) and pred[0] == true
            top2 = true in pred[:2]
            adjacent = top1 or (bool(pred) and orientation_lib.adjacent(pred[0], true))
            delay = self._delay_ms(true, pred[0]) if pred else None
            near = top1 or (delay is not None and delay <= NEAR_MS)
        return {
            "true_target": true,
            "predicted_targets": pred[:2],
            "top1": bool(top1),
            "top2": bool(top2),
            "adjacent": bool(adjacent),
            "within_5ms": bool(near),
            "delay_ms": delay,
            "near_ties": ties,
            "tie_set_hit": bool(tie_hit),
            "true_margin_ms": targets.true_margin(self.segments),
        }

    def _delay_ms(self, true: int, first: int) -> float | None:
        """True median TOS of `true` minus that of `first`; None where `first`
        is scar in truth (not a near miss) or lacks a true TOS."""
        by_segment = {s.segment: s for s in self.segments}
        if first == true:
            return 0.0
        t, f = by_segment[true], by_segment[first]
        scar = f.true_scar_fraction
        if f.true_tos_median_ms is None or t.true_tos_median_ms is None:
            return None
        if scar is not None and scar >= constants.SCAR_THRESHOLD:
            return None
        return max(float(t.true_tos_median_ms - f.true_tos_median_ms), 0.0)


def analyse(
    slices: Sequence[PredictedSlice | EnsembleSlice],
    orientation: Orientation = orientation_lib.DEFAULT,
    base_at_high: bool = True,
    lge: Mapping[str, Mapping[int, float]] | None = None,
) -> list[SubjectResult]:
    """One `SubjectResult` per subject, in the order subjects first appear.

    `lge` maps subject -> segment -> scar fraction (an LGE segment table).
    """
    grouped: dict[str, list[EnsembleSlice]] = {}
    for s in uncertainty.as_ensemble(slices):
        grouped.setdefault(s.subject_id, []).append(s)
    out = []
    for subject, group in grouped.items():
        segs = subject_segments(
            group, orientation, base_at_high, (lge or {}).get(subject)
        )
        out.append(
            SubjectResult(
                subject_id=subject,
                slices=group,
                levels=slice_levels(group, base_at_high),
                segments=segs,
                decision=targets.rank_targets(segs),
            )
        )
    return out


def predicted_slices(
    subject_ids: Sequence[str],
    slice_ids: Sequence[str],
    slice_locations,
    tos_ms,
    lma_probability,
    true_tos_ms=None,
    scar_fraction=None,
    has_tos=None,
    has_scar=None,
) -> list[PredictedSlice]:
    """Prediction-CSV slices from (N, 126) arrays, as evaluation holds them.

    `slice_locations` (N,) is NaN where unknown; `has_tos` / `has_scar` (N,)
    say which rows carry labels (default: all rows of the given arrays).
    """
    n = len(slice_ids)
    loc = np.asarray(slice_locations, np.float64).reshape(n)
    tos = np.asarray(tos_ms, np.float64)
    prob = np.asarray(lma_probability, np.float64)
    has_tos = np.ones(n, bool) if has_tos is None else np.asarray(has_tos, bool)
    has_scar = np.ones(n, bool) if has_scar is None else np.asarray(has_scar, bool)

    def row(a, ok: np.ndarray, i: int):
        return None if a is None or not ok[i] else np.asarray(a[i], np.float64)

    return [
        PredictedSlice(
            subject_id=subject_ids[i],
            slice_id=slice_ids[i],
            slice_location=float(loc[i]) if np.isfinite(loc[i]) else None,
            tos_ms=tos[i],
            lma_probability=prob[i],
            combined_tos_ms=rules.combine_tos(tos[i], prob[i]),
            true_tos_ms=row(true_tos_ms, has_tos, i),
            scar_fraction=row(scar_fraction, has_scar, i),
        )
        for i in range(n)
    ]


def labelled_probabilities(slices: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(N, 126) P(LMA) and labels (`rules.lma_labels`) of labelled slices.

    Labels are NaN on sectors without a true TOS, so they never count.
    """
    prob = np.stack([s.lma_probability for s in slices])
    true_tos = np.stack([s.true_tos_ms for s in slices])
    labels = np.stack(
        [rules.lma_labels(s.true_tos_ms, s.scar_fraction) for s in slices]
    )
    return prob, np.where(np.isfinite(true_tos), labels, np.nan)


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _delays(values: list[float | None]) -> dict:
    """Median and 90th percentile of the first targets' delays (ms)."""
    d = np.asarray([v for v in values if v is not None], np.float64)
    if not d.size:
        return {"median": None, "p90": None, "num_subjects": 0}
    median, p90 = np.percentile(d, [50, 90])
    return {"median": float(median), "p90": float(p90), "num_subjects": int(d.size)}


def _margin_bands(with_target: list[dict]) -> list[dict]:
    """Top-1 and top-2 of the subjects with a true target, by true margin."""
    edges = (0.0, *MARGIN_BANDS_MS, math.inf)
    out = []
    for low, high in zip(edges[:-1], edges[1:]):
        # Margins are >= 0: the first band takes 0 itself.
        qs = [
            q
            for q in with_target
            if (low == 0.0 or q["true_margin_ms"] > low) and q["true_margin_ms"] <= high
        ]
        out.append(
            {
                "band": f"> {low:g} ms" if high == math.inf else f"{low:g}-{high:g} ms",
                "num_subjects": len(qs),
                "top1_accuracy": _share([q["top1"] for q in qs]),
                "top2_accuracy": _share([q["top2"] for q in qs]),
            }
        )
    return out


def metrics_from_results(results: Sequence[SubjectResult]) -> dict:
    """The decision metrics of analysed subjects (see the module doc)."""
    scored = [(r, r.quality()) for r in results]
    scored = [(r, q) for r, q in scored if q is not None]
    with_t = [q for _, q in scored if q["true_target"] is not None]
    without = [q for _, q in scored if q["true_target"] is None]
    qs = [q for _, q in scored]
    given = [q for q in qs if q["predicted_targets"]]  # a target was recommended
    return {
        "num_subjects": len(qs),
        "num_unlabelled_subjects": len(results) - len(qs),
        "num_with_target": len(with_t),
        "num_without_target": len(without),
        "top1_accuracy": _share([q["top1"] for q in qs]),
        "top2_accuracy": _share([q["top2"] for q in qs]),
        "adjacent_accuracy": _share([q["adjacent"] for q in qs]),
        "within_5ms_accuracy": _share([q["within_5ms"] for q in qs]),
        "delay_ms": _delays([q["delay_ms"] for q in with_t]),
        "tie_set_accuracy": _share([q["tie_set_hit"] for q in qs]),
        "decisive_share": _share([not q["near_ties"] for q in given]),
        "decisive_top1_accuracy": _share(
            [q["top1"] for q in given if not q["near_ties"]]
        ),
        "with_target": {
            k: _share([q[k] for q in with_t])
            for k in ("top1", "top2", "adjacent", "within_5ms", "tie_set_hit")
        },
        "no_target_agreement": _share([q["top1"] for q in without]),
        "clear_share": _share([q["true_margin_ms"] > NEAR_MS for q in with_t]),
        "clear_top1_accuracy": _share(
            [q["top1"] for q in with_t if q["true_margin_ms"] > NEAR_MS]
        ),
        "top1_by_true_margin": _margin_bands(with_t),
        "per_subject": [{"subject_id": r.subject_id, **q} for r, q in scored],
    }


def decision_metrics(
    slices: Sequence[PredictedSlice | EnsembleSlice],
    orientation: Orientation = orientation_lib.DEFAULT,
    base_at_high: bool = True,
    lge: Mapping[str, Mapping[int, float]] | None = None,
) -> dict:
    """Top-1 / top-2 / adjacent target accuracy over the labelled subjects.

    `slices` are a prediction CSV's (`prediction_csv.read`) or aggregated
    ones; subjects without true TOS are counted as unlabelled and skipped.
    Accuracies are None when no subject counts. Keys: num_subjects,
    num_unlabelled_subjects, num_with_target, num_without_target,
    top1_accuracy, top2_accuracy, adjacent_accuracy, within_5ms_accuracy,
    tie_set_accuracy (all labelled subjects), delay_ms {median, p90},
    decisive_share and decisive_top1_accuracy (of the subjects given a
    target: the share without a near-tie, and their top-1), with_target
    {top1, top2, adjacent, within_5ms, tie_set_hit} (subjects with a true
    target),
    no_target_agreement (subjects without one: share recommended none),
    clear_share and clear_top1_accuracy (of the subjects with a true target:
    the share whose true margin is over 5 ms, and their top-1),
    top1_by_true_margin (top-1 / top-2 per band of `MARGIN_BANDS_MS`),
    per_subject (one dict per labelled subject).
    """
    return metrics_from_results(analyse(slices, orientation, base_at_high, lge))


def decision_scores(
    slices: Sequence[PredictedSlice], decision: dict | None = None
) -> dict:
    """`decision_metrics` as `decision_*` metric keys.

    What evaluation and cross-validation report (from `predicted_slices` of
    their split arrays): top-1 / top-2 / adjacent / within-5-ms / tie-set
    accuracy (default orientation), the decisive share and its top-1, the
    clear share and its top-1, the median delay and the subjects counted.
    `decision`: the `decision_metrics` of `slices`, where already computed.
    """
    decision = decision_metrics(slices) if decision is None else decision
    keys = (
        "top1_accuracy",
        "top2_accuracy",
        "adjacent_accuracy",
        "within_5ms_accuracy",
        "tie_set_accuracy",
        "decisive_share",
        "decisive_top1_accuracy",
        "clear_share",
        "clear_top1_accuracy",
    )
    out = {f"decision_{key}": decision[key] for key in keys}
    out["decision_delay_ms_median"] = decision["delay_ms"]["median"]
    out["decision_num_subjects"] = decision["num_subjects"]
    return out


def sector_calibration(
    slices: Sequence[PredictedSlice | EnsembleSlice], num_bins: int = 15
) -> dict | None:
    """ECE of P(LMA) and 90 % TOS interval coverage over labelled slices.

    Labels are `rules.lma_labels(true TOS, scar)`. Coverage is None for a
    single model without an interval (zero width: `lma-tf report
    --calibration` gives it one). None without labelled slices.
    """
    ens = [s for s in uncertainty.as_ensemble(slices) if s.true_tos_ms is not None]
    if not ens:
        return None
    prob, labels = labelled_probabilities(ens)
    rel = calibration.reliability(prob, labels, num_bins=num_bins)
    members = max(s.num_members for s in ens)
    coverage = None
    widths = [np.nan_to_num(s.interval_width_ms) for s in ens]
    if members > 1 or any(np.any(w > 0) for w in widths):
        coverage = calibration.interval_coverage(
            np.stack([s.true_tos_ms for s in ens]),
            np.stack([s.tos_lo_ms for s in ens]),
            np.stack([s.tos_hi_ms for s in ens]),
        )
    return {
        "ece": rel.ece,
        "num_bins": num_bins,
        "num_sectors": int(rel.weight.sum()),
        "ensemble_members": members,
        "tos_interval_coverage": coverage,
        "tos_interval": f"{uncertainty.INTERVAL[0]:g}-{uncertainty.INTERVAL[1]:g}%",
    }


def json_ready(value):
    """`value` with NaN / inf floats as None and numpy scalars as Python ones.

    Reports are strict JSON, so that any reader can load them.
    """
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def thresholds() -> dict:
    """The rule thresholds a report was made with."""
    return {
        "lma_probability": rules.LMA_THRESHOLD,
        "late_tos_ms": rules.LATE_TOS_MS,
        "scar_fraction": constants.SCAR_THRESHOLD,
        "probability_margin": uncertainty.PROBABILITY_MARGIN,
        "uncertain_share": uncertainty.UNCERTAIN_SHARE,
        "wide_interval_ms": uncertainty.WIDE_INTERVAL_MS,
    }


def subject_report(
    result: SubjectResult,
    *,
    orientation: Orientation,
    base_at_high: bool,
    inputs: Mapping | None = None,
    model: Mapping | None = None,
    temperature: float = 1.0,
) -> dict:
    """The report.json document of one subject (schema SCHEMA, SCHEMA_VERSION)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "lma_tf_version": __version__,
        "notice": BANNER,
        "subject_id": result.subject_id,
        "inputs": dict(inputs or {}),
        "model": dict(model) if model is not None else None,
        "orientation": orientation.to_dict(),
        "base_at": "high" if base_at_high else "low",
        "slices": [
            {
                "slice_id": s.slice_id,
                "slice_location": s.slice_location,
                "level": level,
                "ensemble_members": s.num_members,
            }
            for s, level in zip(result.slices, result.levels)
        ],
        "calibration": {"temperature": temperature},
        "thresholds": thresholds(),
        "segments": [s.to_dict() for s in result.segments],
        "decision": result.decision.to_dict(),
        "decision_quality": result.quality(),
    }


COHORT_COLUMNS = (
    "subject_id",
    "num_slices",
    "ensemble_members",
    "recommended_segment",
    "recommended_name",
    "recommended_tos_ms",
    "recommended_probability",
    "second_segment",
    "num_targets",
    "num_low_confidence",
    "summary",
    "labelled",
    "true_target",
    "top1",
    "top2",
    "adjacent",
    "within_5ms",
    "delay_ms",
    "near_ties",
    "tie_set_hit",
    "true_margin_ms",
)


def cohort_row(result: SubjectResult) -> dict:
    """One subject's line of the cohort summary (COHORT_COLUMNS)."""
    d = result.decision
    top = d.recommended
    q = result.quality() or {}
    low = sum(1 for s in result.segments if s.imaged and s.low_confidence)
    margin = q.get("true_margin_ms")
    return {
        "subject_id": result.subject_id,
        "num_slices": len(result.slices),
        "ensemble_members": max(s.num_members for s in result.slices),
        "recommended_segment": top.segment if top else None,
        "recommended_name": top.name if top else None,
        "recommended_tos_ms": round(top.tos_median_ms, 2) if top else None,
        "recommended_probability": round(top.lma_probability, 4) if top else None,
        "second_segment": d.targets[1].segment if len(d.targets) > 1 else None,
        "num_targets": len(d.targets),
        "num_low_confidence": low,
        "summary": d.summary(),
        "labelled": result.labelled,
        "true_target": q.get("true_target"),
        "top1": q.get("top1"),
        "top2": q.get("top2"),
        "adjacent": q.get("adjacent"),
        "within_5ms": q.get("within_5ms"),
        "delay_ms": None if q.get("delay_ms") is None else round(q["delay_ms"], 2),
        "near_ties": " ".join(str(t.segment) for t in d.near_ties),
        "tie_set_hit": q.get("tie_set_hit"),
        "true_margin_ms": None if margin is None else round(margin, 2),
    }
