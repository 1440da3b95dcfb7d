"""The accuracy-per-cost figure draws the points, the frontier and the pick."""

from __future__ import annotations

import numpy as np
import pytest

from lma_tf.viz import frontier as frontier_fig

ROWS = [
    {"name": "big", "flops_per_example": 300e6, "combined_tos_mae_ms": 5.0},
    {"name": "mid", "flops_per_example": 100e6, "combined_tos_mae_ms": 5.08},
    {"name": "worse", "flops_per_example": 200e6, "combined_tos_mae_ms": 5.5},
    {"name": "classical", "flops_per_example": None, "combined_tos_mae_ms": 9.0},
]


def test_points_labels_frontier_and_pick(tmp_path, captured):
    path = frontier_fig.plot_frontier(ROWS, str(tmp_path / "f.png"), picked="mid")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    (fig,) = captured
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert sorted(t.get_text() for t in ax.texts) == ["big", "mid", "worse"]
    (line,) = ax.lines  # the frontier: mid then big, in MFLOPs
    np.testing.assert_allclose(line.get_xdata(), [100.0, 300.0])
    np.testing.assert_allclose(line.get_ydata(), [5.08, 5.0])
    assert "classical" in ax.get_title()  # no FLOPs: named, not plotted
    assert any("pick: mid" in t.get_text() for t in ax.get_legend().get_texts())


def test_nothing_to_plot_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no network"):
        frontier_fig.plot_frontier(ROWS[3:], str(tmp_path / "f.png"))
