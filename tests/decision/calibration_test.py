"""Temperature scaling, isotonic regression, ECE and interval coverage on known data."""

from __future__ import annotations

import numpy as np
import pytest

from lma_tf.decision import calibration


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def sample():
    """True logits and labels drawn from them: sigmoid(z) is calibrated."""
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, 200_000)
    y = (rng.random(z.size) < _sigmoid(z)).astype(np.float64)
    return z, y


def test_ece_of_known_bins():
    # All at 0.8, half right: ECE = |0.8 - 0.5| = 0.3.
    p = np.full(10, 0.8)
    y = np.array([1, 0] * 5, float)
    assert calibration.ece(p, y) == pytest.approx(0.3)
    # Two bins, weights 3:1: 0.75 * |0.1 - 0| + 0.25 * |0.9 - 1|.
    p = np.array([0.1, 0.1, 0.1, 0.9])
    y = np.array([0, 0, 0, 1], float)
    assert calibration.ece(p, y) == pytest.approx(0.1)
    # Weight 0 and NaN do not count; p = 1 falls in the last bin.
    w = np.array([1, 1, 1, 0])
    assert calibration.ece(p, y, w) == pytest.approx(0.1)
    assert calibration.ece([1.0, np.nan], [1, 0]) == 0.0
    assert np.isnan(calibration.ece([0.5], [1], weight=[0]))
    rel = calibration.reliability(p, y, num_bins=15)
    assert rel.weight.sum() == 4 and rel.weight[1] == 3 and rel.weight[13] == 1
    assert np.isnan(rel.frequency[7])
    with pytest.raises(ValueError, match="0 or 1"):
        calibration.ece([0.5], [2])


def test_calibrated_probabilities_have_small_ece(sample):
    z, y = sample
    assert calibration.ece(_sigmoid(z), y) < 0.01
    assert calibration.ece(_sigmoid(3 * z), y) > 0.05  # over-confident
    assert calibration.ece(_sigmoid(z / 3), y) > 0.05  # under-confident


@pytest.mark.parametrize("scale", [3.0, 1.0, 0.4])
def test_temperature_recovers_the_distortion(sample, scale):
    z, y = sample
    # Logits scaled by `scale`: the right temperature undoes it.
    t = calibration.fit_temperature(scale * z, y)
    assert t == pytest.approx(scale, rel=0.05)
    fixed = calibration.apply_temperature(scale * z, t)
    assert calibration.ece(fixed, y) < 0.01
    # Two-class logits (..., 2) give the same answer as z1 - z0.
    two = np.stack([np.zeros_like(z), scale * z], axis=-1)
    assert calibration.fit_temperature(two, y) == pytest.approx(t, rel=1e-3)
    assert calibration.nll(scale * z, y, t) <= calibration.nll(scale * z, y, 1.0)


def test_temperature_from_stored_probabilities(sample):
    z, y = sample
    p = _sigmoid(2.0 * z)
    t = calibration.fit_temperature(calibration.logits_from_probability(p), y)
    assert t == pytest.approx(2.0, rel=0.05)
    back = calibration.rescale_probability(calibration.rescale_probability(p, t), 1 / t)
    np.testing.assert_allclose(back, np.clip(p, 1e-6, 1 - 1e-6), atol=1e-6)


def test_temperature_needs_both_classes():
    with pytest.raises(ValueError, match="one class"):
        calibration.fit_temperature([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="no labelled"):
        calibration.fit_temperature([np.nan], [1])
    with pytest.raises(ValueError, match="> 0"):
        calibration.apply_temperature([1.0], 0.0)


def test_isotonic_is_monotone_and_calibrates(sample):
    z, y = sample
    p = _sigmoid(3 * z)
    iso = calibration.fit_isotonic(p, y)
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(iso(grid)) >= -1e-12)
    assert calibration.ece(iso(p), y) < 0.01
    # Pooling: a decreasing frequency becomes one block at the mean.
    flat = calibration.fit_isotonic([0.2, 0.4], [1, 0])
    np.testing.assert_allclose(flat([0.2, 0.3, 0.4]), [0.5, 0.5, 0.5])
    assert np.isnan(flat([np.nan]))[0]


def test_interval_coverage():
    true = np.array([10.0, 20.0, 30.0, np.nan])
    lo = np.array([5.0, 21.0, 30.0, 0.0])
    hi = np.array([15.0, 25.0, 30.0, 1.0])
    assert calibration.interval_coverage(true, lo, hi) == pytest.approx(2 / 3)
    assert calibration.interval_coverage(true, lo, hi, weight=[0, 1, 1, 1]) == 0.5
    assert np.isnan(calibration.interval_coverage([np.nan], [0.0], [1.0]))
