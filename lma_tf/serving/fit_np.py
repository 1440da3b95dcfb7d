"""A numpy twin of `preprocess.fit_to_model`, for clients without TensorFlow.

The same steps in the same float32 arithmetic: resample linearly to the
model's frame period, drop `drop_last_frames`, crop or zero-pad to
`num_frames`. `tests/serving/fit_np_test.py` holds it equal to the
TensorFlow op within 1e-5 (frame counts across [16, 128], 17 and 34 ms
periods, with and without dropped frames). The exported models carry the
TensorFlow op inside their graph; this twin is for code that needs the
model frames themselves (figures, other runtimes) without importing
TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lma_tf import constants


def resample_frames(
    strain: np.ndarray, frame_period_ms: float, target_period_ms: float
) -> np.ndarray:
    """(..., sectors, frames) strain resampled linearly to `target_period_ms`.

    Unchanged (bit-exact) when the periods agree within 1e-3 ms.
    """
    strain = np.asarray(strain, np.float32)
    period = np.float32(frame_period_ms)
    target = np.float32(target_period_ms)
    if abs(period - target) < np.float32(1e-3):
        return strain
    frames = strain.shape[-1]
    duration = np.float32(frames) * period
    new_frames = max(int(np.round(duration / target)), 1)
    # Sample positions on the old frame grid (frame k covers time k*period).
    t = np.arange(new_frames, dtype=np.float32) * target / period
    t = np.clip(t, np.float32(0.0), np.float32(frames - 1))
    lo = np.floor(t).astype(np.int64)
    hi = np.minimum(lo + 1, frames - 1)
    w = t - lo.astype(np.float32)
    return strain[..., lo] * (np.float32(1.0) - w) + strain[..., hi] * w


def fit_frames(strain: np.ndarray, num_frames: int, drop_last: int = 0) -> np.ndarray:
    """Drops `drop_last` frames (never below 16), then crops or zero-pads."""
    frames = strain.shape[-1]
    if drop_last:
        keep = max(frames - drop_last, min(frames, constants.MIN_FRAMES))
        strain = strain[..., :keep]
    strain = strain[..., :num_frames]
    pad = max(num_frames - strain.shape[-1], 0)
    widths = [(0, 0)] * (strain.ndim - 1) + [(0, pad)]
    return np.pad(strain, widths).astype(np.float32, copy=False)


def fit_to_model(strain: Any, frame_period_ms: float, data: Any) -> np.ndarray:
    """Raw (..., 126, F) strain at one period -> (..., 126, T) model frames.

    `data` is the config's `data` section (`frame_period_ms`, `num_frames`,
    `drop_last_frames`), a ConfigDict or a plain dict.
    """
    strain = resample_frames(strain, frame_period_ms, data["frame_period_ms"])
    return fit_frames(strain, int(data["num_frames"]), int(data["drop_last_frames"]))


def fit_batch_to_model(strain: Any, frame_period_ms: Any, data: Any) -> np.ndarray:
    """(B, 126, F) raw strain + (B,) periods -> (B, 126, T): `fit_to_model` each."""
    strain = np.asarray(strain, np.float32)
    periods = np.asarray(frame_period_ms, np.float32).reshape(-1)
    fitted = [fit_to_model(x, p, data) for x, p in zip(strain, periods)]
    if fitted:
        return np.stack(fitted)
    return np.zeros((0, strain.shape[1], int(data["num_frames"])), np.float32)
