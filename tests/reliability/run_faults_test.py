"""Faults in training and serving runs, each with its exact outcome.

Training: a model dir holds one run (another config is refused, naming the
fields; --overwrite starts over), and a NaN stop leaves no backup that
resumes into NaN. Serving: a truncated SavedModel or ONNX file is one clear
error at every entry point, never a raw IndexError.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import testing
from lma_tf.errors import LmaError, UsageError
from lma_tf.models import losses
from lma_tf.serving import layout, predict, runtime
from lma_tf.training import loop, run_dir
from lma_tf.training import train_lib as train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    return testing.synthetic_records(str(tmp_path_factory.mktemp("faults")), 14, 0)


def _cfg(records_dir, **train_overrides):
    overrides = {"epochs": 1, "backup_every_steps": 2, **train_overrides}
    return testing.tiny_config(lma_config.base_config(), records_dir, **overrides)


def _epochs(model_dir) -> list[int]:
    with open(os.path.join(model_dir, run_dir.HISTORY_JSON)) as f:
        return [row["epoch"] for row in json.load(f)]


# --- a model dir is one run ------------------------------------------------


def test_a_changed_train_setting_is_refused_then_overwritten(records_dir, tmp_path):
    model_dir = str(tmp_path / "m")
    train.train(_cfg(records_dir), model_dir, progress=False)
    before = open(os.path.join(model_dir, run_dir.HISTORY_JSON)).read()
    longer = _cfg(records_dir, epochs=2, learning_rate=1e-4)
    with pytest.raises(run_dir.RunDirConflict) as e:
        train.train(longer, model_dir, progress=False)
    message = str(e.value)
    assert "train.epochs (1 -> 2)" in message
    assert "train.learning_rate (0.001 -> 0.0001)" in message
    assert "--overwrite" in message and "\n" not in message
    assert isinstance(e.value, UsageError) and e.value.exit_code == 2
    # Nothing was touched: the old run is still the whole run.
    assert open(os.path.join(model_dir, run_dir.HISTORY_JSON)).read() == before
    result = train.train(longer, model_dir, progress=False, overwrite=True)
    assert result["stopped"] == "completed"
    assert _epochs(model_dir) == [0, 1]  # this run only, not 0 + 0, 1
    assert run_dir.load_config(model_dir).train.epochs == 2


def test_harmless_fields_may_change_on_resume(records_dir, tmp_path):
    model_dir = str(tmp_path / "m")
    first = train.train(_cfg(records_dir), model_dir, progress=False)
    cfg = _cfg(records_dir, backup_every_steps=7, log_every_steps=3)
    cfg.data.cache = False
    again = train.train(cfg, model_dir, progress=False)
    assert again["stopped"] == "completed"
    assert again["weights_checksum"] == first["weights_checksum"]
    assert _epochs(model_dir) == [0]


def test_runs_saved_before_the_view_mirror_and_onset_keys_resume():
    # A config.json written before these keys existed: the keys are missing.
    new = lma_config.base_config().to_dict()
    saved = json.loads(json.dumps(new, default=str))
    del saved["data"]["augment_mirror"]
    del saved["model"]["test_time_shifts"], saved["model"]["test_time_mirror"]
    del saved["model"]["tos_output"], saved["model"]["onset_channels"]
    assert run_dir.config_differences(saved, new) == []
    # Views only change inference; mirroring changes training.
    views = dict(new, model=dict(new["model"], test_time_shifts=1))
    assert run_dir.config_differences(saved, views) == []
    mirrored = dict(new, data=dict(new["data"], augment_mirror=True))
    assert run_dir.config_differences(saved, mirrored) == [
        "data.augment_mirror (False -> True)"
    ]
    onset = dict(new, model=dict(new["model"], tos_output="onset"))
    assert run_dir.config_differences(saved, onset) == [
        "model.tos_output ('dense' -> 'onset')"
    ]


def test_history_without_backup_is_refused_unless_overwrite(records_dir, tmp_path):
    model_dir = str(tmp_path / "m")
    cfg = _cfg(records_dir)
    train.train(cfg, model_dir, progress=False)
    shutil.rmtree(os.path.join(model_dir, run_dir.BACKUP_DIR))
    with pytest.raises(run_dir.RunDirConflict, match="cannot be resumed"):
        train.train(cfg, model_dir, progress=False)
    (tmp_path / "m" / "notes.txt").write_text("mine")  # not the run's: kept
    train.train(cfg, model_dir, progress=False, overwrite=True)
    assert _epochs(model_dir) == [0]
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_the_command_refuses_in_one_line_and_overwrites_on_request(
    records_dir, tmp_path
):
    model_dir = tmp_path / "m"
    common = [
        f"--records_dir={records_dir}", f"--model_dir={model_dir}",
        "--config.train.batch_size=8", "--config.train.steps_per_epoch=2",
        "--config.model.trunk_channels=(8, 16)", "--config.model.frame_pools=2",
        "--config.model.head_channels=(16,)", "--config.model.head_units=(16,)",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}

    def run(*extra):
        cmd = [sys.executable, "-m", "lma_tf.cli.train", *common, *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True)

    assert run("--config.train.epochs=1").returncode == 0
    refused = run("--config.train.epochs=2")
    assert refused.returncode == 2, refused.stderr[-2000:]
    errors = [ln for ln in refused.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("lma-tf train: error:")
    assert "train.epochs (1 -> 2)" in errors[0] and "--overwrite" in errors[0]
    assert "completed" not in refused.stdout
    again = run("--config.train.epochs=2", "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[train] completed" in again.stdout
    assert _epochs(model_dir) == [0, 1]


# --- a NaN stop -------------------------------------------------------------


@pytest.fixture
def poison(monkeypatch):
    """A switch that makes the training loss NaN from the next step on."""
    flag = tf.Variable(0.0, trainable=False)
    real = losses.per_example_loss

    def poisoned(*a, **kw):
        total, parts = real(*a, **kw)
        return total + tf.where(flag > 0, np.nan, 0.0), parts

    monkeypatch.setattr(losses, "per_example_loss", poisoned)
    return flag


def test_a_nan_stop_leaves_no_backup_and_says_how_to_restart(
    records_dir, tmp_path, poison
):
    model_dir = str(tmp_path / "m")
    cfg = _cfg(records_dir, epochs=2, steps_per_epoch=3)

    def blow_up(step):
        if step == 4:  # global step 5 (epoch 1, step 1) gets a NaN loss
            poison.assign(1.0)

    with pytest.raises(loop.NonFiniteError) as e:
        train.train(cfg, model_dir, progress=False, fault_hook=blow_up)
    message = str(e.value)
    assert message.startswith("loss became nan at epoch 1, step 1 (global step 5)")
    assert "the backup was removed" in message
    assert "--overwrite" in message
    assert "lower --config.train.learning_rate (now 0.001)" in message
    assert not run_dir.has_backup(model_dir)  # nothing resumes into the NaN
    assert _epochs(model_dir) == [0]  # the finished epoch stays on record
    assert tf.train.latest_checkpoint(os.path.join(model_dir, run_dir.BEST_DIR))
    poison.assign(0.0)
    # The same command is refused (no backup), and so is a lower learning
    # rate without --overwrite (another run); with it, it trains from scratch.
    with pytest.raises(run_dir.RunDirConflict, match="cannot be resumed"):
        train.train(cfg, model_dir, progress=False)
    lower = _cfg(records_dir, epochs=2, steps_per_epoch=3, learning_rate=1e-4)
    with pytest.raises(run_dir.RunDirConflict, match="train.learning_rate"):
        train.train(lower, model_dir, progress=False)
    steps = []
    result = train.train(
        lower, model_dir, progress=False, overwrite=True, fault_hook=steps.append
    )
    assert steps[0] == 1 and result["stopped"] == "completed"
    assert _epochs(model_dir) == [0, 1]


def test_a_backup_is_never_written_with_non_finite_weights(
    records_dir, tmp_path, monkeypatch
):
    """A NaN optimizer slot keeps the loss finite for a step, but not the backup."""
    model_dir = str(tmp_path / "m")
    cfg = _cfg(records_dir, epochs=1, steps_per_epoch=3)
    states = []
    real_build = loop.State.build

    def build(*a, **kw):
        states.append(real_build(*a, **kw))
        return states[-1]

    def spoil_a_slot(step):
        if step == 1:  # the backup due after global step 2 must not be written
            slot = next(
                v for v in states[0].optimizer.variables if "momentum" in v.path
            )
            slot.assign(np.full(slot.shape, np.nan, np.float32))

    monkeypatch.setattr(loop.State, "build", build)
    with pytest.raises(loop.NonFiniteError, match="weights became NaN or inf") as e:
        train.train(cfg, model_dir, progress=False, fault_hook=spoil_a_slot)
    assert "at global step 2" in str(e.value)
    assert not glob.glob(os.path.join(model_dir, run_dir.BACKUP_DIR, "ckpt-*"))


# --- damaged exports --------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny export (SavedModel + ONNX) and one patient's raw .npz files."""
    root = tmp_path_factory.mktemp("exports")
    version_dir = testing.tiny_export(str(root / "export"))
    testing.write_cohort_npz(str(root / "in"), 1, 3, seed=4)
    return version_dir, str(root / "in")


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _broken_copy(version_dir: str, dest) -> str:
    shutil.copytree(version_dir, dest)
    (data,) = glob.glob(os.path.join(dest, "variables", "variables.data-*"))
    _truncate(data)
    _truncate(os.path.join(dest, layout.ONNX_FILE))
    return str(dest)


@pytest.mark.parametrize(
    "name, what", [("tensorflow", "SavedModel"), ("onnx", "ONNX model")]
)
def test_a_truncated_export_is_one_clear_error(exported, tmp_path, name, what):
    version_dir, inputs = exported
    base = tmp_path / "export"
    broken = _broken_copy(version_dir, base / "1")
    for path in (broken, str(base)):  # the version, or the base dir listing it
        with pytest.raises(runtime.ModelLoadError) as e:
            predict.predict(path, [inputs], str(tmp_path / "p.csv"), runtime=name)
        message = str(e.value)
        assert message.startswith(f"cannot load the {what} {broken}")
        assert "damaged or incomplete; export it again" in message
        assert "\n" not in message and not isinstance(e.value, UsageError)
    assert not os.path.exists(tmp_path / "p.csv")


def test_a_newer_good_version_is_used_past_a_broken_one(exported, tmp_path):
    version_dir, inputs = exported
    base = tmp_path / "export"
    _broken_copy(version_dir, base / "1")
    shutil.copytree(version_dir, base / "2")
    for name in ("onnx", "tensorflow"):
        result = predict.predict(
            str(base), [inputs], str(tmp_path / f"{name}.csv"), runtime=name
        )
        assert result["model"] == str(base / "2") and result["num_slices"] == 3


def test_the_command_reports_a_truncated_onnx_file_in_one_line(exported, tmp_path):
    version_dir, inputs = exported
    broken = _broken_copy(version_dir, tmp_path / "1")
    out = tmp_path / "p.csv"
    cmd = [
        sys.executable, "-m", "lma_tf.cli.predict", f"--saved_model={broken}",
        f"--input={inputs}", f"--output={out}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1
    want = f"lma-tf predict: error: cannot load the ONNX model {broken}"
    assert errors[0].startswith(want)
    assert "Traceback" not in proc.stderr and not out.exists()
    assert issubclass(runtime.ModelLoadError, LmaError)
