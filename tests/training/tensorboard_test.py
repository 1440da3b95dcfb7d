"""TensorBoard logs: per-step scalars (loss, learning rate, examples/s), per epoch."""

from __future__ import annotations

import glob
import os

import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import testing
from lma_tf.training import train_lib


def _scalars(folder: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                value = (
                    float(tf.make_ndarray(v.tensor))
                    if v.HasField("tensor")
                    else v.simple_value
                )
                out.setdefault(v.tag, []).append((event.step, value))
    return out


def test_steps_and_epochs_are_logged(tmp_path):
    records_dir = testing.synthetic_records(str(tmp_path), 14, 0)
    cfg = testing.tiny_config(
        lma_config.load_experiment("multitask"), records_dir, log_every_steps=1
    )
    model_dir = str(tmp_path / "m")
    train_lib.train(cfg, model_dir, progress=False)
    train = _scalars(os.path.join(model_dir, "logs", "train"))
    steps = cfg.train.epochs * cfg.train.steps_per_epoch
    for tag in ("step/loss", "step/learning_rate", "step/examples_per_second"):
        assert [s for s, _ in train[tag]] == list(range(1, steps + 1)), tag
    assert all(v > 0 for _, v in train["step/examples_per_second"])
    assert len(train["loss"]) == cfg.train.epochs  # per epoch as before
    val = _scalars(os.path.join(model_dir, "logs", "val"))
    assert len(val["loss"]) == cfg.train.epochs
