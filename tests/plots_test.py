"""Figures: written atomically as PNGs, and the pixels encode the data."""

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
from lma_tf.viz import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
S = constants.NUM_SECTORS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_png(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    assert head == PNG_SIGNATURE
    assert os.path.getsize(path) > 1000


def _no_temp_files(folder) -> None:
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def _halves_strain(frames: int = 30) -> np.ndarray:
    strain = np.full((S, frames), -0.2)
    strain[S // 2 :] = 0.2  # upper half of the sectors stretches
    return strain


def test_strain_image_colours_encode_the_data(tmp_path):
    fig = plots.strain_tos_figure(_halves_strain())
    ax = fig.axes[0]
    (image,) = ax.images
    assert image.get_clim() == (-0.2, 0.2)
    assert image.get_cmap().name == plots.STRAIN_CMAP
    # x: frame j centred at (j + 1) x 17 ms; y: sector 0 at the bottom.
    assert image.get_extent() == [8.5, 30.5 * 17, -0.5, S - 0.5]
    path = plots.save_figure(fig, str(tmp_path / "halves.png"))
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
    path = plots.plot_strain_tos(
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

    fig = plots.strain_tos_figure(_halves_strain(), tos_true, tos_pred, combined, scar)
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
        plots.plot_strain_tos(
            _halves_strain(), np.zeros(S - 1), path=str(tmp_path / "x.png")
        )
    with pytest.raises(ValueError, match="strain"):
        plots.strain_tos_figure(np.zeros(S))
    assert not os.listdir(tmp_path)


def test_training_curves(tmp_path, captured):
    history = {
        "tos_mae_ms": [20.0, 10.0, 5.0],
        "val_tos_mae_ms": [22.0, 12.0, 7.0],
        "loss": [3.0, 2.0, 1.0],
        "val_loss": [3.5, 2.5, None],
        "lma_accuracy": [0.6, 0.7, 0.8],
    }
    path = plots.plot_training_curves(history, str(tmp_path / "curves.png"))
    _assert_png(path)
    _no_temp_files(tmp_path)
    (fig,) = captured
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "tos_mae_ms", "lma_accuracy"]
    assert [len(ax.lines) for ax in axes] == [2, 2, 1]
    np.testing.assert_array_equal(axes[1].lines[1].get_ydata(), [22.0, 12.0, 7.0])
    assert np.isnan(axes[0].lines[1].get_ydata()[2])  # None leaves a gap
    with pytest.raises(ValueError):
        plots.plot_training_curves({}, str(tmp_path / "empty.png"))


def test_comparison_bars_skip_none(tmp_path, captured):
    results = {
        "multitask": {"tos_mae_ms": 3.7, "combined_tos_mae_ms": 3.1, "lma_f1": 0.8},
        "regression_only": {"tos_mae_ms": 4.5, "lma_f1": 0.7},
        "classification_only": {"tos_mae_ms": None, "lma_f1": 0.75},
    }
    metrics = ["tos_mae_ms", "combined_tos_mae_ms", "lma_f1"]
    path = plots.plot_comparison(results, metrics, str(tmp_path / "cmp.png"))
    _assert_png(path)
    (fig,) = captured
    ms_ax, score_ax = [ax for ax in fig.axes if ax.get_visible()]
    assert ms_ax.get_ylabel() == "ms" and score_ax.get_ylabel() == "score"
    ms_bars = {bar.get_height() for c in ms_ax.containers for bar in c}
    assert ms_bars == {3.7, 3.1, 4.5}  # the two None / missing values: no bar
    score_bars = [bar.get_height() for c in score_ax.containers for bar in c]
    assert score_bars == [0.8, 0.7, 0.75]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == list(results)


def test_modules_do_not_import_tensorflow():
    code = (
        "import sys, lma_tf.evaluation.metrics, lma_tf.viz.plots, matplotlib;"
        "assert 'tensorflow' not in sys.modules;"
        "assert matplotlib.get_backend().lower() == 'agg'"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
