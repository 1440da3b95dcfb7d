"""The decision rules: numpy and TensorFlow versions agree on boundary values."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import constants, rules

# TOS around the late threshold (17 + 1 ms) and the floor, as float32 values
# both worlds represent exactly.
TOS = np.array([0.0, 16.5, 17.0, 17.5, 18.0, 18.000002, 18.5, 40.0, 140.0], np.float32)
# Probabilities around the LMA threshold, one per TOS value.
PROB = np.array([0.0, 0.49999997, 0.5, 0.50000006, 1.0, 0.5, 0.4, 0.9, 0.1], np.float32)
with np.errstate(divide="ignore"):  # logit(0) = -inf and logit(1) = +inf
    LOGIT = np.log(PROB.astype(np.float64) / (1 - PROB.astype(np.float64)))
LOGITS = np.stack([np.zeros_like(LOGIT), np.clip(LOGIT, -80, 80)], axis=-1)


def test_late_threshold_is_strict_and_shared():
    expected = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(rules.lma_from_tos(TOS), expected)
    np.testing.assert_array_equal(rules.lma_from_tos_tf(tf.constant(TOS)), expected)
    assert rules.LATE_TOS_MS == constants.TOS_FLOOR_MS + constants.LMA_TOS_EPS_MS


def test_combined_tos_agrees_at_the_threshold():
    expected = [17.0, 17.0, 17.0, 17.5, 18.0, 18.000002, 17.0, 40.0, 17.0]
    np.testing.assert_array_equal(
        rules.combine_tos(TOS, PROB).astype(np.float32), np.float32(expected)
    )
    got = rules.combine_tos_tf(tf.constant(TOS), tf.constant(PROB))
    np.testing.assert_array_equal(got.numpy(), np.float32(expected))
    # A threshold moves both alike.
    np.testing.assert_array_equal(
        rules.combine_tos(TOS, PROB, 0.95),
        rules.combine_tos_tf(tf.constant(TOS), tf.constant(PROB), 0.95).numpy(),
    )
    np.testing.assert_array_equal(rules.combine_tos(TOS, PROB, 0.95)[4], 18.0)


def test_lma_call_is_at_or_above_the_threshold():
    np.testing.assert_array_equal(
        rules.lma_call(PROB), [False, False, True, True, True, True, False, True, False]
    )


def test_probability_from_logits_agrees_and_is_stable():
    np.testing.assert_allclose(rules.lma_probability(LOGITS), PROB, atol=1e-7)
    np.testing.assert_allclose(
        rules.lma_probability_tf(tf.constant(LOGITS)).numpy(), PROB, atol=1e-7
    )
    extreme = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    np.testing.assert_array_equal(rules.lma_probability(extreme), [0.0, 1.0])
    np.testing.assert_array_equal(
        rules.lma_probability_tf(tf.constant(extreme, tf.float32)).numpy(), [0.0, 1.0]
    )


def test_floor_and_label_rule():
    floored = [17.0, 17.0, 17.0, 17.5, 18.0, 18.000002, 18.5, 40.0, 140.0]
    np.testing.assert_array_equal(rules.floor_tos(TOS), np.float32(floored))
    np.testing.assert_array_equal(
        rules.floor_tos_tf(tf.constant(TOS)).numpy(), np.float32(floored)
    )
    scar = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.49, 0.5, 0.9, 0.0])
    np.testing.assert_array_equal(
        rules.lma_labels(TOS, scar), [0, 0, 0, 0, 0, 1, 0, 0, 1]
    )


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_random_values_agree(threshold):
    rng = np.random.default_rng(7)
    tos = rng.uniform(0, 200, (64, 126)).astype(np.float32)
    prob = rng.uniform(0, 1, (64, 126)).astype(np.float32)
    np.testing.assert_array_equal(
        rules.combine_tos(tos, prob, threshold),
        rules.combine_tos_tf(tf.constant(tos), tf.constant(prob), threshold).numpy(),
    )
