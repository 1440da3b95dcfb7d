"""Training curves and the comparison of experiments: what is drawn is the data."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lma_tf.viz import charts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.path.getsize(path) > 1000


def test_training_curves(tmp_path, captured):
    history = {
        "tos_mae_ms": [20.0, 10.0, 5.0],
        "val_tos_mae_ms": [22.0, 12.0, 7.0],
        "loss": [3.0, 2.0, 1.0],
        "val_loss": [3.5, 2.5, None],
        "lma_accuracy": [0.6, 0.7, 0.8],
    }
    path = charts.plot_training_curves(history, str(tmp_path / "curves.png"))
    _assert_png(path)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    (fig,) = captured
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "tos_mae_ms", "lma_accuracy"]
    assert [len(ax.lines) for ax in axes] == [2, 2, 1]
    np.testing.assert_array_equal(axes[1].lines[1].get_ydata(), [22.0, 12.0, 7.0])
    assert np.isnan(axes[0].lines[1].get_ydata()[2])  # None leaves a gap
    with pytest.raises(ValueError):
        charts.plot_training_curves({}, str(tmp_path / "empty.png"))


def test_comparison_bars_skip_none(tmp_path, captured):
    results = {
        "multitask": {"tos_mae_ms": 3.7, "combined_tos_mae_ms": 3.1, "lma_f1": 0.8},
        "regression_only": {"tos_mae_ms": 4.5, "lma_f1": 0.7},
        "classification_only": {"tos_mae_ms": None, "lma_f1": 0.75},
    }
    metrics = ["tos_mae_ms", "combined_tos_mae_ms", "lma_f1"]
    path = charts.plot_comparison(results, metrics, str(tmp_path / "cmp.png"))
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
