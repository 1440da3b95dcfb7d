"""Grad-CAM over trained runs: the command, the figures and what is refused.

Uses the session's tiny trained runs (`trained` in tests/conftest.py).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lma_tf.errors import UsageError
from lma_tf.viz import explain, gradcam

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 126


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_compare_command_writes_side_by_side_figures(trained, tmp_path):
    """The binary end to end, multitask vs regression-only on the same slices."""
    _, dirs = trained
    out = tmp_path / "g"
    proc = _run(
        "-m", "lma_tf.cli.explain",
        f"--compare={dirs['multitask']},{dirs['regression_only']}",
        "--split=test", "--num_slices=2", f"--output_dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    assert len(pngs) == 2 and all(p.endswith("_gradcam.png") for p in pngs)
    assert all((out / p).stat().st_size > 1000 for p in pngs)
    targets = json.loads((out / "targets_gradcam.json").read_text())
    assert set(targets["slices"]) == {"multitask", "regression_only"}
    slice_ids = list(targets["slices"]["multitask"])
    assert slice_ids == list(targets["slices"]["regression_only"])  # same slices
    maps = np.load(out / "gradcam_gradcam.npz")
    for sid in slice_ids:
        rec = targets["slices"]["multitask"][sid]
        assert rec["layers"] == {
            "tos": "tos_head_block0_conv",
            "lma": "lma_head_block0_conv",
        }
        tos_map = maps[f"multitask/{sid}/tos"]
        assert tos_map.shape[0] == N and 16 <= tos_map.shape[1] <= 64
        assert maps[f"multitask/{sid}/lma"].shape == tos_map.shape
        assert maps[f"regression_only/{sid}/tos"].shape == tos_map.shape
        assert f"regression_only/{sid}/lma" not in maps


def test_explanation_figure_panels(trained, tmp_path, captured):
    """In-process run: one strain panel + 2 multitask + 1 regression-only."""
    _, dirs = trained
    figs = captured
    result = explain.run_gradcam(
        [dirs["multitask"], dirs["regression_only"]],
        str(tmp_path),
        split="test",
        num_slices=1,
    )
    (fig,) = figs
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "strain Ecc",
        "multitask: TOS head",
        "multitask: LMA head",
        "regression_only: TOS head",
    ]
    cam_axes = [ax for ax in fig.axes if ax.get_title().startswith(tuple(titles[1:]))]
    for ax in cam_axes:
        (cam,) = [im for im in ax.images if im.get_gid() == "cam"]
        assert cam.get_clim() == (0.0, 1.0)
        assert cam.get_array().shape[0] == N
    assert [ln.get_gid() for ln in cam_axes[0].lines].count("target_sector") == 1
    assert result["experiments"] == ["multitask", "regression_only"]
    # Regression only: LMA from TOS (rules.lma_from_tos), no combined curve.
    reg_lines = [
        ln.get_linestyle() for ln in cam_axes[2].lines if ln.get_label()[0] != "_"
    ]
    assert ":" not in reg_lines


def test_classical_and_missing_slices_are_refused(trained, tmp_path):
    _, dirs = trained
    with pytest.raises(explain.GradcamError, match="not in the"):
        explain.run_gradcam(
            [dirs["multitask"]], str(tmp_path), slice_ids=["no_such_slice"]
        )
    with pytest.raises(explain.GradcamError, match="classical"):
        explain.run_gradcam([dirs["classical"]], str(tmp_path))
    with pytest.raises(UsageError, match="not a trained model dir"):
        explain.run_gradcam([str(tmp_path / "nothing")], str(tmp_path))
    assert issubclass(explain.GradcamError, UsageError)
    assert not os.listdir(tmp_path)


def test_explain_command_errors_are_one_line(trained, tmp_path):
    _, dirs = trained
    proc = _run("tools/explain.py", f"--model_dir={dirs['classical']}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "lma-tf explain: error:" in proc.stderr and "classical" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run("tools/explain.py")
    assert proc.returncode == 2 and "--model_dir or --compare" in proc.stderr


@pytest.mark.parametrize(
    "subject_id, slice_id",
    [("../x", "../x_s1"), ("a/../../b", "s/../../../c"), ("p1", "..")],
)
def test_figure_names_stay_inside_the_output_dir(tmp_path, subject_id, slice_id):
    path = explain.figure_path(str(tmp_path), subject_id, slice_id, "gradcam")
    assert os.path.dirname(path) == str(tmp_path)
    assert path.endswith("_gradcam.png") and "/" not in os.path.basename(path)
    assert os.path.realpath(path).startswith(os.path.realpath(tmp_path) + os.sep)


def test_figure_name_prefixes_the_subject_once(tmp_path):
    name = os.path.basename(explain.figure_path("g", "P001", "P001_s2", "gradcampp"))
    assert name == "P001_s2_gradcampp.png"
    name = os.path.basename(explain.figure_path("g", "P001", "mid", "scorecam"))
    assert name == "P001_mid_scorecam.png"


def test_explain_flags_need_no_tensorflow_and_agree_with_the_library():
    code = (
        "import sys, lma_tf.cli.explain as m\n"
        "heavy = {'numpy', 'matplotlib', 'tensorflow', 'keras'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(repr(m.METHODS))\n"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ast.literal_eval(proc.stdout.strip()) == tuple(gradcam.METHODS)
    assert set(gradcam.METHOD_TAGS) == set(gradcam.METHODS)
