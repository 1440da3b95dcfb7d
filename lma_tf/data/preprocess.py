"""In-graph preprocessing shared by the training pipeline and the serving graph.

Keeping these ops in one module is what prevents train/serve skew: the
training parser (`pipeline.parse_and_fit`) and both SavedModel signatures
(`lma_tf.serving.contract`) fit raw strain to the model with the one function
`fit_to_model`; `tests/serving/contract_test.py` checks that they agree.
"""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow as tf

from lma_tf import constants


def resample_frames(
    strain: tf.Tensor, frame_period_ms: tf.Tensor, target_period_ms: float
) -> tf.Tensor:
    """Linearly resamples (..., sectors, frames) strain to `target_period_ms`.

    A no-op (bit-exact) when the periods already agree, which is the usual
    17 ms case; other temporal resolutions are brought onto the 17 ms grid the
    network and the TOS convention assume.
    """
    period = tf.cast(frame_period_ms, tf.float32)

    def resample() -> tf.Tensor:
        frames = tf.shape(strain)[-1]
        duration = tf.cast(frames, tf.float32) * period
        new_frames = tf.maximum(
            tf.cast(tf.round(duration / target_period_ms), tf.int32), 1
        )
        # Sample positions on the old frame grid (frame k covers time k*period).
        t = tf.range(new_frames, dtype=tf.float32) * target_period_ms / period
        t = tf.clip_by_value(t, 0.0, tf.cast(frames - 1, tf.float32))
        lo = tf.cast(tf.floor(t), tf.int32)
        hi = tf.minimum(lo + 1, frames - 1)
        w = t - tf.cast(lo, tf.float32)
        return (
            tf.gather(strain, lo, axis=-1) * (1.0 - w)
            + tf.gather(strain, hi, axis=-1) * w
        )

    same = tf.abs(period - target_period_ms) < 1e-3
    return tf.cond(same, lambda: strain, resample)


def fit_frames(strain: tf.Tensor, num_frames: int, drop_last: int = 0) -> tf.Tensor:
    """Drops `drop_last` frames, then crops or zero-pads the frame axis.

    Works on (sectors, frames) or (batch, sectors, frames); the last axis is
    time. Zero padding is the authors' convention: zero strain = reference.
    """
    frames = tf.shape(strain)[-1]
    if drop_last:
        # Never drop below the contract's minimum sequence length.
        keep = tf.maximum(frames - drop_last, tf.minimum(frames, constants.MIN_FRAMES))
        strain = strain[..., :keep]
        frames = keep
    strain = strain[..., :num_frames]
    pad = tf.maximum(num_frames - frames, 0)
    rank = strain.shape.rank
    paddings = [[0, 0]] * (rank - 1) + [[0, pad]]
    strain = tf.pad(strain, paddings)
    return tf.ensure_shape(strain, strain.shape[:-1].concatenate([num_frames]))


def fit_to_model(
    strain: tf.Tensor, frame_period_ms: tf.Tensor, data: ml_collections.ConfigDict
) -> tf.Tensor:
    """Raw (..., 126, F) strain at one frame period -> (..., 126, T) model frames.

    Resamples to `data.frame_period_ms`, drops `data.drop_last_frames`, then
    crops or zero-pads to `data.num_frames`: what the model was trained on.
    `frame_period_ms` is a scalar, shared by every slice of `strain`.
    """
    strain = resample_frames(strain, frame_period_ms, data.frame_period_ms)
    return fit_frames(strain, data.num_frames, data.drop_last_frames)


def fit_batch_to_model(
    strain: tf.Tensor, frame_period_ms: tf.Tensor, data: ml_collections.ConfigDict
) -> tf.Tensor:
    """(B, 126, F) raw strain + (B,) periods -> (B, 126, T): `fit_to_model` each.

    When every period of the batch is the same (the usual 17 ms case) the
    ops run once on the whole batch, which gives the same numbers as per
    example (they act on each slice alone); otherwise example by example,
    because each period resamples to a different length before the crop/pad.
    """
    strain = tf.convert_to_tensor(strain, tf.float32)
    period = tf.convert_to_tensor(frame_period_ms, tf.float32)
    # period[0], or any value for an empty batch.
    first = tf.concat([period, [float(data.frame_period_ms)]], axis=0)[0]
    spec = tf.TensorSpec([constants.NUM_SECTORS, data.num_frames], tf.float32)

    def each() -> tf.Tensor:
        return tf.map_fn(
            lambda a: fit_to_model(a[0], a[1], data),
            (strain, period),
            fn_output_signature=spec,
        )

    return tf.cond(
        tf.reduce_all(tf.equal(period, first)),
        lambda: fit_to_model(strain, first, data),
        each,
    )


def pad_sectors(x: tf.Tensor, num_sectors: int, axis: int = -1) -> tf.Tensor:
    """Pads the 126-sector ring circularly to `num_sectors` along `axis`.

    Circular (wrap-around) padding keeps the ring continuous for the
    convolutions; the padded copies are masked out of every loss and metric.
    """
    extra = num_sectors - constants.NUM_SECTORS
    if extra < 0:
        raise ValueError(f"num_sectors={num_sectors} < {constants.NUM_SECTORS}")
    if extra == 0:
        return x
    head = tf.gather(x, tf.range(extra) % constants.NUM_SECTORS, axis=axis)
    return tf.concat([x, head], axis=axis)


def sector_mask(num_sectors: int) -> tf.Tensor:
    """(num_sectors,) float mask: 1 for the real 126 sectors, 0 for padding."""
    return tf.concat(
        [
            tf.ones([constants.NUM_SECTORS], tf.float32),
            tf.zeros([num_sectors - constants.NUM_SECTORS], tf.float32),
        ],
        axis=0,
    )


def unpad_sectors(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Keeps the first 126 sectors along `axis` (inverse of `pad_sectors`)."""
    return tf.gather(x, tf.range(constants.NUM_SECTORS), axis=axis)


def real_frames(strain: np.ndarray, num_frames: int) -> int:
    """Frames before the zero padding of a fitted (sectors, T) strain.

    The pipeline resamples to the model's frame period, drops and pads, so
    the raw `num_frames` is only an upper bound in other units; the padding
    is exact zeros. Falls back to min(num_frames, T) for an all-zero matrix.
    """
    t = strain.shape[-1]
    nonzero = np.flatnonzero(np.any(strain != 0, axis=0))
    if nonzero.size:
        return int(nonzero[-1] + 1)
    return int(min(max(num_frames, 1), t))
