"""Fused steps (`train.steps_per_execution`) and XLA (`train.jit_compile`)."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import testing
from lma_tf.models import registry
from lma_tf.training import steps as steps_lib
from lma_tf.training import strategy as lma_strategy
from lma_tf.training import train_lib as train


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    return testing.synthetic_records(str(tmp_path_factory.mktemp("fusion")), 14, 0)


def _cfg(records_dir, **train_overrides):
    cfg = testing.tiny_config(
        lma_config.base_config(), records_dir, deterministic_ops=True, **train_overrides
    )
    cfg.model.dropout = 0.0
    return cfg


def test_fused_steps_train_the_same_weights_as_single_steps(records_dir, tmp_path):
    # 5 steps an epoch in chunks of 3, cut at the backup every 4 steps:
    # chunks of 3, 1 (backup), 1 (epoch end), so every cut is exercised.
    kw = {"steps_per_epoch": 5, "backup_every_steps": 4, "epochs": 2}
    one = train.train(_cfg(records_dir, **kw), str(tmp_path / "k1"), progress=False)
    fused = train.train(
        _cfg(records_dir, steps_per_execution=3, **kw),
        str(tmp_path / "k3"),
        progress=False,
    )
    for a, b in zip(one["history"], fused["history"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    assert fused["weights_checksum"] == pytest.approx(one["weights_checksum"], rel=1e-6)
    backups = glob.glob(str(tmp_path / "k3" / "backup" / "ckpt-*.index"))
    assert [os.path.basename(b) for b in backups] == ["ckpt-10.index"]


def test_fused_run_resumes_mid_epoch_on_the_same_batches(records_dir, tmp_path):
    kw = {"steps_per_epoch": 5, "backup_every_steps": 4, "epochs": 2}
    reference = train.train(
        _cfg(records_dir, **kw), str(tmp_path / "ref"), progress=False
    )
    cfg = _cfg(records_dir, steps_per_execution=3, **kw)
    seen = []

    def crash(step):
        seen.append(step)
        if step == 9:  # epoch 1, step 4: just after the mid-epoch backup
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, str(tmp_path / "m"), progress=False, fault_hook=crash)
    # Called after each chunk: 3 + 1 + 1 steps an epoch.
    assert seen == [3, 4, 5, 8, 9]
    backups = glob.glob(str(tmp_path / "m" / "backup" / "ckpt-*.index"))
    assert [os.path.basename(b) for b in backups] == ["ckpt-9.index"]
    steps = []
    result = train.train(
        cfg, str(tmp_path / "m"), progress=False, fault_hook=steps.append
    )
    assert steps == [10]  # the last step of epoch 1 only
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert result["weights_checksum"] == pytest.approx(
        reference["weights_checksum"], rel=1e-6
    )


def _fixed_batch_step(cfg, strategy):
    """A train step on one fixed batch, repeated; and its model."""
    cfg = train.resolve_config(cfg)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        net = registry.get(cfg.model.kind).build(cfg)
        opt = steps_lib.make_optimizer(cfg, 100)
        opt.build(net.trainable_variables)
    b = int(cfg.train.batch_size)
    rng = np.random.default_rng(0)
    feats = {"strain": rng.normal(0, 0.05, (b, 128, 64)).astype(np.float32)}
    labels = {
        "tos": rng.uniform(20, 80, (b, 128)).astype(np.float32),
        "lma": (rng.uniform(size=(b, 128)) > 0.5).astype(np.float32),
    }
    weights = {
        "tos": np.ones((b, 128), np.float32),
        "lma": np.ones((b, 128), np.float32),
    }
    ds = tf.data.Dataset.from_tensors((feats, labels, weights)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(ds))
    step = steps_lib.build_train_step(strategy, net, opt, cfg, b)
    return step, iterator


@pytest.fixture
def nondeterministic_ops():
    """XLA has no deterministic max-pool gradient: lift what earlier tests set."""
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    yield
    if was:
        tf_config.enable_op_determinism()


@pytest.mark.parametrize("replicas", [1, 2])
def test_jit_compiled_steps_train(records_dir, replicas, nondeterministic_ops):
    cfg = _cfg(records_dir, jit_compile=True, steps_per_execution=4)
    cfg.train.deterministic_ops = False
    cfg.train.learning_rate = 1e-2
    cfg.train.schedule = "constant"
    strategy = (
        lma_strategy.get_strategy("mirrored", num_cpu_replicas=2)
        if replicas == 2
        else tf.distribute.get_strategy()
    )
    step, iterator = _fixed_batch_step(cfg, strategy)
    losses = [float(step(iterator, 4)["loss"]) for _ in range(5)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_mirrored_fused_steps_match_single_steps(records_dir, tmp_path):
    strategy = lma_strategy.get_strategy("mirrored", num_cpu_replicas=2)
    cfg = _cfg(records_dir, clipnorm=0.0, epochs=1)
    cfg.data.augment_shift = False
    one = train.train(cfg, str(tmp_path / "one"), strategy, progress=False)
    cfg.train.steps_per_execution = 2
    two = train.train(cfg, str(tmp_path / "two"), strategy, progress=False)
    assert two["weights_checksum"] == pytest.approx(one["weights_checksum"], rel=1e-6)


@pytest.mark.parametrize("value", [0, -1])
def test_steps_per_execution_must_be_a_positive_int(value):
    cfg = lma_config.base_config()
    cfg.train.steps_per_execution = value
    with pytest.raises(ValueError, match="steps_per_execution"):
        lma_config.validate_config(cfg)


def test_xla_with_deterministic_ops_is_refused():
    cfg = lma_config.base_config()
    cfg.train.jit_compile = True
    cfg.train.deterministic_ops = True
    with pytest.raises(ValueError, match="jit_compile and train.deterministic_ops"):
        lma_config.validate_config(cfg)
