"""The masked losses against numbers worked out by hand.

Every loss sums weight x per-sector term over the sectors and divides by the
126 real sectors; the 2 padded sectors and unlabelled slices have weight 0.
"""

import math

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from lma_tf.models import losses

S, N = 128, 126  # sectors with padding, real sectors


def _mask(batch: int) -> np.ndarray:
    w = np.zeros((batch, S), np.float32)
    w[:, :N] = 1.0
    return w


def _config(tos: float = 1.0, lma: float = 10.0, scale: float = 1.0):
    return ml_collections.ConfigDict(
        {"loss": {"weights": {"tos": tos, "lma": lma}, "tos_scale_ms": scale}}
    )


def test_tos_loss_is_the_masked_squared_error_over_126_sectors():
    true = np.full((3, S), 40.0, np.float32)
    pred = true.copy()
    pred[0, :N] += 3.0  # 126 sectors 3 ms off: 126 * 9 / 126 = 9
    pred[1, :63] -= 6.0  # 63 sectors 6 ms off: 63 * 36 / 126 = 18
    pred[2, :] = 500.0  # way off, but the slice has no label (weight 0)
    weight = _mask(3)
    weight[2] = 0.0
    got = losses.tos_loss(tf.constant(pred), tf.constant(true), weight, 1.0).numpy()
    np.testing.assert_allclose(got, [9.0, 18.0, 0.0], rtol=1e-6)
    assert got[2] == 0.0
    # In (ms / scale)^2: a 3 ms scale divides the squared error by 9.
    scaled = losses.tos_loss(tf.constant(pred), tf.constant(true), weight, 3.0)
    np.testing.assert_allclose(scaled.numpy(), [1.0, 2.0, 0.0], rtol=1e-6)


def test_padded_sectors_contribute_exactly_nothing():
    rng = np.random.default_rng(0)
    pred = rng.normal(60, 20, (2, S)).astype(np.float32)
    true = rng.normal(60, 20, (2, S)).astype(np.float32)
    logits = rng.normal(0, 2, (2, S, 2)).astype(np.float32)
    target = rng.uniform(0, 1, (2, S)).astype(np.float32)
    weight = _mask(2)
    tos = losses.tos_loss(pred, true, weight, 1.0).numpy()
    lma = losses.lma_loss(logits, target, weight).numpy()
    # Anything at all on the two padded sectors: the same losses, bit for bit.
    pred[:, N:], true[:, N:] = 1e4, -1e4
    logits[:, N:] = [50.0, -50.0]
    target[:, N:] = 1.0
    np.testing.assert_array_equal(losses.tos_loss(pred, true, weight, 1.0), tos)
    np.testing.assert_array_equal(losses.lma_loss(logits, target, weight), lma)


def test_lma_loss_is_the_masked_cross_entropy_over_126_sectors():
    # Logits (0, ln 3): P(LMA) = 3/4. Cross-entropy: ln(4/3) when the target
    # is LMA, ln 4 when it is not; equal logits give ln 2 for any target.
    logits = np.zeros((3, S, 2), np.float32)
    logits[0, :, 1] = math.log(3.0)
    target = np.zeros((3, S), np.float32)
    target[0, :42] = 1.0  # 42 LMA sectors, 84 not
    target[1, :] = 0.5  # soft (mixup) target on equal logits
    weight = _mask(3)
    weight[2] = 0.0
    got = losses.lma_loss(tf.constant(logits), tf.constant(target), weight).numpy()
    want_0 = (42 * math.log(4 / 3) + 84 * math.log(4.0)) / N
    np.testing.assert_allclose(got, [want_0, math.log(2.0), 0.0], rtol=1e-6)
    assert got[2] == 0.0


def test_per_example_loss_weights_the_heads_as_configured():
    labels = {"tos": np.full((1, S), 40.0, np.float32), "lma": np.zeros((1, S))}
    labels["lma"] = labels["lma"].astype(np.float32)
    weights = {"tos": _mask(1), "lma": _mask(1)}
    outputs = {
        "tos": labels["tos"] + 2.0,  # TOS loss 4
        "lma": np.zeros((1, S, 2), np.float32),  # LMA loss ln 2
    }
    total, parts = losses.per_example_loss(outputs, labels, weights, _config())
    np.testing.assert_allclose(parts["tos"].numpy(), [4.0], rtol=1e-6)
    np.testing.assert_allclose(parts["lma"].numpy(), [math.log(2.0)], rtol=1e-6)
    # The paper's weights: 1 x TOS + 10 x LMA.
    np.testing.assert_allclose(total.numpy(), [4.0 + 10 * math.log(2.0)], rtol=1e-6)
    total, _ = losses.per_example_loss(
        outputs, labels, weights, _config(tos=0.5, lma=2.0, scale=2.0)
    )
    # Scale 2 ms: TOS loss (2 / 2)^2 = 1.
    np.testing.assert_allclose(total.numpy(), [0.5 + 2 * math.log(2.0)], rtol=1e-6)


@pytest.mark.parametrize("head", ["tos", "lma"])
def test_a_model_without_a_head_has_no_loss_for_it(head):
    labels = {"tos": np.full((1, S), 40.0, np.float32), "lma": np.ones((1, S))}
    labels["lma"] = labels["lma"].astype(np.float32)
    weights = {"tos": _mask(1), "lma": _mask(1)}
    outputs = {
        "tos": labels["tos"] + 1.0,  # TOS loss 1
        "lma": np.zeros((1, S, 2), np.float32),  # LMA loss ln 2
    }
    del outputs[head]
    config = _config()
    del config.loss.weights[head]  # an experiment keeps the heads it has
    total, parts = losses.per_example_loss(outputs, labels, weights, config)
    assert set(parts) == {"tos", "lma"} - {head}
    want = 10 * math.log(2.0) if head == "tos" else 1.0
    np.testing.assert_allclose(total.numpy(), [want], rtol=1e-6)
