"""Split-conformal TOS intervals and the validation-fitted P(LMA) calibrator."""

from __future__ import annotations

import numpy as np
import pytest

from lma_tf.decision import calibration, intervals


def _heteroscedastic(rng, n):
    spread = rng.uniform(1.0, 10.0, size=n)
    point = rng.uniform(20.0, 120.0, size=n)
    true = point + rng.normal(size=n) * spread * 3.0  # spreads 3x too narrow
    true = np.maximum(true, 17.0)  # TOS is floored at 17 ms
    return true, point, spread


def test_conformal_scale_makes_90_percent_intervals_honest():
    rng = np.random.default_rng(0)
    val, test = _heteroscedastic(rng, 4000), _heteroscedastic(rng, 4000)
    raw = calibration.interval_coverage(
        test[0], test[1] - 1.645 * test[2], test[1] + 1.645 * test[2]
    )
    assert raw < 0.6  # the raw spread is over-confident
    for spread in (val[2], None):
        rule = intervals.fit(val[0], val[1], spread)
        lo, hi = rule.bounds(test[1], test[2] if spread is not None else None)
        assert 0.87 <= calibration.interval_coverage(test[0], lo, hi) <= 0.93
    mc = intervals.fit(val[0], val[1], val[2])
    assert mc.method == "mc_dropout_conformal" and mc.floor_ms >= 0.5
    const = mc.constant()
    assert const.method == "residual_conformal"
    assert const.scale == mc.residual_quantile_ms
    assert intervals.ConformalInterval.from_dict(mc.to_dict()) == mc
    with pytest.raises(ValueError, match="spread"):
        mc.bounds(test[1])
    with pytest.raises(ValueError):
        intervals.fit([np.nan], [1.0])
    assert intervals.conformal_quantile(np.arange(1, 11), 0.9) == 10.0


def test_select_calibrator_fixes_an_over_confident_probability():
    rng = np.random.default_rng(1)
    n_subj, n = 40, 50
    z = rng.normal(size=(n_subj, n)) * 2.0
    labels = (rng.uniform(size=z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    over = 1 / (1 + np.exp(-3.0 * z))  # logits 3x too large
    groups = np.array([f"s{i}" for i in range(n_subj)])
    cal, info = calibration.select_calibrator(over, labels, groups=groups)
    assert cal.method in ("temperature", "isotonic")
    assert set(info["cross_fitted_ece"]) == {"temperature", "isotonic"}
    assert calibration.ece(cal(over), labels) < 0.5 * calibration.ece(over, labels)
    back = calibration.Calibrator.from_dict(cal.to_dict())
    np.testing.assert_allclose(back(over), cal(over), atol=1e-5)
    t, _ = calibration.select_calibrator(over, labels)  # no groups: temperature
    assert t.method == "temperature" and t.temperature == pytest.approx(3.0, rel=0.2)
    with pytest.raises(ValueError, match="one class"):
        calibration.select_calibrator(over, np.zeros_like(over))
    assert calibration.Calibrator()(over) is not None
