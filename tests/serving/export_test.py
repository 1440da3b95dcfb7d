"""Export: SavedModel layout, fresh-process load, saved_model_cli, ONNX, refusals.

The export of the session's tiny model (`conftest.serving_run`) is loaded in
a fresh Python process (no state shared with the Keras model) and compared
with the Keras model run on the same inputs through the training pipeline's
own ops, its TOS floored at 17 ms as the contract serves it.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

from lma_tf import constants, rules, testing
from lma_tf.data import features, pipeline, preprocess, sector_padding
from lma_tf.data.slices import DenseSlice
from lma_tf.errors import UsageError
from lma_tf.models import test_time
from lma_tf.serving import contract, export, layout, runtime

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAME_COUNTS = (20, 40, 64, 100)
ATOL_MS = 1e-4
ATOL_PROB = 1e-5


def _expected(model, config, fitted: tf.Tensor) -> dict:
    """The serving outputs computed with numpy from the Keras model's raw outputs
    (averaged over the config's test-time views, as serving does)."""
    x = sector_padding.pad(fitted, config.data, axis=1)
    out = test_time.wrap(model, config)(x, training=False)
    tos = rules.floor_tos(out["tos"].numpy()[:, : constants.NUM_SECTORS])
    prob = rules.lma_probability(out["lma"].numpy()[:, : constants.NUM_SECTORS])
    combined = np.where(prob < 0.5, constants.TOS_FLOOR_MS, tos)
    return {"tos_ms": tos, "lma_probability": prob, "combined_tos_ms": combined}


def _expected_from_raw(model, config, strain: np.ndarray, periods: np.ndarray):
    """Per example, the op `pipeline.parse_and_fit` applies, then the model."""
    fitted = [
        preprocess.fit_to_model(tf.constant(x), p, config.data)
        for x, p in zip(strain, periods)
    ]
    return _expected(model, config, tf.stack(fitted))


def _assert_outputs_close(got: dict, want: dict, what: str) -> None:
    for key in contract.OUTPUT_KEYS:
        assert got[key].shape == want[key].shape, (what, key)
        atol = ATOL_PROB if key == contract.LMA_PROBABILITY else ATOL_MS
        np.testing.assert_allclose(got[key], want[key], atol=atol, rtol=0, err_msg=what)
    # The served TOS is hard-floored, not leaky: never below 17 ms.
    assert np.all(got[contract.TOS_MS] >= constants.TOS_FLOOR_MS), what


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


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def fresh_process_outputs(serving_run, tmp_path_factory):
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
    argv = [serving_run.version_dir, tmp / "inputs.npz", tmp / "examples.tfrecord"]
    argv.append(tmp / "out.npz")
    proc = _run([sys.executable, "-c", _FRESH_PROCESS, *map(str, argv)])
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
    got = {k: out[f"serve_{frames}_{k}"] for k in contract.OUTPUT_KEYS}
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
    got = {k: out[f"examples_{k}"] for k in contract.OUTPUT_KEYS}
    _assert_outputs_close(got, want, "serve_examples")


def test_export_layout_and_info(serving_run):
    version_dir = serving_run.version_dir
    assert os.path.basename(version_dir) == "1"
    # The default export: the SavedModel and model.onnx side by side.
    assert os.path.exists(os.path.join(version_dir, layout.SAVED_MODEL_PB))
    assert os.path.isdir(os.path.join(version_dir, "variables"))
    assert os.path.exists(os.path.join(version_dir, layout.ONNX_FILE))
    siblings = os.listdir(os.path.dirname(version_dir))
    assert not [n for n in siblings if n.startswith(".tmp")], siblings
    with open(os.path.join(version_dir, layout.EXPORT_INFO)) as f:
        info = json.load(f)
    assert info["formats"] == ["saved_model", "onnx"]
    assert info["model_kind"] == "multitask"
    assert info["config"]["data"]["drop_last_frames"] == 5
    assert info["outputs"] == list(contract.OUTPUT_KEYS)
    assert info["signatures"]["serving_default"] == ["strain", "frame_period_ms"]
    assert info["frame_period_range_ms"] == list(contract.PERIOD_RANGE_MS)


@pytest.mark.parametrize(
    "fmt, want",
    [
        ("saved_model", ("saved_model",)),
        ("onnx", ("onnx",)),
        ("both", ("saved_model", "onnx")),
        ("onnx,saved_model", ("saved_model", "onnx")),
        (None, ("saved_model", "onnx")),
    ],
)
def test_format_names(fmt, want):
    assert export.parse_formats(fmt) == want


@pytest.mark.parametrize("fmt", ["", "savedmodel", "onnx,tflite", ","])
def test_unknown_formats_are_refused(fmt):
    with pytest.raises(export.ExportUsageError, match="unknown format"):
        export.parse_formats(fmt)


def test_saved_model_only_export_still_works(keras_model, tmp_path):
    model, config = keras_model
    path = export.export_model(model, config, str(tmp_path), fmt="saved_model")
    assert layout.is_saved_model(path) and not layout.is_onnx(path)
    # predict's auto runtime falls back to TensorFlow for it.
    assert runtime.load_model(path).runtime == "tensorflow"


def test_without_tf2onnx_the_default_export_is_the_saved_model_alone(
    keras_model, tmp_path, monkeypatch, caplog
):
    model, config = keras_model

    def missing():
        raise export.OnnxMissingError("the ONNX export needs tf2onnx (no module)")

    monkeypatch.setattr(export, "_import_tf2onnx", missing)
    path = export.export_model(model, config, str(tmp_path / "default"))
    assert layout.is_saved_model(path) and not layout.is_onnx(path)
    with open(os.path.join(path, layout.EXPORT_INFO)) as f:
        assert json.load(f)["formats"] == ["saved_model"]
    # Asked for explicitly, a missing converter is an error and leaves nothing.
    with pytest.raises(export.ExportError, match="needs tf2onnx"):
        export.export_model(model, config, str(tmp_path / "asked"), fmt="both")
    assert os.listdir(tmp_path / "asked") == []


def _saved_model_cli() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    found = beside if os.path.exists(beside) else shutil.which("saved_model_cli")
    assert found, "saved_model_cli (installed with tensorflow) not found"
    return found


def test_saved_model_cli_show_lists_both_signatures(serving_run):
    proc = _run([_saved_model_cli(), "show", "--all", "--dir", serving_run.version_dir])
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for name in ("serving_default", "serve_examples"):
        assert f"signature_def['{name}']" in text
    for name in ("strain", "frame_period_ms", "examples"):
        assert f"inputs['{name}']" in text
    for name in contract.OUTPUT_KEYS:
        assert text.count(f"outputs['{name}']") == 2, name
    assert "shape: (-1, 126, -1)" in text  # strain: any batch, any frame count
    assert "shape: (-1, 126)" in text


def test_saved_model_cli_run_on_npy(serving_run, tmp_path):
    x = np.random.default_rng(5).normal(0, 0.05, (2, 126, 33)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", np.full(2, 17.0, np.float32))
    cmd = [
        _saved_model_cli(),
        "run",
        "--dir",
        serving_run.version_dir,
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
    for name in contract.OUTPUT_KEYS:
        assert np.load(tmp_path / "out" / f"{name}.npy").shape == (2, 126)


def test_export_refuses_model_dir_without_checkpoint(serving_run, tmp_path):
    with pytest.raises(export.ExportUsageError, match="config.json not found"):
        export.export(str(tmp_path / "nothing"), str(tmp_path / "e"))
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    config = os.path.join(serving_run.model_dir, "config.json")
    shutil.copy(config, untrained / "config.json")
    with pytest.raises(UsageError, match="no trained checkpoint"):
        export.export(str(untrained), str(tmp_path / "e"))
    assert not os.path.exists(tmp_path / "e" / "1")
    # The command says so in one line, and exits 2 (a usage error).
    cmd = [f"--model_dir={untrained}", f"--export_dir={tmp_path / 'e'}"]
    proc = _run([sys.executable, "-m", "lma_tf.cli.export", *cmd])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "lma-tf export: error:" in proc.stderr
    assert "no trained checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["classification_only", "classical"])
def test_export_refuses_kinds_the_registry_marks_unexportable(
    serving_run, tmp_path, kind
):
    with open(os.path.join(serving_run.model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg["model"]["kind"] = kind
    (tmp_path / "m").mkdir()
    with open(tmp_path / "m" / "config.json", "w") as f:
        json.dump(cfg, f)
    why = "no network to export" if kind == "classical" else "no TOS head"
    with pytest.raises(export.ExportUsageError, match=why) as e:
        export.export(str(tmp_path / "m"), str(tmp_path / "e"))
    assert kind in str(e.value) and "multitask" in str(e.value)


def test_failed_export_leaves_no_version(keras_model, tmp_path, monkeypatch):
    model, config = keras_model

    def broken(model, config, path):
        os.makedirs(path)
        with open(os.path.join(path, layout.SAVED_MODEL_PB), "w") as f:
            f.write("half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_saved_model", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_model(model, config, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_existing_version_is_refused(keras_model, serving_run):
    model, config = keras_model
    base = os.path.dirname(serving_run.version_dir)
    with pytest.raises(export.ExportUsageError, match="exists already"):
        export.export_model(model, config, base, version=1)


@pytest.mark.parametrize("name", ["onnx", "tensorflow"])
def test_out_of_range_inputs_give_the_contract_errors(serving_run, name):
    model = runtime.load_model(serving_run.version_dir, name)
    assert model.runtime == name
    ok = np.zeros((1, 126, 40), np.float32)
    with pytest.raises(contract.InputError, match=contract.TOO_FEW_FRAMES):
        model(np.zeros((1, 126, 10), np.float32), np.full(1, 17.0, np.float32))
    with pytest.raises(contract.InputError, match="frame_period_ms must be"):
        model(ok, np.full(1, -17.0, np.float32))
    nan = ok.copy()
    nan[0, 1, 2] = np.nan
    with pytest.raises(contract.InputError, match="NaN or inf"):
        model(nan, np.full(1, 17.0, np.float32))
    empty = model(np.zeros((0, 126, 40), np.float32), np.zeros(0, np.float32))
    assert all(empty[k].shape == (0, 126) for k in contract.OUTPUT_KEYS)


def test_onnx_runtime_matches_tensorflow(serving_run):
    onnx = runtime.load_model(serving_run.version_dir, "onnx")
    serve = runtime.load_model(serving_run.version_dir, "tensorflow")
    session = ort.InferenceSession(
        os.path.join(serving_run.version_dir, layout.ONNX_FILE),
        providers=["CPUExecutionProvider"],
    )
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted(contract.OUTPUT_KEYS)
    rng = np.random.default_rng(2)
    cases = [
        (20, [17.0, 17.0]),
        (64, [17.0, 17.0]),
        (100, [17.0, 17.0]),
        (45, [17.0, 9.0]),
        (30, [34.0, 34.0]),
    ]
    for frames, periods in cases:
        x = rng.normal(0, 0.05, (2, 126, frames)).astype(np.float32)
        p = np.array(periods, np.float32)
        got, want = onnx(x, p), serve(x, p)
        for key in contract.OUTPUT_KEYS:
            np.testing.assert_allclose(
                got[key], want[key], atol=1e-4, rtol=0, err_msg=f"{key}, {frames}"
            )
        assert np.all(got[contract.TOS_MS] >= constants.TOS_FLOOR_MS)
