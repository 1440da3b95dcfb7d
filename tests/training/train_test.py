"""Training: every experiment, strategies, resume after a crash, NaN stop, CLI."""

import glob
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import testing
from lma_tf.data import pipeline
from lma_tf.errors import LmaError
from lma_tf.models import losses, registry
from lma_tf.models import networks as model
from lma_tf.training import run_dir
from lma_tf.training import strategy as lma_strategy
from lma_tf.training import train_lib as train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "experiments", "[a-z]*.py")))


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    return testing.synthetic_records(str(tmp_path_factory.mktemp("train")), 14, 0)


small = testing.tiny_config


def test_every_experiment_config_loads_and_validates():
    names = {os.path.basename(p)[:-3] for p in EXPERIMENTS}
    assert set(lma_config.EXPERIMENT_KINDS) <= names
    for path in EXPERIMENTS:
        cfg = lma_config.load_experiment(path)
        lma_config.validate_config(cfg)
        assert cfg.name == os.path.basename(path)[:-3]
        # An experiment is a model kind or a variant of one (name = KIND_...).
        assert cfg.name == cfg.model.kind or cfg.name.startswith(cfg.model.kind + "_")
        assert set(cfg.loss.weights.keys()) <= {"tos", "lma"}
    bad = lma_config.base_config()
    bad.model.kind = "nope"
    with pytest.raises(ValueError, match="model.kind"):
        lma_config.validate_config(bad)


@pytest.mark.parametrize("name", lma_config.EXPERIMENT_KINDS)
def test_each_experiment_trains_a_few_steps(records_dir, tmp_path, name):
    cfg = small(
        lma_config.load_experiment(os.path.join(REPO, "experiments", f"{name}.py")),
        records_dir,
    )
    result = train.train(cfg, str(tmp_path), progress=False)
    saved = run_dir.load_config(str(tmp_path))
    assert saved.model.kind == name and saved.model.strain_std > 0
    if name == "classical":
        params = json.loads((tmp_path / run_dir.CLASSICAL_JSON).read_text())
        assert params["threshold"] < 0
        return
    history = result["history"]
    assert len(history) == 2 and all(np.isfinite(h["val_loss"]) for h in history)
    net = run_dir.restore_best(saved, str(tmp_path))
    x = np.zeros((1, 128, 64), np.float32)
    out = net(x, training=False)
    kind = registry.get(name)
    assert ("tos" in out) == kind.has_tos and ("lma" in out) == kind.has_lma
    assert (tmp_path / "history.json").exists()
    assert (tmp_path / "training_curves.png").stat().st_size > 1000


def test_tos_head_starts_at_the_train_mean(records_dir):
    cfg = train.resolve_config(small(lma_config.base_config(), records_dir))
    net = model.build_model(cfg)
    x = np.random.default_rng(0).normal(0, 0.05, (4, 128, 64)).astype(np.float32)
    tos = net(x, training=False)["tos"].numpy()
    # Not stuck in the 0.01-slope region below 17 ms (see docs/model.md).
    assert tos.min() > 17.0
    assert abs(tos.mean() - cfg.model.tos_mean_ms) < 15.0


def test_selection_never_reads_the_test_split(records_dir, tmp_path, monkeypatch):
    seen = []
    real = pipeline.make_dataset

    def spy(config, split, *a, **kw):
        seen.append(split)
        return real(config, split, *a, **kw)

    monkeypatch.setattr(pipeline, "make_dataset", spy)
    train.train(
        small(lma_config.base_config(), records_dir), str(tmp_path), progress=False
    )
    assert "val" in seen and "test" not in seen


def test_mirrored_two_cpu_replicas_match_the_default_strategy(records_dir, tmp_path):
    strategy = lma_strategy.get_strategy("mirrored", num_cpu_replicas=2)
    assert strategy.num_replicas_in_sync == 2
    cfg = small(lma_config.base_config(), records_dir, clipnorm=0.0, epochs=1)
    cfg.data.augment_shift = False  # per-batch seeds differ with the batch split
    cfg.model.dropout = 0.0
    one = train.train(cfg, str(tmp_path / "one"), progress=False)
    two = train.train(cfg, str(tmp_path / "two"), strategy, progress=False)
    # The same global batches, synchronised BatchNorm, losses averaged over
    # the global batch and gradients summed: the same training, to rounding.
    for key in ("loss", "tos_mae_ms", "val_loss"):
        a, b = one["history"][-1][key], two["history"][-1][key]
        assert b == pytest.approx(a, rel=1e-4), key
    # Float32 sums taken in another order (two replicas) drift by about 1e-5
    # (seen under Bazel); a missed synchronisation or a doubled loss would
    # move the weights far more.
    assert two["weights_checksum"] == pytest.approx(one["weights_checksum"], rel=1e-4)


def test_crash_then_rerun_resumes_from_the_backup(records_dir, tmp_path):
    cfg = small(
        lma_config.base_config(),
        records_dir,
        epochs=3,
        backup_every_steps=2,
        deterministic_ops=True,
    )
    cfg.data.mixup_alpha = 0.2
    reference = train.train(cfg, str(tmp_path / "ref"), progress=False)

    def crash(step):
        if step == 5:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, str(tmp_path / "m"), progress=False, fault_hook=crash)
    backups = glob.glob(str(tmp_path / "m" / "backup" / "ckpt-*.index"))
    assert [os.path.basename(b) for b in backups] == ["ckpt-5.index"]

    steps = []
    result = train.train(
        cfg, str(tmp_path / "m"), progress=False, fault_hook=steps.append
    )
    # Resumed after global step 5 (epoch 1, step 2), not from scratch...
    assert steps[0] == 6 and steps[-1] == 9
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    # ...and on exactly the batches the uninterrupted run saw.
    assert result["weights_checksum"] == pytest.approx(
        reference["weights_checksum"], rel=1e-6
    )


def test_resume_with_other_records_is_refused(records_dir, tmp_path):
    cfg = small(lma_config.base_config(), records_dir, epochs=1, backup_every_steps=1)

    def crash(step):
        raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, str(tmp_path), progress=False, fault_hook=crash)
    cfg.data.num_frames = 32
    with pytest.raises(run_dir.RunDirConflict, match=r"data.num_frames \(64 -> 32\)"):
        train.train(cfg, str(tmp_path), progress=False)


def test_early_stopping_holds_across_reruns(records_dir, tmp_path):
    cfg = small(lma_config.base_config(), records_dir, epochs=6)
    cfg.train.early_stopping_patience = 1
    cfg.train.learning_rate = 1e-9  # nothing improves after the first epoch
    cfg.train.schedule = "constant"
    cfg.model.dropout = 0.0
    first = train.train(cfg, str(tmp_path), progress=False)
    assert first["stopped"].startswith("early stopping")
    epochs = len(first["history"])
    assert epochs < 6
    again = train.train(cfg, str(tmp_path), progress=False)
    assert "earlier run" in again["stopped"] and len(again["history"]) == epochs


def test_nan_loss_stops_at_once_with_a_clear_message(
    records_dir, tmp_path, monkeypatch
):
    real = losses.per_example_loss

    def poisoned(*a, **kw):
        total, parts = real(*a, **kw)
        return total * np.nan, parts

    monkeypatch.setattr(losses, "per_example_loss", poisoned)
    with pytest.raises(train.TrainingError, match="loss became nan at epoch 0, step 0"):
        train.train(
            small(lma_config.base_config(), records_dir), str(tmp_path), progress=False
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_processes_end_with_identical_weights(records_dir, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": i}}
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": REPO,
        }
        args = [
            sys.executable, "-m", "lma_tf.cli.train",
            f"--config={REPO}/experiments/multitask.py",
            f"--records_dir={records_dir}",
            f"--model_dir={tmp_path / 'm'}",
            "--strategy=multi_worker",
            "--config.train.batch_size=8",
            "--config.train.epochs=2",
            "--config.train.steps_per_epoch=3",
            "--config.model.trunk_channels=(8, 16)",
            "--config.model.frame_pools=2",
            "--config.model.head_channels=(16,)",
            "--config.model.head_units=(16,)",
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                args,
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    sums = [
        float(line.split(":")[1]) for out, _ in outs for line in out.splitlines()
        if line.startswith("[train] weights checksum")
    ]  # fmt: skip
    assert len(sums) == 2 and sums[0] == sums[1]
    assert (tmp_path / "m" / "best").exists()
    assert not (tmp_path / "m" / ".workers" / "worker_1").exists()


def test_strategy_helper_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown strategy"):
        lma_strategy.get_strategy("nccl")
    assert lma_strategy.is_chief(tf.distribute.get_strategy())


def test_mixed_precision_trains_and_restores_the_policy(records_dir, tmp_path):
    import keras

    cfg = small(lma_config.base_config(), records_dir, mixed_precision=True, epochs=1)
    result = train.train(cfg, str(tmp_path), progress=False)
    assert np.isfinite(result["history"][-1]["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"


def test_sigkilled_run_resumes_when_restarted_with_the_same_command(
    records_dir, tmp_path
):
    import signal
    import time

    model_dir = tmp_path / "m"
    cmd = [
        sys.executable, "-m", "lma_tf.cli.train",
        f"--config={REPO}/experiments/multitask.py",
        f"--records_dir={records_dir}",
        f"--model_dir={model_dir}",
        "--config.train.batch_size=8",
        "--config.train.epochs=30",
        "--config.train.steps_per_epoch=3",
        "--config.train.backup_every_steps=1",
        "--config.train.early_stopping_patience=0",
        "--config.model.trunk_channels=(8, 16)",
        "--config.model.frame_pools=2",
        "--config.model.head_channels=(16,)",
        "--config.model.head_units=(16,)",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def backup_steps() -> list[int]:
        names = glob.glob(str(model_dir / "backup" / "ckpt-*.index"))
        return [int(os.path.basename(p)[5:-6]) for p in names]

    # Kept backups: one, renamed every step; wait until one is past step 5.
    deadline = time.time() + 240
    while max(backup_steps(), default=0) < 5:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no cleanup, no final save
    proc.wait()
    killed_at = max(backup_steps())
    assert 5 <= killed_at < 90
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[train] resumed from" in again.stderr
    where = again.stderr.split("at epoch ")[1]
    epoch, step = int(where.split(",")[0]), int(where.split("step ")[1].split()[0])
    assert epoch * 3 + step == killed_at  # resumed at the backup, not from 0
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(30))


def test_a_train_split_smaller_than_a_batch_suggests_a_batch_size(
    records_dir, tmp_path
):
    cfg = small(lma_config.base_config(), records_dir, batch_size=100_000)
    num_train = pipeline.count_examples(cfg, "train")
    hint = f"--config.train.batch_size={num_train} (or smaller)"
    with pytest.raises(train.TrainingError, match=re.escape(hint)):
        train.train(cfg, str(tmp_path), progress=False)
    assert issubclass(train.TrainingError, LmaError)
    assert train.TrainingError.exit_code == 1


def _cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "lma_tf.cli.train", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)


def test_cli_unknown_experiment_is_one_line_listing_the_known_ones(tmp_path):
    out = _cli(["--config=multitsk", "--config.train.epochs=3"], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lma-tf train: error: ")
    assert "'multitsk'" in lines[0]
    assert all(name in lines[0] for name in lma_config.EXPERIMENT_KINDS)
    assert not (tmp_path / "trained_networks").exists()


def test_cli_takes_an_experiment_name_and_defaults_the_model_dir(records_dir, tmp_path):
    out = _cli(["--config=classical", f"--records_dir={records_dir}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "trained_networks" / "classical"
    params = json.loads((run / run_dir.CLASSICAL_JSON).read_text())
    prefix = "[train] classical parameters: "
    printed = [ln for ln in out.stdout.splitlines() if ln.startswith(prefix)]
    assert [json.loads(ln[len(prefix) :]) for ln in printed] == [params]
    assert run_dir.load_config(str(run)).data.records_dir == records_dir
