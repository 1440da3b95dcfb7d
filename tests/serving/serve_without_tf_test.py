"""`pip install 'lma_tf[serve]'` predicts and reports with no TensorFlow installed.

The wheel is built as tests/packaging_test.py builds it and installed with
its `serve` extra, dependencies from the package index, into a fresh venv
that has neither TensorFlow nor Keras. An export of a tiny network, made in
this test's own (TensorFlow) environment, then serves one patient's raw
DENSEanalysis `.mat` files (v5 and v7.3) through that venv's `lma-tf
predict`; the CSV must match the same prediction made here, on ONNX Runtime
and on the SavedModel, and that venv's `lma-tf report` and `lma-tf maps`
must read it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from lma_tf import testing
from lma_tf.data.formats import mat
from lma_tf.serving import prediction_csv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _packaging_test():
    """tests/packaging_test.py as a module, for its wheel builder and TINY."""
    path = os.path.join(REPO, "tests", "packaging_test.py")
    spec = importlib.util.spec_from_file_location("_lma_packaging_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PACKAGING = _packaging_test()


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
        f"{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory) -> dict[str, str]:
    """A venv holding the wheel and its `serve` extra, installed by pip."""
    root = str(tmp_path_factory.mktemp("serve_venv"))
    wheel = PACKAGING._build_wheel(root, os.path.join(root, "src"))
    venv = os.path.join(root, "venv")
    _ok(subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv]))
    python = os.path.join(venv, "bin", "python")
    # Dependencies come from the package index (or pip's cache): whatever
    # `serve` pulls in is exactly what a user gets.
    _ok(
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
            + ["--no-compile"]
            + [f"{wheel}[serve]"],
            capture_output=True,
            text=True,
            timeout=900,
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND")
    }
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    return {"venv": venv, "python": python, "env": env}


def _in_venv(venv: dict, args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args),
        env=venv["env"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _tiny_export(root: str) -> str:
    """An untrained tiny multitask network exported (SavedModel + ONNX)."""
    from lma_tf import config as lma_config
    from lma_tf.models import networks
    from lma_tf.serving import export

    cfg = lma_config.base_config()
    cfg.model.trunk_channels = (8,)
    cfg.model.frame_pools = 1
    cfg.model.sector_pools = 1
    cfg.model.head_channels = (8,)
    cfg.model.head_units = (8,)
    return export.export_model(
        networks.build_model(cfg), cfg, os.path.join(root, "export"), version=1
    )


def _patient(root: str) -> list[str]:
    """One patient as DENSEanalysis exports, MATLAB v5 and v7.3 (one folder each)."""
    rng = np.random.default_rng(4)
    dirs = []
    for version, subject in (("5", "PATv5"), ("7.3", "PATv73")):
        slices = [
            testing.random_slice(rng, subject, f"slice{i}", 26 + 3 * i)
            for i in range(3)
        ]
        mat.write(slices, root, version)
        dirs.append(os.path.join(root, subject))
    return dirs


def _same_predictions(got_csv: str, want_csv: str, atol: float) -> None:
    got, want = prediction_csv.read(got_csv), prediction_csv.read(want_csv)
    assert [(p.subject_id, p.slice_id) for p in got] == [
        (p.subject_id, p.slice_id) for p in want
    ]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.tos_ms, w.tos_ms, atol=atol, rtol=0)
        np.testing.assert_allclose(
            g.lma_probability, w.lma_probability, atol=atol, rtol=0
        )
        # The combined output switches at 0.5: compared away from the switch.
        away = np.abs(w.lma_probability - 0.5) > atol
        np.testing.assert_allclose(
            g.combined_tos_ms[away], w.combined_tos_ms[away], atol=atol, rtol=0
        )
        np.testing.assert_allclose(g.true_tos_ms, w.true_tos_ms, atol=1e-3, rtol=0)


def test_the_serve_extra_installs_no_tensorflow(serve_venv, tmp_path):
    for module in ("tensorflow", "keras", "tf2onnx"):
        proc = _in_venv(
            serve_venv, [serve_venv["python"], "-c", f"import {module}"], tmp_path
        )
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module
    _ok(
        _in_venv(
            serve_venv, [serve_venv["python"], "-c", "import onnxruntime"], tmp_path
        )
    )


def test_predict_report_and_maps_run_without_tensorflow(serve_venv, tmp_path):
    from lma_tf.serving import predict

    export_dir = _tiny_export(str(tmp_path))
    inputs = _patient(str(tmp_path / "raw"))
    flags = [f"--saved_model={export_dir}", *(f"--input={d}" for d in inputs)]
    proc = _ok(
        _in_venv(
            serve_venv,
            ["lma-tf", "predict", *flags, "--output=venv.csv", "--runtime=onnx"],
            tmp_path,
        )
    )
    assert "6 slices -> 756 rows" in proc.stdout and "(onnx: " in proc.stdout
    venv_csv = str(tmp_path / "venv.csv")
    # The same prediction in this (TensorFlow) environment, on both runtimes.
    for runtime in ("onnx", "tensorflow"):
        here = str(tmp_path / f"{runtime}.csv")
        predict.predict(export_dir, inputs, here, runtime=runtime, progress=False)
        _same_predictions(venv_csv, here, atol=1e-4)

    proc = _ok(
        _in_venv(
            serve_venv,
            ["lma-tf", "report", "--predictions=venv.csv", "--output_dir=report"]
            + [f"--input={d}" for d in inputs],
            tmp_path,
        )
    )
    for subject in ("PATv5", "PATv73"):
        assert os.path.isfile(tmp_path / "report" / subject / "report.json")
        assert os.path.isfile(tmp_path / "report" / subject / "report.png")
    assert os.path.isfile(tmp_path / "report" / "cohort_summary.csv")
    _ok(
        _in_venv(
            serve_venv,
            ["lma-tf", "maps", "--predictions=venv.csv", "--output_dir=maps"],
            tmp_path,
        )
    )
    assert any(m.endswith("_bullseye.png") for m in os.listdir(tmp_path / "maps"))
