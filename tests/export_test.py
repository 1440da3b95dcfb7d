"""Serving: SavedModel export, fresh-process load, saved_model_cli, ONNX, predict.

One tiny model (12 synthetic subjects, 1 epoch, batch 8) is trained and
exported once for the module; the export is then loaded in a fresh Python
process (no state shared with the Keras model) and compared with the Keras
model run on the same inputs through the training pipeline's own ops.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import constants, testing
from lma_tf.data import features, pipeline, preprocess, records, synthetic, synthetic_io
from lma_tf.data.slices import DenseSlice
from lma_tf.serving import export, predict
from lma_tf.training import train_lib as lma_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME_COUNTS = (20, 40, 64, 100)
ATOL_MS = 1e-4
ATOL_PROB = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model_dir, export version dir, cohort input dir) of a 1-epoch model."""
    root = tmp_path_factory.mktemp("serving")
    cohort = synthetic.generate_cohort(12, seed=3)
    inputs = str(root / "in")
    synthetic_io.write_cohort(cohort, inputs, "npz")
    rec = str(root / "records")
    records.make_records(
        [inputs], records.RecordsOptions(output_dir=rec, progress=False)
    )
    cfg = lma_config.base_config()
    cfg.data.records_dir = rec
    cfg.data.drop_last_frames = 5  # the serving graph must honour the config
    cfg.train.epochs = 1
    cfg.train.batch_size = 8
    model_dir = str(root / "model")
    lma_train.train(cfg, model_dir, progress=False)
    version_dir = export.export(model_dir, str(root / "export"))
    return model_dir, version_dir, inputs


@pytest.fixture(scope="module")
def keras_model(trained):
    config = lma_train.load_config(trained[0])
    return lma_train.restore_best(config, trained[0]), config


def _expected(model, config, fitted: tf.Tensor) -> dict:
    """The serving outputs computed with numpy from the Keras model's raw outputs."""
    x = preprocess.pad_sectors(fitted, config.data.num_sectors, axis=1)
    out = model(x, training=False)
    tos = out["tos"].numpy()[:, : constants.NUM_SECTORS]
    logits = out["lma"].numpy()[:, : constants.NUM_SECTORS].astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    prob = (e / e.sum(-1, keepdims=True))[..., 1]
    combined = np.where(prob < 0.5, constants.TOS_FLOOR_MS, tos)
    return {"tos_ms": tos, "lma_probability": prob, "combined_tos_ms": combined}


def _expected_from_raw(model, config, strain: np.ndarray, periods: np.ndarray):
    """Per example, the ops `pipeline.parse_and_fit` applies, then the model."""
    d = config.data
    fitted = [
        preprocess.fit_frames(
            preprocess.resample_frames(tf.constant(x), p, d.frame_period_ms),
            d.num_frames,
            d.drop_last_frames,
        )
        for x, p in zip(strain, periods)
    ]
    return _expected(model, config, tf.stack(fitted))


def _assert_outputs_close(got: dict, want: dict, what: str) -> None:
    for key in export.OUTPUT_KEYS:
        assert got[key].shape == want[key].shape, (what, key)
        atol = ATOL_PROB if key == "lma_probability" else ATOL_MS
        np.testing.assert_allclose(got[key], want[key], atol=atol, rtol=0, err_msg=what)


def _example_slices() -> list[DenseSlice]:
    """Slices of different lengths and temporal resolutions, for serve_examples."""
    rng = np.random.default_rng(7)
    out = []
    for i, (frames, period) in enumerate(
        [(20, 17.0), (64, 17.0), (37, 25.0), (110, 9.5)]
    ):
        s = testing.random_slice(rng, "EX", f"ex{i}", frames, with_labels=i % 2 == 0)
        s.frame_period_ms = period
        s.tos_ms = None if s.tos_ms is None else np.minimum(s.tos_ms, frames * period)
        out.append(s)
    return out


_FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf

export_dir, inputs, examples, output = sys.argv[1:5]
loaded = tf.saved_model.load(export_dir)
data = np.load(inputs)
out = {}
serve = loaded.signatures["serving_default"]
for f in [int(k[len("strain_"):]) for k in data.files if k.startswith("strain_")]:
    got = serve(
        strain=tf.constant(data[f"strain_{f}"]),
        frame_period_ms=tf.constant(data[f"period_{f}"]),
    )
    out.update({f"serve_{f}_{k}": v.numpy() for k, v in got.items()})
batch = tf.stack(list(tf.data.TFRecordDataset(examples)))
got = loaded.signatures["serve_examples"](examples=batch)
out.update({f"examples_{k}": v.numpy() for k, v in got.items()})
np.savez(output, **out)
"""


@pytest.fixture(scope="module")
def fresh_process_outputs(trained, tmp_path_factory):
    """Inputs, and the SavedModel's outputs on them computed in a new process."""
    tmp = tmp_path_factory.mktemp("fresh")
    rng = np.random.default_rng(11)
    arrays = {}
    for f in FRAME_COUNTS:
        arrays[f"strain_{f}"] = rng.normal(0, 0.05, (3, 126, f)).astype(np.float32)
        arrays[f"period_{f}"] = np.full(3, 17.0, np.float32)
    # One batch mixing temporal resolutions: resampled example by example.
    arrays["period_40"] = np.array([17.0, 12.0, 25.0], np.float32)
    np.savez(tmp / "inputs.npz", **arrays)
    slices = _example_slices()
    with tf.io.TFRecordWriter(str(tmp / "examples.tfrecord")) as w:
        for s in slices:
            w.write(features.slice_to_example(s).SerializeToString())
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    argv = [trained[1], tmp / "inputs.npz", tmp / "examples.tfrecord", tmp / "out.npz"]
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return arrays, slices, dict(np.load(tmp / "out.npz"))


@pytest.mark.parametrize("frames", FRAME_COUNTS)
def test_fresh_process_serving_default_matches_keras(
    frames, keras_model, fresh_process_outputs
):
    model, config = keras_model
    arrays, _, out = fresh_process_outputs
    strain, periods = arrays[f"strain_{frames}"], arrays[f"period_{frames}"]
    want = _expected_from_raw(model, config, strain, periods)
    got = {k: out[f"serve_{frames}_{k}"] for k in export.OUTPUT_KEYS}
    _assert_outputs_close(got, want, f"serving_default, {frames} frames")


def test_fresh_process_serve_examples_matches_training_parser(
    keras_model, fresh_process_outputs
):
    """The Example signature equals the training pipeline's parse_and_fit + model."""
    model, config = keras_model
    _, slices, out = fresh_process_outputs
    fitted = [
        pipeline.parse_and_fit(
            tf.constant(features.slice_to_example(s).SerializeToString()), config.data
        )["strain"]
        for s in slices
    ]
    want = _expected(model, config, tf.stack(fitted))
    got = {k: out[f"examples_{k}"] for k in export.OUTPUT_KEYS}
    _assert_outputs_close(got, want, "serve_examples")
    assert np.all(got["tos_ms"] >= constants.TOS_FLOOR_MS - 1e-4)


def test_export_layout_and_info(trained):
    version_dir = trained[1]
    assert os.path.basename(version_dir) == "1"
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
    siblings = os.listdir(os.path.dirname(version_dir))
    assert not [n for n in siblings if n.startswith(".tmp")], siblings
    with open(os.path.join(version_dir, export.EXPORT_INFO)) as f:
        info = json.load(f)
    assert info["model_kind"] == "multitask"
    assert info["config"]["data"]["drop_last_frames"] == 5


def _saved_model_cli() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    found = beside if os.path.exists(beside) else shutil.which("saved_model_cli")
    assert found, "saved_model_cli (installed with tensorflow) not found"
    return found


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_saved_model_cli_show_lists_both_signatures(trained):
    proc = _run([_saved_model_cli(), "show", "--all", "--dir", trained[1]])
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for name in ("serving_default", "serve_examples"):
        assert f"signature_def['{name}']" in text
    for name in ("strain", "frame_period_ms", "examples"):
        assert f"inputs['{name}']" in text
    for name in export.OUTPUT_KEYS:
        assert text.count(f"outputs['{name}']") == 2, name
    assert "shape: (-1, 126, -1)" in text  # strain: any batch, any frame count
    assert "shape: (-1, 126)" in text


def test_saved_model_cli_run_on_npy(trained, tmp_path):
    x = np.random.default_rng(5).normal(0, 0.05, (2, 126, 33)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", np.full(2, 17.0, np.float32))
    cmd = [
        _saved_model_cli(),
        "run",
        "--dir",
        trained[1],
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--inputs",
        f"strain={tmp_path / 'x.npy'};frame_period_ms={tmp_path / 'p.npy'}",
        "--outdir",
        str(tmp_path / "out"),
    ]
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in export.OUTPUT_KEYS:
        assert np.load(tmp_path / "out" / f"{name}.npy").shape == (2, 126)


def test_export_refuses_model_dir_without_checkpoint(trained, tmp_path):
    with pytest.raises(export.ExportError, match="config.json not found"):
        export.export(str(tmp_path / "nothing"), str(tmp_path / "e"))
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(os.path.join(trained[0], "config.json"), untrained / "config.json")
    with pytest.raises(export.ExportError, match="no trained checkpoint"):
        export.export(str(untrained), str(tmp_path / "e"))
    assert not os.path.exists(tmp_path / "e" / "1")
    # The command line says so too, and fails.
    proc = _run(
        [
            sys.executable,
            "-m",
            "lma_tf.serving.export",
            f"--model_dir={untrained}",
            f"--export_dir={tmp_path / 'e'}",
        ]
    )
    assert proc.returncode != 0
    assert "export: error:" in proc.stderr and "no trained checkpoint" in proc.stderr


@pytest.mark.parametrize("kind", ["classification_only", "classical"])
def test_export_refuses_kinds_without_tos_head(trained, tmp_path, kind):
    with open(os.path.join(trained[0], "config.json")) as f:
        cfg = json.load(f)
    cfg["model"]["kind"] = kind
    (tmp_path / "m").mkdir()
    with open(tmp_path / "m" / "config.json", "w") as f:
        json.dump(cfg, f)
    with pytest.raises(export.ExportError, match=kind):
        export.export(str(tmp_path / "m"), str(tmp_path / "e"))


def test_failed_export_leaves_no_version(keras_model, tmp_path, monkeypatch):
    model, config = keras_model

    def broken(model, config, path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_saved_model", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_model(model, config, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_versions(tmp_path):
    assert export.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "7", ".tmp-8-1", "notes"):
        (tmp_path / name).mkdir()
    assert export.next_version(str(tmp_path)) == 8
    (tmp_path / "1" / "saved_model.pb").write_text("")
    assert export.latest_version_dir(str(tmp_path)) == str(tmp_path / "1")
    (tmp_path / "7" / "saved_model.pb").write_text("")
    assert export.latest_version_dir(str(tmp_path)) == str(tmp_path / "7")
    with pytest.raises(FileNotFoundError):
        export.latest_version_dir(str(tmp_path / "notes"))


def test_existing_version_is_refused(keras_model, trained):
    model, config = keras_model
    base = os.path.dirname(trained[1])
    with pytest.raises(export.ExportError, match="exists already"):
        export.export_model(model, config, base, version=1)


def test_regression_only_outputs_derive_lma_from_tos():
    tos = np.full((1, 128), 17.0, np.float32)
    tos[0, :3] = [17.5, 18.5, 60.0]
    out = export.outputs_from_model({"tos": tf.constant(tos)})
    np.testing.assert_array_equal(out["lma_probability"].numpy()[0, :4], [0, 1, 1, 0])
    np.testing.assert_array_equal(
        out["combined_tos_ms"].numpy()[0, :4], [17.0, 18.5, 60.0, 17.0]
    )
    assert out["tos_ms"].shape == (1, 126)


def test_out_of_range_frames_give_a_clear_error(trained):
    serve = predict.ServingModel(trained[1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 16 frames"):
        serve(np.zeros((1, 126, 10), np.float32), np.full(1, 17.0, np.float32))


def test_onnx_runtime_matches_tensorflow(keras_model, trained):
    model, config = keras_model
    base = os.path.dirname(trained[1])
    onnx_dir = export.export_model(model, config, base, fmt="onnx")
    assert os.path.basename(onnx_dir) == "2"  # next free version after the SavedModel
    session = ort.InferenceSession(
        os.path.join(onnx_dir, export.ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted(export.OUTPUT_KEYS)
    serve = predict.ServingModel(trained[1])
    rng = np.random.default_rng(2)
    cases = [
        (20, [17.0, 17.0]),
        (64, [17.0, 17.0]),
        (100, [17.0, 17.0]),
        (45, [17.0, 9.0]),
    ]
    for frames, periods in cases:
        x = rng.normal(0, 0.05, (2, 126, frames)).astype(np.float32)
        p = np.array(periods, np.float32)
        got = dict(zip(names, session.run(None, {"strain": x, "frame_period_ms": p})))
        want = serve(x, p)
        for key in export.OUTPUT_KEYS:
            np.testing.assert_allclose(
                got[key], want[key], atol=1e-4, rtol=0, err_msg=f"{key}, {frames}"
            )


def test_predict_csv_rows_and_rejects(trained, tmp_path):
    _, version_dir, inputs = trained
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
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == predict.CSV_COLUMNS
    assert len(rows) == result["num_rows"] == 126 * len(slices)
    per_slice: dict = {}
    for r in rows:
        per_slice.setdefault((r["subject_id"], r["slice_id"]), []).append(r)
    assert set(per_slice) == {s.key for s in slices}
    assert all(
        [int(r["sector"]) for r in v] == list(range(126)) for v in per_slice.values()
    )
    # Values equal a direct call of the SavedModel on the slice.
    s = slices[-1]
    want = predict.ServingModel(version_dir)(
        s.strain_matrix[None], np.array([s.frame_period_ms], np.float32)
    )
    got = per_slice[s.key]
    for key in export.OUTPUT_KEYS:
        values = np.array([float(r[key]) for r in got])
        np.testing.assert_allclose(values, want[key][0], atol=1e-4, rtol=0)
    assert float(got[0]["slice_location"]) == pytest.approx(s.slice_location, abs=1e-3)
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


def test_predict_with_no_valid_slice_fails_and_writes_nothing(trained, tmp_path):
    bad = testing.random_slice(np.random.default_rng(1), "BAD", "short", 30)
    testing.write_npz(
        str(tmp_path / "in" / "b.npz"),
        bad,
        strain_matrix=np.zeros((126, 5), np.float32),
    )
    with pytest.raises(predict.PredictError, match="no valid slice"):
        predict.predict(
            trained[1],
            [str(tmp_path / "in")],
            str(tmp_path / "p.csv"),
            progress=False,
            report=lambda r: None,
        )
    assert not os.path.exists(tmp_path / "p.csv")
