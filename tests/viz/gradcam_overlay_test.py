"""Grad-CAM overlays: the map, the target sector and the scored run are drawn."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lma_tf import constants
from lma_tf.viz import figures, gradcam_overlay

N = constants.NUM_SECTORS


def test_gradcam_overlay_figure(tmp_path):
    strain = np.full((N, 30), -0.1)
    cam = np.zeros((N, 30))
    cam[60:70, 5:10] = 1.0
    panel = gradcam_overlay.CamPanel(
        "multitask: TOS head",
        cam,
        pred_tos=np.full(N, 40.0),
        target_sector=65,
        run=list(range(120, 126)) + [0, 1],
    )
    fig = gradcam_overlay.gradcam_figure(strain, [panel], true_tos=np.full(N, 30.0))
    strain_ax, cam_ax = [ax for ax in fig.axes if ax.get_title()]
    (image,) = [im for im in cam_ax.images if im.get_gid() == "cam"]
    np.testing.assert_array_equal(image.get_array(), cam)
    assert image.get_extent() == [8.5, 30.5 * 17, -0.5, N - 0.5]
    target = [ln for ln in cam_ax.lines if ln.get_gid() == "target_sector"]
    assert target[0].get_ydata()[0] == 65
    runs = sorted(
        (p.get_y() + 0.5, p.get_height())
        for p in cam_ax.patches
        if p.get_gid() == "lma_run"
    )
    assert runs == [(0, 2), (120, 6)]  # the wrapped run, split at the ring end
    path = figures.save_figure(fig, str(tmp_path / "cam.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 1000
    with pytest.raises(ValueError, match="crop"):
        gradcam_overlay.gradcam_figure(
            strain, [gradcam_overlay.CamPanel("x", np.zeros((128, 64)))]
        )


def test_plot_gradcam_writes_through_save_figure(tmp_path, captured):
    strain = np.zeros((N, 20))
    panel = gradcam_overlay.CamPanel("a: LMA head", np.zeros((N, 20)))
    path = gradcam_overlay.plot_gradcam(
        strain, [panel], path=str(tmp_path / "g.png"), scar_fraction=np.ones(N)
    )
    assert os.path.exists(path)
    (fig,) = captured
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["strain Ecc", "a: LMA head"]
