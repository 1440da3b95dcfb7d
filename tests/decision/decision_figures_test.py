"""The reliability diagram and the orientation figure carry their numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lma_tf.decision import calibration
from lma_tf.decision import orientation as orientation_lib
from lma_tf.viz import figures, orientation_figure, reliability


def test_reliability_diagram_draws_each_curve_with_its_ece(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(float)
    sharp = np.clip(p * 1.6 - 0.3, 0, 1)
    fig = reliability.reliability_figure({"raw": sharp, "calibrated": p}, y)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "ideal"
    assert labels[1] == f"raw (ECE {calibration.ece(sharp, y):.3f})"
    assert labels[2] == f"calibrated (ECE {calibration.ece(p, y):.3f})"
    rel = calibration.reliability(p, y)
    line = ax.get_lines()[2]
    np.testing.assert_allclose(line.get_ydata(), rel.frequency[rel.weight > 0])
    path = figures.save_figure(fig, str(tmp_path / "r.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no probabilities"):
        reliability.reliability_figure({}, y)


def test_orientation_figure_places_sector_numbers_by_the_orientation():
    fig = orientation_figure.orientation_figure()
    assert len(fig.axes) == 3
    for ax, (o, _) in zip(fig.axes, orientation_figure.DEFAULT_PANELS):
        texts = {t.get_text(): t.get_position() for t in ax.texts}
        assert "anterior RV\ninsertion" in texts and "1/7\nanterior" in texts
        x, y = texts["0"]  # sector 0's label sits at its anatomical angle
        want = float(o.angle(0.5))
        assert np.rad2deg(np.arctan2(y, x)) % 360 == pytest.approx(want, abs=1e-6)
    # The default panel: sector 0 just past the anterior RV insertion (120 deg).
    assert orientation_lib.DEFAULT.angle(0.5) == pytest.approx(120 + 360 / 252)
    plt.close(fig)
