"""The decision rules, in numpy and in TensorFlow side by side.

Every stage that turns numbers into a decision (labels in the records, the
paper's combined TOS in evaluation and in the SavedModel, LMA from TOS for
networks without an LMA head) calls these, so the two worlds cannot drift:
`tests/rules_test.py` feeds both versions the same boundary values.

  - label:        a sector is scar-free LMA when TOS > 17 ms + LMA_TOS_EPS_MS
                  and its scar fraction is below SCAR_THRESHOLD.
  - LMA call:     P(LMA) = softmax(2-class logits)[..., 1] >= LMA_THRESHOLD.
  - combined TOS: the regressed TOS where the sector is called LMA, else 17 ms.
  - served TOS:   the regressed TOS floored at 17 ms (the network's head is a
                  leaky floor, which may dip a fraction of a ms below it).
"""

from __future__ import annotations

import numpy as np

from lma_tf import constants

LMA_THRESHOLD = 0.5  # P(LMA) at or above which a sector is called LMA.
LATE_TOS_MS = constants.TOS_FLOOR_MS + constants.LMA_TOS_EPS_MS


# numpy ---------------------------------------------------------------------


def lma_labels(tos_ms: np.ndarray, scar_fraction: np.ndarray | None) -> np.ndarray:
    """Scar-free late-activation label per sector (1 = candidate pacing site)."""
    late = np.asarray(tos_ms) > LATE_TOS_MS
    if scar_fraction is None:
        return late.astype(np.int64)
    scar = np.asarray(scar_fraction) >= constants.SCAR_THRESHOLD
    return (late & ~scar).astype(np.int64)


def lma_from_tos(tos_ms: np.ndarray) -> np.ndarray:
    """LMA (0/1) from TOS alone: what a model without an LMA head can say."""
    return lma_labels(tos_ms, None)


def lma_probability(logits: np.ndarray) -> np.ndarray:
    """P(LMA) = softmax(2-class logits)[..., 1], computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e[..., 1] / e.sum(axis=-1)


def lma_call(probability: np.ndarray, threshold: float = LMA_THRESHOLD) -> np.ndarray:
    """Binary LMA decision (bool) from a probability (or a 0/1 label)."""
    return np.asarray(probability, dtype=np.float64) >= threshold


def combine_tos(
    tos_ms: np.ndarray, probability: np.ndarray, threshold: float = LMA_THRESHOLD
) -> np.ndarray:
    """The paper's combined TOS: regressed TOS where LMA is called, else 17 ms."""
    tos = np.asarray(tos_ms, dtype=np.float64)
    return np.where(lma_call(probability, threshold), tos, constants.TOS_FLOOR_MS)


def floor_tos(tos_ms: np.ndarray) -> np.ndarray:
    """TOS floored at 17 ms (the first frame: "not late")."""
    return np.maximum(np.asarray(tos_ms, dtype=np.float64), constants.TOS_FLOOR_MS)


# TensorFlow (imported lazily: numpy users never load it) -------------------


def lma_from_tos_tf(tos_ms):
    """`lma_from_tos` on a tf.Tensor, as float32 0/1."""
    import tensorflow as tf

    return tf.cast(tos_ms > LATE_TOS_MS, tf.float32)


def lma_probability_tf(logits):
    """`lma_probability` on a tf.Tensor (float32)."""
    import tensorflow as tf

    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[..., 1]


def combine_tos_tf(tos_ms, probability, threshold: float = LMA_THRESHOLD):
    """`combine_tos` on tf.Tensors (float32)."""
    import tensorflow as tf

    floor = tf.fill(tf.shape(tos_ms), tf.constant(constants.TOS_FLOOR_MS, tos_ms.dtype))
    return tf.where(probability >= threshold, tos_ms, floor)


def floor_tos_tf(tos_ms):
    """`floor_tos` on a tf.Tensor."""
    import tensorflow as tf

    return tf.maximum(tos_ms, tf.constant(constants.TOS_FLOOR_MS, tos_ms.dtype))
