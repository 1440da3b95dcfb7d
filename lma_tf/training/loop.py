"""The training loop: one custom loop for every tf.distribute strategy.

`Trainer.run` trains epoch after epoch of distributed steps (`steps`),
scores the whole val split after each, keeps the best weights in `best/`,
stops early when the selection metric stops improving, and writes a backup
every `train.backup_every_steps` steps and at the end of every epoch, which
a rerun of the same command resumes from, at the same epoch, step, data
order and random state (docs/model.md, "Fault tolerance").
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from lma_tf import config as lma_config
from lma_tf.data import pipeline
from lma_tf.errors import LmaError, UsageError
from lma_tf.models import registry
from lma_tf.training import run_dir, steps
from lma_tf.training import strategy as lma_strategy


class TrainingError(LmaError):
    """Training cannot go on (e.g. the loss became NaN); exit status 1."""


class TrainSplitError(TrainingError, UsageError):
    """The train split is empty or smaller than a batch: a usage fix (exit 2)."""


class NonFiniteError(TrainingError):
    """The loss or the weights became NaN or inf."""


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
    """`train.steps_per_epoch`, or one pass over the train split when <= 0.

    Raises:
      TrainingError: the train split holds less than one global batch.
    """
    batch = int(config.train.batch_size)
    num_train = pipeline.count_examples(config, "train")
    if num_train == 0:
        raise TrainSplitError(
            f"{config.data.records_dir}: the train split is empty (rerun "
            "`lma-tf convert` with another --split or more subjects)"
        )
    if num_train < batch:
        raise TrainSplitError(
            f"train split has {num_train} slices, less than a batch of {batch}; "
            f"use --config.train.batch_size={num_train} (or smaller)"
        )
    configured = int(config.train.steps_per_epoch)
    return configured if configured > 0 else num_train // batch


@dataclasses.dataclass
class State:
    """What a backup holds (model, optimizer, loop counters) and its managers.

    `best` is the best selection score so far, as a value to minimise;
    `wait` counts the epochs since it last improved.
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    epoch: tf.Variable
    step: tf.Variable
    best: tf.Variable
    wait: tf.Variable
    backup: tf.train.CheckpointManager
    best_weights: tf.train.CheckpointManager

    @classmethod
    def build(
        cls,
        config: ml_collections.ConfigDict,
        strategy: tf.distribute.Strategy,
        write_dir: str,
        num_steps: int,
    ) -> State:
        """A fresh model, optimizer and counters, made in `strategy.scope()`."""
        with strategy.scope():
            model = registry.get(config.model.kind).build(config)
            optimizer = steps.make_optimizer(config, num_steps)
            optimizer.build(model.trainable_variables)
            counters = {
                "epoch": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),
                "step": tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),
                "best": tf.Variable(
                    math.inf, dtype=tf.float64, trainable=False, name="best"
                ),
                "wait": tf.Variable(0, dtype=tf.int64, trainable=False, name="wait"),
            }
        backup = tf.train.Checkpoint(
            model=model, rng=_seed_states(model), optimizer=optimizer, **counters
        )
        return cls(
            model=model,
            optimizer=optimizer,
            backup=tf.train.CheckpointManager(
                backup, run_dir.path(write_dir, run_dir.BACKUP_DIR), 1
            ),
            best_weights=tf.train.CheckpointManager(
                tf.train.Checkpoint(model=model),
                run_dir.path(write_dir, run_dir.BEST_DIR),
                1,
            ),
            **counters,
        )

    def resume(self) -> str:
        """Restores the latest backup, if any; its path ("" when none)."""
        latest = self.backup.latest_checkpoint
        if latest:
            self.backup.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest or ""

    @property
    def global_step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def save_backup(self) -> None:
        """Writes a backup, after checking that the weights are finite.

        A backup is what a rerun resumes: one holding NaN or inf would only
        fail again, so it is never written.

        Raises:
          TrainingError: a weight or optimizer slot is NaN or inf.
        """
        bad = _non_finite(self.model.weights + list(self.optimizer.variables))
        if bad:
            raise NonFiniteError(
                f"weights became NaN or inf ({bad}) at global step {self.global_step}"
            )
        self.backup.save(checkpoint_number=self.global_step)


class Trainer:
    """Trains one network experiment into `model_dir` under `strategy`.

    The config must be resolved (`train_lib.resolve_config`) and the model
    directory prepared; `train_lib.train` does both.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        model_dir: str,
        write_dir: str,
        strategy: tf.distribute.Strategy,
        *,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        # Where the status lines go: the command prints them, the library logs.
        self.log = log or logging.info
        self.model_dir = model_dir
        self.write_dir = write_dir
        self.strategy = strategy
        self.chief = lma_strategy.is_chief(strategy)
        self.progress = progress and self.chief
        self.global_batch = int(config.train.batch_size)
        self.num_steps = steps_per_epoch(config)
        self.state = State.build(config, strategy, write_dir, self.num_steps)
        self.history = run_dir.load_history(model_dir)
        resumed = self.state.resume()
        if resumed:
            epoch, step = int(self.state.epoch.numpy()), int(self.state.step.numpy())
            self.log(f"[train] resumed from {resumed} at epoch {epoch}, step {step}")
            self.history = self.history[:epoch]
        self.val_ds = pipeline.make_dataset(config, "val", training=False)
        self.train_step = steps.build_train_step(
            strategy, self.state.model, self.state.optimizer, config, self.global_batch
        )
        self.eval_step = steps.build_eval_step(self.state.model, config)
        logs = run_dir.path(write_dir, run_dir.LOGS_DIR)
        self.writers = {
            part: tf.summary.create_file_writer(os.path.join(logs, part))
            for part in ("train", "val")
        }

    def run(self, fault_hook: Callable[[int], None] | None = None) -> dict:
        """Trains the remaining epochs; returns history, why it stopped, checksum.

        Args:
          fault_hook: called with the global step after every step (every
            chunk of `train.steps_per_execution` steps).
        """
        try:
            stopped = self._epochs(fault_hook)
        except NonFiniteError as e:
            raise self._stop_non_finite(e) from None
        if not self.chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        else:
            _plot_history(self.history, self.model_dir)
        return {
            "history": self.history,
            "stopped": stopped,
            "weights_checksum": _checksum(self.state.model),
        }

    def _epochs(self, fault_hook: Callable[[int], None] | None) -> str:
        """Trains the remaining epochs; returns why it stopped."""
        epochs = int(self.config.train.epochs)
        first_epoch = int(self.state.epoch.numpy())
        stopped = "completed"
        if self._patience_spent():
            stopped = f"early stopping at epoch {first_epoch} (in an earlier run)"
            first_epoch = epochs
        for epoch in range(first_epoch, epochs):
            metrics = self.train_epoch(epoch, fault_hook)
            metrics.update(self.validate())
            metrics["epoch"] = epoch
            metrics["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.state.optimizer.learning_rate)
            )
            self.history.append(metrics)
            self._log_epoch(metrics, epoch)
            self._select(metrics, epoch)
            self._end_epoch(epoch)
            if self._patience_spent():
                stopped = f"early stopping at epoch {epoch + 1}"
                break
        return stopped

    def _stop_non_finite(self, e: NonFiniteError) -> NonFiniteError:
        """Removes the backup of a run that blew up; the error says what next.

        Resuming any backup of it with the same config replays the same
        steps into the same NaN, and another learning rate is another run,
        so the backup goes (the scratch dir, on a non-chief worker); best/
        and history.json stay for inspection.
        """
        if self.chief:
            run_dir.remove_backup(self.write_dir)
        else:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        best = self.state.best_weights.latest_checkpoint
        kept = f"; best/ keeps the weights of {best}" if best else ""
        lr = float(self.config.train.learning_rate)
        return NonFiniteError(
            f"{e}; stopped, and the backup was removed{kept}. Start over with "
            f"--overwrite and a lower --config.train.learning_rate (now {lr:g}), "
            "or check the inputs"
        )

    def _epoch_iterator(self, epoch: int, start_step: int):
        """The distributed train stream of `epoch`, from batch `start_step` on.

        A fresh, epoch-seeded stream fast-forwarded to the backup's step: a
        resumed epoch sees exactly the batches the killed one would have.
        """

        def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return pipeline.make_dataset(
                self.config,
                "train",
                ctx,
                repeat=True,
                epoch=epoch,
                skip_batches=start_step
                * ctx.num_replicas_in_sync
                // ctx.num_input_pipelines,
            )

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def train_epoch(
        self, epoch: int, fault_hook: Callable[[int], None] | None = None
    ) -> dict:
        """The rest of `epoch` (from the backup's step); returns its train metrics.

        Steps run in chunks of `train.steps_per_execution` per call, cut short
        at the epoch's end and at every `train.backup_every_steps` boundary,
        so backups (and a resumed run) fall on the same steps for any chunk
        size. The progress bar, the NaN check and `fault_hook` run after each
        chunk; per-step TensorBoard scalars are written for the chunk that
        reaches each `train.log_every_steps` boundary.

        Raises:
          TrainingError: the loss became NaN or infinite.
        """
        state, num_steps = self.state, self.num_steps
        start_step = int(state.step.numpy())
        iterator = self._epoch_iterator(epoch, start_step)
        bar = keras.utils.Progbar(
            num_steps,
            stateful_metrics=["loss", "tos_mae_ms", "lma_accuracy"],
            verbose=1 if self.progress else 0,
        )
        chunk = int(self.config.train.get("steps_per_execution", 1))
        backup_every = int(self.config.train.backup_every_steps)
        log_every = int(self.config.train.log_every_steps)
        totals: dict[str, float] = {}
        clock, logged = time.perf_counter(), start_step
        step = start_step
        while step < num_steps:
            n = min(chunk, num_steps - step, backup_every - step % backup_every)
            sums = {k: float(v) for k, v in self.train_step(iterator, n).items()}
            if not math.isfinite(sums["loss"]):
                steps_done = f"step {step}" + (f"-{step + n - 1}" if n > 1 else "")
                raise NonFiniteError(
                    f"loss became {sums['loss']} at epoch {epoch}, {steps_done} "
                    f"(global step {state.global_step})"
                )
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + v
            step += n
            bar.update(
                step,
                list(
                    steps.finish(
                        totals, (step - start_step) * self.global_batch
                    ).items()
                ),
            )
            state.step.assign(step)
            if log_every > 0 and step // log_every > (step - n) // log_every:
                now = time.perf_counter()
                rate = (step - logged) * self.global_batch / (now - clock)
                self._log_step(sums, n, rate)
                clock, logged = now, step
            if step % backup_every == 0:
                state.save_backup()
            if fault_hook is not None:
                fault_hook(state.global_step)
        done = max(num_steps - start_step, 1)
        return steps.finish(totals, done * self.global_batch)

    def _log_step(self, sums: dict, num_steps: int, examples_per_second: float) -> None:
        """Per-step TensorBoard scalars: loss (of the last chunk), lr, examples/s."""
        step_metrics = steps.finish(sums, num_steps * self.global_batch)
        optimizer = self.state.optimizer
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        with self.writers["train"].as_default(step=self.state.global_step):
            tf.summary.scalar("step/loss", step_metrics["loss"])
            tf.summary.scalar("step/learning_rate", lr)
            tf.summary.scalar("step/examples_per_second", examples_per_second)

    def validate(self) -> dict:
        """The val split's metrics, named `val_*`.

        Every worker scores the whole val split locally: no collectives, so
        uneven val shards cannot hang a multi-worker run, and all workers
        take the same early-stopping decision.
        """
        total: dict[str, float] = {}
        n = 0
        for feats, labels, weights in self.val_ds:
            sums, b = self.eval_step(feats, labels, weights)
            n += int(b)
            for k, v in sums.items():
                total[k] = total.get(k, 0.0) + float(v)
        return {f"val_{k}": v for k, v in steps.finish(total, n).items()}

    def _log_epoch(self, metrics: dict, epoch: int) -> None:
        """TensorBoard scalars (train and val side by side) and one stderr line."""
        with self.writers["train"].as_default(step=epoch):
            for k, v in metrics.items():
                if not k.startswith("val_") and k != "epoch":
                    tf.summary.scalar(k, v)
        with self.writers["val"].as_default(step=epoch):
            for k, v in metrics.items():
                if k.startswith("val_"):
                    tf.summary.scalar(k[4:], v)
        if self.progress:
            shown = ", ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("val_")
            )
            self.log(f"epoch {epoch + 1}/{self.config.train.epochs}: {shown}")

    def _select(self, metrics: dict, epoch: int) -> None:
        """Saves the weights to best/ when the selection metric improved."""
        metric = self.config.train.selection_metric
        # `best` holds a value to minimise: accuracies are negated.
        sign = -1.0 if lma_config.SELECTION_METRICS[metric] == "max" else 1.0
        score = sign * metrics[metric]
        if score < float(self.state.best.numpy()):
            self.state.best.assign(score)
            self.state.wait.assign(0)
            self.state.best_weights.save(checkpoint_number=epoch)
        else:
            self.state.wait.assign_add(1)

    def _end_epoch(self, epoch: int) -> None:
        """Backs up the finished epoch; the chief saves the history."""
        self.state.epoch.assign(epoch + 1)
        self.state.step.assign(0)
        self.state.save_backup()
        if self.chief:
            run_dir.save_history(self.history, self.model_dir)

    def _patience_spent(self) -> bool:
        patience = int(self.config.train.early_stopping_patience)
        return patience > 0 and int(self.state.wait.numpy()) >= patience


def _seed_states(model: keras.Model) -> dict:
    """The random-generator states of the model's layers (dropout masks).

    Keras keeps them outside the model's weights; without them a resumed run
    would draw other dropout masks than the run it continues.
    """
    states = {}
    for layer in model._flatten_layers(include_self=False):
        for attr, value in vars(layer).items():
            if isinstance(value, keras.random.SeedGenerator):
                states[f"{layer.name}_{attr}"] = value.state
    return states


def _checksum(model: keras.Model) -> float:
    """A number that differs when any weight differs (replica agreement tests)."""
    total = 0.0
    for i, w in enumerate(model.weights):
        total += (i + 1) * float(
            np.sum(np.asarray(keras.ops.convert_to_numpy(w), np.float64))
        )
    return total


def _plot_history(history: list[dict], model_dir: str) -> None:
    """training_curves.png: each metric per epoch, train against val."""
    from lma_tf.viz import charts

    series: dict[str, list[float]] = {}
    for row in history:
        for k, v in row.items():
            if k not in ("epoch", "learning_rate"):
                series.setdefault(k, []).append(v)
    if series:
        charts.plot_training_curves(series, run_dir.path(model_dir, run_dir.CURVES_PNG))


def _non_finite(variables: list) -> str:
    """The names of the first few variables holding NaN or inf ("" if none)."""
    bad = [
        v.path if hasattr(v, "path") else v.name
        for v in variables
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(v)))
    ]
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
