"""The ONNX serving path imports neither TensorFlow nor Keras, from files to CSV.

Each run is a fresh interpreter (this test process has imported TensorFlow
long ago); what it imported is read from its `sys.modules` at exit.
"""

import json
import os
import subprocess
import sys

import numpy as np

from lma_tf import testing
from lma_tf.data.formats import mat
from lma_tf.serving import prediction_csv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("tensorflow", "keras", "tf2onnx", "tf_keras")

# What a cold start of `predict` on v5 .mat files need not pay for: scipy.io
# (v5 files have their own reader), h5py (v7.3 only), tqdm (bars on a
# terminal only), matplotlib.
COLD_START = ("scipy", "h5py", "tqdm", "matplotlib")


def _report(names: tuple[str, ...]) -> str:
    """Code printing the modules of `names` loaded when the process ends."""
    return (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('MODULES ' + json.dumps(sorted("
        f"m for m in sys.modules if m.split('.')[0] in {names!r}))))\n"
    )


def _run(
    code: str, names: tuple[str, ...] = HEAVY
) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", _report(names) + code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES ")]
    assert lines, proc.stderr[-3000:]
    return proc, json.loads(lines[-1][len("MODULES ") :])


def _mat_patient(root) -> str:
    rng = np.random.default_rng(9)
    slices = [testing.random_slice(rng, "PAT", f"s{i}", 30 + i) for i in range(3)]
    mat.write(slices, str(root), "5")
    return str(root / "PAT")


def test_the_library_predict_on_onnx_loads_no_tensorflow(serving_run, tmp_path):
    patient = _mat_patient(tmp_path / "mat")
    out = str(tmp_path / "p.csv")
    code = (
        "from lma_tf.serving import predict\n"
        f"r = predict.predict({serving_run.version_dir!r}, "
        f"[{serving_run.inputs!r}, {patient!r}], {out!r}, progress=False)\n"
        "print('RUNTIME', r['runtime'])\n"
    )
    proc, heavy = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUNTIME onnx" in proc.stdout
    assert heavy == []
    assert {p.subject_id for p in prediction_csv.read(out)} >= {"PAT"}


def _command(argv: list[str]) -> str:
    return (
        "import runpy, sys\n"
        f"sys.argv = {['lma-tf predict', *argv]!r}\n"
        "runpy.run_module('lma_tf.cli.predict', run_name='__main__')\n"
    )


def test_the_command_on_onnx_loads_no_tensorflow(serving_run, tmp_path):
    patient = _mat_patient(tmp_path / "mat")
    out = str(tmp_path / "p.csv")
    argv = [
        f"--saved_model={os.path.dirname(serving_run.version_dir)}",
        f"--input={patient}",
        f"--output={out}",
    ]
    proc, heavy = _run(_command(argv))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert heavy == []
    assert "(onnx: " in proc.stdout
    assert len(prediction_csv.read(out)) == 3  # one entry per slice
    # Forced onto TensorFlow, the same command does load it: the check bites.
    proc, heavy = _run(_command([*argv, "--runtime=tensorflow"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(tensorflow: " in proc.stdout and "tensorflow" in heavy


def test_the_command_on_v5_files_loads_only_what_it_needs(serving_run, tmp_path):
    patient = _mat_patient(tmp_path / "mat")
    out = str(tmp_path / "p.csv")
    argv = [f"--saved_model={serving_run.version_dir}", f"--input={patient}"]
    proc, loaded = _run(_command([*argv, f"--output={out}"]), COLD_START)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert loaded == []
    assert len(prediction_csv.read(out)) == 3
