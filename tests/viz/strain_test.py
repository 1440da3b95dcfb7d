"""Strain figures: written atomically as PNGs, and the pixels encode the data."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from lma_tf import constants
from lma_tf.viz import figures, strain

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
S = constants.NUM_SECTORS
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _assert_png(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    assert head == PNG_SIGNATURE
    assert os.path.getsize(path) > 1000


def _no_temp_files(folder) -> None:
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def _halves_strain(frames: int = 30) -> np.ndarray:
    s = np.full((S, frames), -0.2)
    s[S // 2 :] = 0.2  # upper half of the sectors stretches
    return s


def test_strain_image_colours_encode_the_data(tmp_path):
    fig = strain.strain_tos_figure(_halves_strain())
    ax = fig.axes[0]
    (image,) = ax.images
    assert image.get_clim() == (-0.2, 0.2)
    assert image.get_cmap().name == figures.STRAIN_CMAP
    # x: frame j centred at (j + 1) x 17 ms; y: sector 0 at the bottom.
    assert image.get_extent() == [8.5, 30.5 * 17, -0.5, S - 0.5]
    path = figures.save_figure(fig, str(tmp_path / "halves.png"))
    _assert_png(path)
    img = matplotlib.image.imread(path)
    height, width = img.shape[:2]
    box = ax.get_position()  # figure fraction, final after saving

    def pixel(fx: float, fy: float) -> np.ndarray:
        x = box.x0 + fx * box.width
        y = box.y0 + fy * box.height
        return img[int((1 - y) * height), int(x * width), :3]

    for fx in (0.25, 0.5, 0.75):
        top, bottom = pixel(fx, 0.75), pixel(fx, 0.25)
        assert top[0] > top[2] + 0.2, top  # red: stretch (+0.2), high sectors
        assert bottom[2] > bottom[0] + 0.2, bottom  # blue: shortening (-0.2)


def test_plot_strain_tos_overlays(tmp_path):
    tos_true = np.full(S, 17.0)
    tos_true[40:70] = 100.0
    tos_pred = tos_true + 5.0
    combined = np.where(tos_true > 17, tos_pred, 17.0)
    scar = np.zeros(S)
    scar[10:20] = 0.8
    scar[100:103] = 0.5
    scar[110] = 0.49  # below the threshold: not marked
    path = strain.plot_strain_tos(
        _halves_strain(),
        tos_true,
        tos_pred,
        combined,
        scar,
        path=str(tmp_path / "slice.png"),
        title="p01 mid",
    )
    _assert_png(path)
    _no_temp_files(tmp_path)

    fig = strain.strain_tos_figure(_halves_strain(), tos_true, tos_pred, combined, scar)
    ax = fig.axes[0]
    true_line, pred_line, comb_line = ax.lines
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", ":"]
    assert true_line.get_color() == "black"
    np.testing.assert_array_equal(pred_line.get_xdata(), tos_pred)  # x = TOS ms
    np.testing.assert_array_equal(comb_line.get_ydata(), np.arange(S))  # y = sector
    bands = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted((p.get_y() + 0.5, p.get_height()) for p in bands) == [
        (10, 10),
        (100, 3),
    ]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["true TOS", "regressed TOS", "combined TOS", "scar (>= 0.5)"]
    assert len(fig.axes) == 2  # strain + colorbar
    plt.close(fig)


def test_strain_tos_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="true_tos"):
        strain.plot_strain_tos(
            _halves_strain(), np.zeros(S - 1), path=str(tmp_path / "x.png")
        )
    with pytest.raises(ValueError, match="strain"):
        strain.strain_tos_figure(np.zeros(S))
    assert not os.listdir(tmp_path)


def test_save_figure_closes_and_leaves_no_temp_file_on_failure(tmp_path):
    fig = strain.strain_tos_figure(_halves_strain())
    with pytest.raises(ValueError):
        figures.save_figure(fig, str(tmp_path / "x.no_such_format"))
    assert not plt.fignum_exists(fig.number)
    assert not os.listdir(tmp_path)


def test_output_path_keeps_ids_inside_the_folder(tmp_path):
    for bad in ("../x", "a/../../b", "..", "/etc/passwd", "a\nb"):
        path = figures.output_path(str(tmp_path), bad, "_map.png")
        assert os.path.dirname(path) == str(tmp_path)
        assert "/" not in os.path.basename(path) and "\n" not in path
    assert figures.output_path("d", "p 03/x") == os.path.join("d", "p_03_x.png")


def test_modules_do_not_import_tensorflow():
    code = (
        "import sys, matplotlib\n"
        "import lma_tf.evaluation.metrics\n"
        "from lma_tf.viz import (activation_map, aha, bullseye, charts, figures,\n"
        "    gradcam_overlay, rings, strain)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert matplotlib.get_backend().lower() == 'agg'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
