"""The pacing targets of one subject: ranked candidates and excluded segments.

A candidate is an imaged segment that is late (median combined TOS after
17 ms + 1 ms), not scar (scar fraction below 0.5; unknown scar is allowed
and said so) and confidently predicted (no low-confidence flag). Candidates
are ranked latest first (median combined TOS), then by the mean P(LMA), then
by the share of sectors called LMA. Every other segment is listed as
excluded with its reasons: not imaged, scar, not late, low confidence. A
low-confidence segment is therefore never ranked, let alone first. No
candidate means no target, which is the right answer for a subject without
late activation. Targets whose median TOS is at most `NEAR_TIE_MS` before
the first's are its near-ties: the measurement cannot order them reliably, so
they are named with it. See docs/decision.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from lma_tf import constants, rules
from lma_tf.decision.segments import SegmentSummary

# Targets this close to the first (median combined TOS) are near-ties: under
# a third of a 17 ms frame, about the per-slice error on late segments.
NEAR_TIE_MS = 5.0


@dataclasses.dataclass
class Target:
    """A ranked pacing target (rank 1 = best)."""

    rank: int
    segment: int
    name: str
    tos_median_ms: float
    lma_probability: float
    lma_fraction: float
    scar_fraction: float | None
    reason: str


@dataclasses.dataclass
class Exclusion:
    """A segment that is not a target, and why."""

    segment: int
    name: str
    reasons: list[str]


@dataclasses.dataclass
class Decision:
    """The ranked targets (best first) and the excluded segments (by number).

    `num_late`: imaged segments that are late, targets or not.
    """

    targets: list[Target]
    excluded: list[Exclusion]
    num_late: int = 0

    @property
    def recommended(self) -> Target | None:
        return self.targets[0] if self.targets else None

    @property
    def segments(self) -> list[int]:
        """The target segments, best first."""
        return [t.segment for t in self.targets]

    @property
    def near_ties(self) -> list[Target]:
        """Targets after the first at most `NEAR_TIE_MS` earlier (median TOS)."""
        if not self.targets:
            return []
        first = self.targets[0].tos_median_ms
        return [t for t in self.targets[1:] if first - t.tos_median_ms <= NEAR_TIE_MS]

    def summary(self) -> str:
        """One line: the recommended segment (and its near-ties), or why none."""
        if self.recommended is not None:
            t = self.recommended
            text = (
                f"segment {t.segment} ({t.name}), median TOS {t.tos_median_ms:.0f} ms"
            )
            ties = self.near_ties
            if ties:
                names = ", ".join(f"{x.segment} ({x.name})" for x in ties)
                text += (
                    f"; near-tie within {NEAR_TIE_MS:g} ms: segment"
                    f"{'s' if len(ties) > 1 else ''} {names}"
                )
            return text
        if not self.num_late:
            return "no target: no late-activating segment"
        return "no target: every late segment is scar or low-confidence"

    def to_dict(self, digits: int = 4) -> dict:
        def rounded(d: dict) -> dict:
            return {
                k: round(v, digits) if isinstance(v, float) else v for k, v in d.items()
            }

        return {
            "recommended": self.recommended.segment if self.recommended else None,
            "near_ties": [t.segment for t in self.near_ties],
            "summary": self.summary(),
            "num_late_segments": self.num_late,
            "targets": [rounded(dataclasses.asdict(t)) for t in self.targets],
            "excluded": [dataclasses.asdict(e) for e in self.excluded],
        }


def _scar_text(s: SegmentSummary) -> str:
    if s.scar_fraction is None:
        return "scar unknown (no LGE data)"
    source = "LGE table" if s.scar_source == "lge_table" else "data"
    return f"scar {s.scar_fraction:.2f} ({source})"


def _reason(s: SegmentSummary, rank: int) -> str:
    lead = "latest-activating scar-free segment" if rank == 1 else f"rank {rank}"
    text = (
        f"{lead}: median TOS {s.tos_median_ms:.0f} ms "
        f"(IQR {s.tos_q1_ms:.0f}-{s.tos_q3_ms:.0f}), {s.lma_fraction:.0%} of "
        f"sectors called LMA, mean P(LMA) {s.lma_probability:.2f}, {_scar_text(s)}"
    )
    if s.tos_interval_ms is not None:
        text += f", 90% TOS interval {s.tos_interval_ms:.0f} ms wide"
    return text


def _exclusion_reasons(s: SegmentSummary) -> list[str]:
    if not s.imaged:
        return [f"not imaged (no {s.level} slice)"]
    reasons = []
    if s.scar:
        reasons.append(
            f"scar {s.scar_fraction:.2f} >= {constants.SCAR_THRESHOLD:g} "
            f"({'LGE table' if s.scar_source == 'lge_table' else 'data'})"
        )
    if not s.late:
        reasons.append(
            f"not late: median TOS {s.tos_median_ms:.0f} ms "
            f"(late means after {rules.LATE_TOS_MS:g} ms)"
        )
    if s.low_confidence:
        reasons.append("low confidence: " + "; ".join(s.confidence_notes))
    return reasons


def rank_targets(segments: Sequence[SegmentSummary]) -> Decision:
    """Ranks one subject's segments into targets and exclusions."""
    candidates, excluded = [], []
    for s in segments:
        reasons = _exclusion_reasons(s)
        if reasons:
            excluded.append(Exclusion(s.segment, s.name, reasons))
        else:
            candidates.append(s)
    candidates.sort(
        key=lambda s: (
            -round(s.tos_median_ms, 1),
            -s.lma_probability,
            -s.lma_fraction,
            s.segment,
        )
    )
    targets = [
        Target(
            rank=i + 1,
            segment=s.segment,
            name=s.name,
            tos_median_ms=s.tos_median_ms,
            lma_probability=s.lma_probability,
            lma_fraction=s.lma_fraction,
            scar_fraction=s.scar_fraction,
            reason=_reason(s, i + 1),
        )
        for i, s in enumerate(candidates)
    ]
    num_late = sum(1 for s in segments if s.imaged and s.late)
    return Decision(targets, sorted(excluded, key=lambda e: e.segment), num_late)


def _true_candidates(segments: Sequence[SegmentSummary]) -> list[tuple[float, int]]:
    """(median true TOS, segment) of the late scar-free segments, latest first;
    ties (to 0.1 ms) go to the lower segment number."""
    out = []
    for s in segments:
        t, scar = s.true_tos_median_ms, s.true_scar_fraction
        if t is None or t <= rules.LATE_TOS_MS:
            continue
        if scar is not None and scar >= constants.SCAR_THRESHOLD:
            continue
        out.append((t, s.segment))
    return sorted(out, key=lambda c: (-round(c[0], 1), c[1]))


def true_target(segments: Sequence[SegmentSummary]) -> int | None:
    """The labelled answer: the latest scar-free segment by true TOS and scar.

    Late means median true TOS after 17 ms + 1 ms; scar means mean true scar
    >= 0.5. None when no segment is late and scar-free (then recommending
    none is right). Ties go to the lower segment number.
    """
    candidates = _true_candidates(segments)
    return candidates[0][1] if candidates else None


def true_margin(segments: Sequence[SegmentSummary]) -> float | None:
    """How much later, in truth, the true target activates than the next
    choice (ms): the next latest late scar-free segment, or "no target" (the
    late threshold) when it is the only one. None without a true target.

    A margin of at most `NEAR_TIE_MS` is a near-tie in truth: an error of a
    few ms on either segment, under a third of a frame, reorders them.
    """
    candidates = _true_candidates(segments)
    if not candidates:
        return None
    runner_up = candidates[1][0] if len(candidates) > 1 else rules.LATE_TOS_MS
    # Ranked on 0.1 ms: a runner-up up to 0.05 ms later is still a tie, 0 ms.
    return max(float(candidates[0][0] - runner_up), 0.0)
