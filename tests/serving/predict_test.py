"""Batch prediction: the prediction CSV, rejects, friendly errors, the command."""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lma_tf import constants, testing
from lma_tf.data import records
from lma_tf.errors import LmaError, UsageError
from lma_tf.serving import contract, layout, predict, prediction_csv, runtime

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "lma_tf.cli.predict", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_predict_csv_rows_and_rejects(serving_run, tmp_path):
    version_dir, inputs = serving_run.version_dir, serving_run.inputs
    bad = testing.random_slice(np.random.default_rng(0), "BAD", "bad_slice", 30)
    bad.strain_matrix[3, 4] = np.nan
    testing.write_npz(str(tmp_path / "bad" / "bad.npz"), bad)
    rejects = []
    out_csv = str(tmp_path / "pred.csv")
    result = predict.predict(
        os.path.dirname(version_dir),  # the export base: its latest version
        [inputs, str(tmp_path / "bad")],
        out_csv,
        batch_size=16,
        progress=False,
        report=rejects.append,
    )
    assert len(rejects) == 1 and "bad_slice" in rejects[0].line()
    assert "NaN" in rejects[0].line()
    slices, _, _ = records.collect_slices([inputs], progress=False)
    assert result["num_slices"] == len(slices) and result["num_rejects"] == 1
    with open(out_csv, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    assert tuple(header) == prediction_csv.COLUMNS
    read = prediction_csv.read(out_csv)
    assert result["num_rows"] == 126 * len(slices)
    assert [(p.subject_id, p.slice_id) for p in read] == [s.key for s in slices]
    # ONNX Runtime ran it (the export has model.onnx); values equal a direct
    # call of the SavedModel on the slice.
    assert result["runtime"] == "onnx" and result["model"] == version_dir
    s, got = slices[-1], read[-1]
    want = runtime.load_model(version_dir, "tensorflow")(
        s.strain_matrix[None], np.array([s.frame_period_ms], np.float32)
    )
    for key in contract.OUTPUT_KEYS:
        np.testing.assert_allclose(getattr(got, key), want[key][0], atol=1e-4, rtol=0)
    assert all(p.tos_ms.min() >= constants.TOS_FLOOR_MS for p in read)
    assert got.slice_location == pytest.approx(s.slice_location, abs=1e-3)
    np.testing.assert_allclose(got.true_tos_ms, s.tos_ms, atol=1e-4)
    np.testing.assert_allclose(got.scar_fraction, s.scar_fraction, atol=1e-4)
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


def test_predict_with_no_valid_slice_fails_and_writes_nothing(serving_run, tmp_path):
    bad = testing.random_slice(np.random.default_rng(1), "BAD", "short", 30)
    testing.write_npz(
        str(tmp_path / "in" / "b.npz"),
        bad,
        strain_matrix=np.zeros((126, 5), np.float32),
    )
    with pytest.raises(predict.PredictError, match="no valid slice"):
        predict.predict(
            serving_run.version_dir,
            [str(tmp_path / "in")],
            str(tmp_path / "p.csv"),
            progress=False,
            report=lambda r: None,
        )
    assert not os.path.exists(tmp_path / "p.csv")


def test_a_training_run_dir_says_to_export_it_first(serving_run, tmp_path):
    with pytest.raises(UsageError, match="training run dir") as e:
        runtime.load_model(serving_run.model_dir)
    message = str(e.value)
    assert f"lma-tf export --model_dir={serving_run.model_dir}" in message
    assert "--export_dir=" in message


def test_a_truncated_saved_model_is_one_clear_error(serving_run, tmp_path):
    broken = str(tmp_path / "broken")
    shutil.copytree(serving_run.version_dir, broken)
    (data,) = glob.glob(os.path.join(broken, "variables", "variables.data-*"))
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(LmaError, match="cannot load the SavedModel") as e:
        runtime.load_model(broken, "tensorflow")
    assert not isinstance(e.value, UsageError)
    assert broken in str(e.value) and "\n" not in str(e.value)
    # The command: one error line naming the path, exit 1, no traceback.
    out = str(tmp_path / "p.csv")
    proc = _run([f"--saved_model={broken}", f"--input={serving_run.inputs}"])
    assert proc.returncode == 2 and "--output is required" in proc.stderr
    args = [f"--saved_model={broken}", f"--input={serving_run.inputs}"]
    proc = _run([*args, f"--output={out}", "--runtime=tensorflow"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("lma-tf predict: error:")
    assert broken in errors[0] and "Traceback" not in proc.stderr
    assert not os.path.exists(out)


def test_runtimes_agree_and_tensorflow_can_be_forced(serving_run, tmp_path):
    outs = {}
    for name in ("onnx", "tensorflow"):
        outs[name] = str(tmp_path / f"{name}.csv")
        result = predict.predict(
            serving_run.version_dir,
            [serving_run.inputs],
            outs[name],
            runtime=name,
            progress=False,
        )
        assert result["runtime"] == name
    onnx, tf_ = (prediction_csv.read(outs[n]) for n in ("onnx", "tensorflow"))
    assert [p.slice_id for p in onnx] == [p.slice_id for p in tf_]
    for a, b in zip(onnx, tf_):
        for key in contract.OUTPUT_KEYS:
            np.testing.assert_allclose(getattr(a, key), getattr(b, key), atol=1e-4)


def test_a_period_outside_the_serving_range_is_a_reject():
    """A slice refused by the serving contract is one REJECT; the rest go on."""
    rng = np.random.default_rng(2)
    good = testing.random_slice(rng, "S", "good", 30, with_labels=False)
    rejects = []
    slow = testing.random_slice(rng, "S", "slow", 30, with_labels=False)
    slow.frame_period_ms = 200.0
    kept, refused = predict.servable([good, slow], rejects.append)
    assert [s.slice_id for s in kept] == ["good"]
    assert refused == rejects and len(rejects) == 1
    assert "slice=slow" in rejects[0].line()
    assert contract.BAD_PERIOD in rejects[0].line()


def test_an_onnx_only_export_is_found_under_the_base_dir(serving_run, tmp_path):
    base = tmp_path / "exports"
    (base / "3").mkdir(parents=True)
    shutil.copy(os.path.join(serving_run.version_dir, layout.ONNX_FILE), base / "3")
    model = runtime.load_model(str(base))
    assert model.runtime == "onnx" and model.path == str(base / "3")
    with pytest.raises(runtime.ModelNotFoundError, match="neither a SavedModel"):
        runtime.load_model(str(base), "tensorflow")


def test_the_command_prints_the_notice_and_writes_the_csv(serving_run, tmp_path):
    out = str(tmp_path / "p.csv")
    proc = _run(
        [
            f"--saved_model={serving_run.version_dir}",
            f"--input={serving_run.inputs}",
            f"--output={out}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    notice = "research use only: not a medical device; models trained on synthetic"
    assert notice in proc.stderr
    assert "[predict]" in proc.stdout and "rows in" in proc.stdout
    assert len(prediction_csv.read(out)) > 0
