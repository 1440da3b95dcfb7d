"""Masked per-example losses for the two heads (padded sectors never count).

Each head's loss sums its per-sector term weighted by the sample weights (0
on the padded sectors and on slices without labels) and divides by the 126
real sectors, whatever the weights. Per-example values feed
`tf.nn.compute_average_loss`, which divides by the global batch size: the
same loss under every strategy and replica count (docs/model.md, "Losses").
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from lma_tf import constants


def tos_loss(
    pred: tf.Tensor, true: tf.Tensor, weight: tf.Tensor, scale_ms: float
) -> tf.Tensor:
    """(B,) sum over sectors of weight * ((pred - true) / scale_ms)^2, / 126."""
    sq = tf.square((tf.cast(pred, tf.float32) - true) / scale_ms)
    return tf.reduce_sum(weight * sq, axis=-1) / constants.NUM_SECTORS


def lma_loss(logits: tf.Tensor, target: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """(B,) sum over sectors of weight * 2-class cross-entropy, / 126.

    `logits` are (B, S, 2) for (no LMA, LMA); `target` is P(LMA), soft under
    mixup.
    """
    labels = tf.stack([1.0 - target, target], axis=-1)
    ce = tf.nn.softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))
    return tf.reduce_sum(weight * ce, axis=-1) / constants.NUM_SECTORS


def per_example_loss(
    outputs: dict, labels: dict, weights: dict, config: ml_collections.ConfigDict
) -> tuple[tf.Tensor, dict]:
    """`config.loss.weights[head]` x that head's loss, summed over the heads.

    Only the heads in `outputs` count (an experiment keeps the heads it has).
    Returns (total (B,), {head: unweighted loss (B,)}).
    """
    parts = {}
    if "tos" in outputs:
        parts["tos"] = tos_loss(
            outputs["tos"],
            labels["tos"],
            weights["tos"],
            float(config.loss.tos_scale_ms),
        )
    if "lma" in outputs:
        parts["lma"] = lma_loss(outputs["lma"], labels["lma"], weights["lma"])
    total = tf.add_n([float(config.loss.weights[k]) * v for k, v in parts.items()])
    return total, parts
