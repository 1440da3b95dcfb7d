"""One subject's AHA 16-segment table from its predicted slices.

Each slice is basal, mid or apical by where it sits on the covered long axis
(`lma_tf.viz.aha.slice_levels`, from the slice locations); each sector goes
to the segment its anatomical angle falls in (`orientation`). A segment then
pools the sectors of every slice at its level:

  - combined TOS: median and interquartile range (IQR),
  - the share of sectors called LMA (`rules.lma_call`) and the mean P(LMA),
  - scar: the mean scar fraction of the data, or the user's LGE segment
    table (`read_segment_scar`) where it has the segment,
  - uncertainty: the share of sectors whose P(LMA) is near the threshold and
    the median width of their 90 % TOS intervals; the low-confidence flag
    (rules in `lma_tf.decision.uncertainty`),
  - with labels: the median true TOS and the mean true scar.

Numpy only. See docs/decision.md.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lma_tf import constants, rules
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision import uncertainty
from lma_tf.decision.orientation import Orientation
from lma_tf.decision.uncertainty import EnsembleSlice
from lma_tf.errors import UsageError
from lma_tf.viz import aha


@dataclasses.dataclass
class SegmentSummary:
    """One AHA segment of one subject. Values are None where not known."""

    segment: int
    name: str
    level: str
    num_slices: int = 0
    num_sectors: int = 0
    tos_median_ms: float | None = None
    tos_q1_ms: float | None = None
    tos_q3_ms: float | None = None
    lma_fraction: float | None = None
    lma_probability: float | None = None
    uncertain_fraction: float | None = None
    tos_interval_ms: float | None = None
    scar_fraction: float | None = None
    scar_source: str | None = None
    true_tos_median_ms: float | None = None
    true_scar_fraction: float | None = None
    confidence_notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def imaged(self) -> bool:
        """Whether any slice covers the segment."""
        return self.num_sectors > 0

    @property
    def late(self) -> bool:
        """Median combined TOS after 17 ms + the LMA margin."""
        return self.tos_median_ms is not None and self.tos_median_ms > rules.LATE_TOS_MS

    @property
    def scar(self) -> bool:
        """Scar fraction at or above the scar threshold (unknown: False)."""
        s = self.scar_fraction
        return s is not None and s >= constants.SCAR_THRESHOLD

    @property
    def low_confidence(self) -> bool:
        return bool(self.confidence_notes)

    def to_dict(self, digits: int = 4) -> dict:
        """JSON-ready, floats rounded to `digits` decimals."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, digits)
        d.update(imaged=self.imaged, late=self.late, scar=self.scar)
        d["low_confidence"] = self.low_confidence
        return d


def slice_levels(
    slices: Sequence[EnsembleSlice], base_at_high: bool = True
) -> list[str]:
    """basal / mid / apical of each slice (thirds of the covered long axis).

    From `slice_location` where every slice has one (`base_at_high`: the
    largest location is the base), else the order given, the first basal.
    """
    return aha.slice_levels(aha.ring_heights(slices, base_at_high))


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


def _confidence_notes(s: SegmentSummary) -> list[str]:
    """Why a segment's numbers are not to be trusted (empty: confident)."""
    notes = []
    share = s.uncertain_fraction
    if share is not None and share >= uncertainty.UNCERTAIN_SHARE:
        notes.append(
            f"P(LMA) within {uncertainty.PROBABILITY_MARGIN:g} of "
            f"{rules.LMA_THRESHOLD:g} in {share:.0%} of its sectors"
        )
    width = s.tos_interval_ms
    if width is not None and width > uncertainty.WIDE_INTERVAL_MS:
        notes.append(
            f"90% TOS interval {width:.0f} ms wide "
            f"(> {uncertainty.WIDE_INTERVAL_MS:.0f} ms)"
        )
    return notes


def _pool(
    slices: Sequence[EnsembleSlice], levels: Sequence[str], orientation: Orientation
) -> dict[int, dict[str, list]]:
    """Per segment: the sector values of every slice at its level."""
    fields = ("combined", "prob", "width", "scar", "true_tos", "true_scar")
    pooled = {k: {f: [] for f in (*fields, "slices")} for k in range(1, 17)}
    for s, level in zip(slices, levels):
        o = s.orientation or orientation
        seg = o.sector_segments(level, np.asarray(s.combined_tos_ms).size)
        ok = np.isfinite(s.combined_tos_ms) & np.isfinite(s.lma_probability)
        for k in np.unique(seg[ok]):
            m = ok & (seg == k)
            p = pooled[int(k)]
            p["slices"].append(s.slice_id)
            p["combined"].append(s.combined_tos_ms[m])
            p["prob"].append(s.lma_probability[m])
            p["width"].append(s.interval_width_ms[m])
            for name, arr in (
                ("scar", s.scar_fraction),
                ("true_tos", s.true_tos_ms),
                ("true_scar", s.scar_fraction if s.true_tos_ms is not None else None),
            ):
                if arr is not None:
                    v = np.asarray(arr, np.float64)[m]
                    p[name].append(v[np.isfinite(v)])
    return pooled


def subject_segments(
    slices: Sequence[EnsembleSlice],
    orientation: Orientation = orientation_lib.DEFAULT,
    base_at_high: bool = True,
    lge: Mapping[int, float] | None = None,
) -> list[SegmentSummary]:
    """The 16 segment summaries of one subject's slices (segment 1 first).

    `orientation` applies to the slices that carry none of their own
    (`EnsembleSlice.orientation`). `lge` maps segment -> scar fraction from
    an LGE segment table; where it has a segment it replaces the data's scar.
    """
    levels = slice_levels(slices, base_at_high)
    pooled = _pool(slices, levels, orientation)
    members = max((s.num_members for s in slices), default=1)
    out = []
    for k in range(1, orientation_lib.NUM_SEGMENTS + 1):
        p = pooled[k]
        row = SegmentSummary(
            k, orientation_lib.SEGMENT_NAMES[k], orientation_lib.level_of(k)
        )
        if p["combined"]:
            tos = np.concatenate(p["combined"])
            prob = np.concatenate(p["prob"])
            row.num_slices = len(set(p["slices"]))
            row.num_sectors = int(tos.size)
            row.tos_median_ms = _median(tos)
            row.tos_q1_ms, row.tos_q3_ms = (
                float(q) for q in np.percentile(tos, [25, 75])
            )
            row.lma_fraction = float(np.mean(rules.lma_call(prob)))
            row.lma_probability = float(np.mean(prob))
            row.uncertain_fraction = float(np.mean(uncertainty.sector_uncertain(prob)))
            if members > 1:
                row.tos_interval_ms = _median(np.concatenate(p["width"]))
            if p["scar"]:
                row.scar_fraction = _mean(np.concatenate(p["scar"]))
                if row.scar_fraction is not None:
                    row.scar_source = "data"
            if p["true_tos"]:
                row.true_tos_median_ms = _median(np.concatenate(p["true_tos"]))
                if p["true_scar"]:
                    row.true_scar_fraction = _mean(np.concatenate(p["true_scar"]))
            row.confidence_notes = _confidence_notes(row)
        if lge is not None and k in lge:
            row.scar_fraction, row.scar_source = float(lge[k]), "lge_table"
        out.append(row)
    return out


# The LGE segment table -------------------------------------------------------

_NAME_TO_SEGMENT = {v.lower(): k for k, v in orientation_lib.SEGMENT_NAMES.items()}


def _segment(cell: str) -> int:
    cell = cell.strip()
    if cell.isdigit() and 1 <= int(cell) <= orientation_lib.NUM_SEGMENTS:
        return int(cell)
    key = " ".join(cell.lower().replace("-", " ").replace("_", " ").split())
    if key in _NAME_TO_SEGMENT:
        return _NAME_TO_SEGMENT[key]
    raise ValueError(f"segment {cell!r} is neither 1-16 nor an AHA segment name")


def read_segment_scar(path: str) -> dict[str, dict[int, float]]:
    """Scar per subject and AHA segment from an LGE segment table (CSV).

    Columns: `subject_id`, `segment` (1-16, or a name such as "basal
    inferolateral") and `scar_fraction` (0-1) or `scar_percent` (0-100).
    An empty value means unknown (the data's scar is used there).

    Raises:
      UsageError: a missing column, a bad segment or value, or a segment
        given twice for a subject (file and line named).
    """
    out: dict[str, dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        value_col = next(
            (c for c in ("scar_fraction", "scar_percent") if c in header), None
        )
        missing = [c for c in ("subject_id", "segment") if c not in header]
        if missing or value_col is None:
            need = missing + ([] if value_col else ["scar_fraction or scar_percent"])
            raise UsageError(f"{path}: missing column(s) {need}")
        scale = 100.0 if value_col == "scar_percent" else 1.0
        for line, row in enumerate(reader, start=2):
            try:
                segment = _segment(row["segment"] or "")
                cell = (row[value_col] or "").strip()
                if not cell:
                    continue
                value = float(cell) / scale
                if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                    raise ValueError(f"{value_col} {cell} is outside 0-{scale:g}")
            except ValueError as e:
                raise UsageError(f"{path}:{line}: {e}") from None
            subject = (row["subject_id"] or "").strip()
            if not subject:
                raise UsageError(f"{path}:{line}: empty subject_id")
            seen = out.setdefault(subject, {})
            if segment in seen:
                raise UsageError(
                    f"{path}:{line}: segment {segment} of subject {subject!r} repeated"
                )
            seen[segment] = value
    return out
