"""Non-learned baseline: onset-of-shortening TOS detector (numpy + scipy only).

The paper compares the networks with a classical detector; this is an
optimisation-free one: smooth the strain matrix, find each sector's onset of
shortening with a threshold rule, then regularise the TOS over the ring.

Onset rule (per sector, on the smoothed strain of the real frames):
  1. The shortening event is the first frame j* where the strain has fallen
     more than |threshold| below its running maximum (the most stretched
     state so far) and stays there for the next frame as well (a one-frame
     noise dip is not an event). Measuring from the running maximum rather
     than from zero makes the rule indifferent to pre-stretch, which is
     large exactly in the late lateral wall.
  2. The onset is the last frame k <= j* whose strain is still within
     `ONSET_TOLERANCE` (absolute strain) of that maximum, i.e. where
     shortening began rather than where it became large (a plain "first
     frame below threshold" rule is biased late by much of the shortening
     time, and more so after pre-stretch).
  3. TOS = (k + 1) x frame period (frame j, 0-based, is at (j + 1) x period),
     floored at 17 ms. A sector with no such event gets the end of the
     sequence: its last real frame.

Its known weakness, kept on purpose: scar barely shortens, so scarred sectors
get a late TOS (often the end of the sequence) although their label is 17 ms,
and `rules.lma_from_tos` calls them LMA: it knows nothing about scar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from lma_tf import constants

DEFAULT_THRESHOLD = -0.02
THRESHOLD_CANDIDATES = (-0.005, -0.01, -0.015, -0.02, -0.03, -0.04)
# Strain (fractional) below the running maximum still counted as "not yet
# shortening" when stepping back from the event to its onset. Measured on the
# synthetic cohort: 0.001 is unbiased; 0 is early, 0.003 a few ms late.
ONSET_TOLERANCE = 0.001
# Frames the drop must persist (the event frame included).
SUSTAIN_FRAMES = 2


def _smooth(strain: np.ndarray, smooth_sectors: int, smooth_frames: int) -> np.ndarray:
    """Moving average, circular along sectors, edge-replicating along time."""
    out = strain
    if smooth_sectors > 1:
        out = ndimage.uniform_filter1d(out, smooth_sectors, axis=0, mode="wrap")
    if smooth_frames > 1:
        out = ndimage.uniform_filter1d(out, smooth_frames, axis=1, mode="nearest")
    return out


def _onset_frames(strain: np.ndarray, threshold: float) -> np.ndarray:
    """0-based onset frame per row; -1 where no shortening event is found."""
    drop = abs(float(threshold))
    rows, frames = strain.shape
    peak = np.maximum.accumulate(strain, axis=1)
    below = strain < peak - drop
    # Sustained: below the running maximum of the event frame for
    # SUSTAIN_FRAMES frames (or until the end of the sequence).
    sustained = below.copy()
    for lag in range(1, SUSTAIN_FRAMES):
        later = np.ones_like(below)
        later[:, :-lag] = strain[:, lag:] < peak[:, :-lag] - drop
        sustained &= later
    found = sustained.any(axis=1)
    event = np.argmax(sustained, axis=1)
    onset = np.full(rows, -1, dtype=np.int64)
    tol = ONSET_TOLERANCE
    for r in np.flatnonzero(found):
        j = event[r]
        near_peak = strain[r, : j + 1] >= peak[r, j] - tol
        onset[r] = int(np.flatnonzero(near_peak)[-1])
    return onset


def detect_tos(
    strain: np.ndarray,
    frame_period_ms: float = constants.DEFAULT_FRAME_PERIOD_MS,
    *,
    smooth_sectors: int = 5,
    smooth_frames: int = 3,
    threshold: float = DEFAULT_THRESHOLD,
    regularize_sectors: int = 9,
    num_frames: int | None = None,
) -> np.ndarray:
    """TOS per sector (ms, >= 17) of one (sectors, frames) strain matrix.

    Rows are sectors on a ring (126, or 128 when padded); frames beyond
    `num_frames` (zero padding) are ignored. See the module docstring for the
    onset rule. Returns a (sectors,) float32 array.
    """
    s = np.asarray(strain, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"strain must be (sectors, frames), got {s.shape}")
    n = s.shape[1] if num_frames is None else int(num_frames)
    if not 1 <= n <= s.shape[1]:
        raise ValueError(f"num_frames={num_frames} outside 1..{s.shape[1]}")
    if threshold >= 0:
        raise ValueError(f"threshold must be negative (shortening), got {threshold}")
    s = _smooth(s[:, :n], int(smooth_sectors), int(smooth_frames))
    onset = _onset_frames(s, threshold)
    frames = np.where(onset >= 0, onset, n - 1)
    tos = np.maximum((frames + 1) * float(frame_period_ms), constants.TOS_FLOOR_MS)
    if regularize_sectors > 1:
        tos = ndimage.median_filter(tos, size=int(regularize_sectors), mode="wrap")
    return tos.astype(np.float32)


def detect_batch(
    strain: np.ndarray, num_frames: np.ndarray | None = None, **params: Any
) -> np.ndarray:
    """`detect_tos` over a (batch, sectors, frames) array; returns (batch, sectors)."""
    x = np.asarray(strain)
    if x.ndim != 3:
        raise ValueError(f"strain must be (batch, sectors, frames), got {x.shape}")
    counts = (
        np.full(x.shape[0], x.shape[2])
        if num_frames is None
        else np.asarray(num_frames)
    )
    if counts.shape != (x.shape[0],):
        raise ValueError(
            f"num_frames has shape {counts.shape}, expected ({x.shape[0]},)"
        )
    out = [detect_tos(x[b], num_frames=int(counts[b]), **params) for b in range(len(x))]
    return (
        np.stack(out).astype(np.float32) if out else np.zeros(x.shape[:2], np.float32)
    )


def fit_threshold(
    strains: Sequence[np.ndarray],
    tos_list: Sequence[np.ndarray],
    num_frames_list: Sequence[int] | None = None,
    candidates: Sequence[float] = THRESHOLD_CANDIDATES,
    **params: Any,
) -> float:
    """The candidate threshold with the lowest per-sector TOS MAE on labelled slices.

    A plain grid search (ties go to the earlier candidate); fit it on the
    validation split, never the test split. `params` are the other
    `detect_tos` settings, held fixed.
    """
    if len(strains) != len(tos_list) or len(strains) == 0:
        raise ValueError("need the same, non-zero number of strains and labels")
    if num_frames_list is None:
        num_frames_list = [None] * len(strains)
    params.pop("threshold", None)
    best, best_mae = None, np.inf
    for thr in candidates:
        errors = [
            np.abs(
                detect_tos(s, threshold=thr, num_frames=n, **params)
                - np.asarray(t, np.float32)
            )
            for s, t, n in zip(strains, tos_list, num_frames_list)
        ]
        mae = float(np.mean(np.concatenate(errors)))
        if mae < best_mae:
            best, best_mae = float(thr), mae
    return best


def params_from_config(config: Any) -> dict[str, Any]:
    """`detect_tos` keyword arguments from `config.classical`.

    The frame period is the model's (`data.frame_period_ms`): the pipeline
    resamples every slice to it before the detector sees the strain.
    """
    c = config.classical
    return {
        "frame_period_ms": float(config.data.frame_period_ms),
        "smooth_sectors": int(c.smooth_sectors),
        "smooth_frames": int(c.smooth_frames),
        "threshold": float(c.threshold),
        "regularize_sectors": int(c.regularize_sectors),
    }
