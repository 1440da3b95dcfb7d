"""AHA bullseyes: each wedge's colour is its segment's mean, checked in the PNG."""

from __future__ import annotations

import os

import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from viz_samples import ring, subject

from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation
from lma_tf.viz import bullseye, figures

# The samples put segment 1 / 7 at sector 0 and apical 13 at sector 0 too:
# per-ring orientations say so (apical segments start 15 deg = 5.25 sectors
# before segment 1; 5.3 keeps sector 31 in 13, as the samples assume).
SAMPLE_LAYOUT = [
    orientation_lib.LEGACY,
    orientation_lib.LEGACY,
    Orientation("segment1", 5.3, "ccw"),
]


def test_bullseye_colours_encode_segments(tmp_path):
    fig = bullseye.bullseye_figure(
        subject(), tos_range=(17.0, 100.0), orientation=SAMPLE_LAYOUT
    )
    tos_ax, scar_ax = [ax for ax in fig.axes if ax.get_title()][:2]
    assert tos_ax.get_title() == "TOS (ms)" and scar_ax.get_title() == "scar fraction"
    (coll,) = [c for c in tos_ax.collections if c.get_gid() == "bullseye"]
    values = np.ma.filled(coll.get_array(), np.nan)
    assert values[3] == 100.0 and values[12] == 60.0 and values[13] == 17.0
    fig.canvas.draw()
    faces = coll.get_facecolor()
    cmap = plt.get_cmap(figures.TOS_CMAP)
    np.testing.assert_allclose(faces[3], cmap(1.0), atol=1e-6)  # latest: top colour
    np.testing.assert_allclose(faces[0], cmap(0.0), atol=1e-6)  # 17 ms: bottom
    (scar_coll,) = [c for c in scar_ax.collections if c.get_gid() == "bullseye"]
    scar_values = np.ma.filled(scar_coll.get_array(), np.nan)
    assert scar_values[6] == pytest.approx(10 * 0.8 / 21)  # mid anterior (7)
    assert scar_values[7] == 0.0

    # The pixels: sample inside wedge 4 (inferior, 240-300 deg, outer ring)
    # and wedge 1 (anterior, 60-120 deg) of the written PNG.
    path = figures.save_figure(fig, str(tmp_path / "bullseye.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 1000
    img = matplotlib.image.imread(path)
    h = img.shape[0]

    def pixel(ax, angle_deg, radius):
        a = np.deg2rad(angle_deg)
        x, y = ax.transData.transform((radius * np.cos(a), radius * np.sin(a)))
        return img[int(round(h - y)), int(round(x)), :3]

    np.testing.assert_allclose(pixel(tos_ax, 255, 2.75), cmap(1.0)[:3], atol=0.02)
    np.testing.assert_allclose(pixel(tos_ax, 105, 2.75), cmap(0.0)[:3], atol=0.02)


def test_missing_segments_are_grey():
    rings = [ring("only", 5.0, late=range(0, 21))]  # one slice: mid ring only
    fig = bullseye.bullseye_figure(
        rings, tos_range=(17.0, 100.0), orientation=orientation_lib.LEGACY
    )
    coll = [c for c in fig.axes[0].collections if c.get_gid() == "bullseye"][0]
    fig.canvas.draw()
    faces = coll.get_facecolor()
    grey = matplotlib.colors.to_rgba(figures.MISSING_COLOUR)
    for seg in list(range(0, 6)) + list(range(12, 16)):  # basal and apical
        np.testing.assert_allclose(faces[seg], grey, atol=1e-6)
    np.testing.assert_allclose(faces[6], plt.get_cmap(figures.TOS_CMAP)(1.0), atol=1e-6)
    plt.close(fig)
    with pytest.raises(ValueError):
        bullseye.bullseye_figure([])
