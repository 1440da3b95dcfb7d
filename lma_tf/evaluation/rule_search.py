"""Candidate LMA decision rules, chosen on the validation split (never test).

The shipped rule (`lma_tf.rules`) calls a sector LMA when P(LMA) >= 0.5 (or,
without an LMA head, when the regressed TOS is late). Cross-validation also
tries, per fold, a small grid of alternatives and keeps the one with the best
validation LMA accuracy, then reports it on the held-out fold:

  - the probability threshold (0.3 ... 0.7), or a TOS threshold without a head;
  - with a head, also requiring the regressed TOS to be late (both heads agree);
  - spike removal: `despike` flips runs of <= 5 sectors (gaps first, then
    spikes) around the ring; `close` is the authors' label clean-up, a
    circular binary closing with a 20-sector element applied when a slice has
    such a short run.

The first candidate is the shipped rule, and ties keep the earlier candidate,
so a tuned rule differs from the shipped one only when validation prefers it.
Numpy only.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from lma_tf import constants, rules

SHORT_RUN = 5  # sectors; the authors' spike length
CLOSING_LENGTH = 20  # sectors; the authors' structuring element
PROB_THRESHOLDS = (0.5, 0.3, 0.4, 0.6, 0.7)
TOS_THRESHOLDS_MS = (rules.LATE_TOS_MS, 19.0, 20.0, 22.0, 25.0, 30.0)
POST = ("none", "despike", "close")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One decision rule: threshold(s) then an optional clean-up of the ring."""

    prob_threshold: float | None  # None: no LMA head, TOS only
    tos_threshold_ms: float | None  # None: the TOS is not consulted
    post: str = "none"

    @property
    def name(self) -> str:
        parts = []
        if self.prob_threshold is not None:
            parts.append(f"p>={self.prob_threshold:g}")
        if self.tos_threshold_ms is not None:
            parts.append(f"tos>{self.tos_threshold_ms:g}")
        if self.post != "none":
            parts.append(self.post)
        return "+".join(parts)

    def calls(self, tos_ms: np.ndarray | None, probability: np.ndarray) -> np.ndarray:
        """(N, 126) bool LMA calls of this rule."""
        if self.prob_threshold is not None:
            out = np.asarray(probability, np.float64) >= self.prob_threshold
        else:
            out = np.ones(np.shape(probability), dtype=bool)
        if self.tos_threshold_ms is not None:
            if tos_ms is None:
                raise ValueError(f"rule {self.name} needs a TOS head")
            out &= np.asarray(tos_ms, np.float64) > self.tos_threshold_ms
        if self.post == "despike":
            out = despike(out)
        elif self.post == "close":
            out = close_if_spiky(out)
        return out


def candidates(has_lma_head: bool, has_tos: bool) -> list[Rule]:
    """The grid tried on validation; the shipped rule first."""
    out = []
    if has_lma_head:
        tos_options = (None, rules.LATE_TOS_MS) if has_tos else (None,)
        for p, t, post in itertools.product(PROB_THRESHOLDS, tos_options, POST):
            out.append(Rule(p, t, post))
    else:
        for t, post in itertools.product(TOS_THRESHOLDS_MS, POST):
            out.append(Rule(None, t, post))
    return out


def _circular_runs(row: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, length, value) of each circular run of a 1-D bool ring."""
    n = row.size
    change = np.flatnonzero(row != np.roll(row, 1))
    if change.size == 0:
        return [(0, n, bool(row[0]))]
    starts = list(change)
    return [
        (int(s), int((starts[(i + 1) % len(starts)] - s) % n or n), bool(row[s]))
        for i, s in enumerate(starts)
    ]


def despike(calls: np.ndarray, max_run: int = SHORT_RUN) -> np.ndarray:
    """Flips circular runs of <= `max_run` sectors: short gaps, then short spikes."""
    out = np.array(calls, dtype=bool, copy=True)
    n = out.shape[-1]
    for row in out.reshape(-1, n):
        for value in (False, True):
            for start, length, v in _circular_runs(row):
                if v == value and length <= max_run and length < n:
                    row[(start + np.arange(length)) % n] = not value
    return out


def _window(x: np.ndarray, length: int, reduce) -> np.ndarray:
    offsets = np.arange(length) - length // 2
    return reduce([np.roll(x, int(o), axis=-1) for o in offsets], axis=0)


def close_if_spiky(calls: np.ndarray, max_run: int = SHORT_RUN) -> np.ndarray:
    """The authors' clean-up: circular closing (20 sectors) of spiky slices only."""
    x = np.array(calls, dtype=bool, copy=True)
    n = x.shape[-1]
    flat = x.reshape(-1, n)
    for i, row in enumerate(flat):
        runs = _circular_runs(row)
        if len(runs) > 1 and min(length for _, length, _ in runs) <= max_run:
            dilated = _window(row, CLOSING_LENGTH, np.any)
            flat[i] = _window(dilated[::-1], CLOSING_LENGTH, np.all)[::-1]
    return x


def accuracy(calls: np.ndarray, true_lma: np.ndarray, weight: np.ndarray) -> float:
    """Weighted per-sector accuracy of `calls` (the metric rules are chosen on)."""
    w = np.asarray(weight, np.float64)
    hit = calls == rules.lma_call(true_lma)
    total = w.sum()
    return float((w * hit).sum() / total) if total > 0 else 0.0


def choose(
    tos_ms: np.ndarray | None,
    probability: np.ndarray,
    true_lma: np.ndarray,
    weight: np.ndarray,
    has_lma_head: bool,
) -> tuple[Rule, dict[str, float]]:
    """The candidate with the best accuracy on these (validation) arrays.

    Returns the rule and every candidate's accuracy, by name.
    """
    scores = {}
    best, best_score = None, -1.0
    for rule in candidates(has_lma_head, tos_ms is not None):
        score = accuracy(rule.calls(tos_ms, probability), true_lma, weight)
        scores[rule.name] = score
        if score > best_score + 1e-12:
            best, best_score = rule, score
    return best, scores


def combined_tos(tos_ms: np.ndarray, calls: np.ndarray) -> np.ndarray:
    """The regressed TOS where `calls` says LMA, else 17 ms (as `rules.combine_tos`)."""
    return np.where(calls, np.asarray(tos_ms, np.float64), constants.TOS_FLOOR_MS)
