"""Training: `train` an experiment into a run directory, under any strategy.

  lma-tf train --config=multitask --records_dir=D --model_dir=M
      [--strategy=default|mirrored|multi_worker|tpu] [--config.train.epochs=N ...]

A network is trained by the one custom loop of `lma_tf.training.loop`, for
every tf.distribute strategy (default, mirrored, multi-worker, TPU). Why a
custom loop rather than `model.fit`: Keras 3's fit fails under
MultiWorkerMirroredStrategy (keras-team/keras#20585), and two loops (fit for
some strategies, custom for others) would drift apart. A model kind without
a network (the classical detector) is fitted by `classical_fit` instead.
Everything is written to the run directory through `run_dir`
(docs/model.md, "Training").
"""

from __future__ import annotations

import os
from collections.abc import Callable

import keras
import ml_collections
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf.data import manifest as manifest_lib
from lma_tf.data import pipeline
from lma_tf.errors import UsageError
from lma_tf.models import registry
from lma_tf.training import classical_fit, run_dir
from lma_tf.training import strategy as lma_strategy
from lma_tf.training.loop import Trainer, TrainingError
from lma_tf.training.steps import build_train_step, make_optimizer

__all__ = [
    "TrainingError",
    "build_train_step",
    "make_optimizer",
    "resolve_config",
    "train",
]


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates a copy of `config` and fills its train-split statistics.

    The statistics come from the records' manifest unless set, and are saved
    with the config so that serving normalises inputs exactly as training did.

    Raises:
      UsageError: an invalid config.
    """
    config = ml_collections.ConfigDict(config.to_dict())
    try:
        lma_config.validate_config(config)
    except ValueError as e:  # a config field the user set: one line, exit 2
        raise UsageError(str(e)) from None
    norm = manifest_lib.load_manifest(config.data.records_dir)["normalization"]
    if not config.model.strain_std:
        config.model.strain_mean = float(norm["strain_mean"] or 0.0)
        config.model.strain_std = float(norm["strain_std"] or 1.0)
    if not config.model.tos_mean_ms:
        config.model.tos_mean_ms = float(norm["tos_mean_ms"] or 40.0)
    return config


def train(
    config: ml_collections.ConfigDict,
    model_dir: str,
    strategy: tf.distribute.Strategy | None = None,
    *,
    progress: bool = True,
    fault_hook: Callable[[int], None] | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Trains `config`'s experiment into `model_dir`; resumes from a backup.

    Args:
      config: experiment config (see `lma_tf.config`); `data.records_dir` set.
      model_dir: output directory; rerunning the same command resumes.
      strategy: a tf.distribute strategy (default: the default strategy).
      progress: show a Keras progress bar per epoch (chief only).
      fault_hook: called with the global step after every step (tests use it
        to simulate a crash).
      overwrite: remove the run already in `model_dir` and start over;
        otherwise it is resumed only with the same config
        (`run_dir.check_reusable`).
      log: where the status lines go (resumption, per-epoch validation
        metrics); default absl logging at INFO.

    Returns:
      A network's {"history": per-epoch train and validation metrics,
      "stopped": why it ended, "weights_checksum": for replica agreement};
      for a kind without a network, {"classical_params": the fitted ones}.

    Raises:
      run_dir.RunDirConflict: `model_dir` holds a run of another config, or
        one that cannot be resumed, and `overwrite` is False.
      TrainingError: an empty split or a NaN loss.
    """
    strategy = strategy or tf.distribute.get_strategy()
    config = resolve_config(config)
    kind = registry.get(config.model.kind)
    chief = lma_strategy.is_chief(strategy)
    write_dir = _write_dir(model_dir, strategy)
    if overwrite:
        # Each worker clears what it writes: the chief the run's files in
        # model_dir, the others their scratch dirs.
        run_dir.clear_run(write_dir)
    else:
        run_dir.check_reusable(config, model_dir)
    if pipeline.count_examples(config, "val") == 0:
        need = "model selection" if kind.is_network else "the threshold's fit"
        raise TrainingError(
            f"{config.data.records_dir}: the val split is empty; {need} needs "
            "one (rerun `lma-tf convert` with another --split or more subjects)"
        )
    os.makedirs(write_dir, exist_ok=True)
    if chief:
        run_dir.save_config(config, model_dir)
    if not kind.is_network:
        return classical_fit.fit_classical(config, model_dir)
    keras.utils.set_random_seed(int(config.seed))
    if config.train.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    if config.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        trainer = Trainer(
            config, model_dir, write_dir, strategy, progress=progress, log=log
        )
        return trainer.run(fault_hook)
    finally:
        # The policy is process-global: leave it as it was for the caller.
        keras.mixed_precision.set_global_policy(previous_policy)


def _write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Chief writes model_dir; other workers a private scratch dir (then deleted)."""
    if lma_strategy.is_chief(strategy):
        return model_dir
    task_id = strategy.cluster_resolver.task_id
    return os.path.join(model_dir, ".workers", f"worker_{task_id}")
