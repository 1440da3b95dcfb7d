"""Training: one custom loop for every tf.distribute strategy.

  python -m lma_tf.training.train_lib --config=experiments/multitask.py --records_dir=D \
      --model_dir=M [--strategy=default|mirrored|multi_worker|tpu] \
      [--config.train.epochs=N ...]

Why a custom loop rather than `model.fit`: Keras 3's fit fails under
MultiWorkerMirroredStrategy (keras-team/keras#20585), and two loops (fit for
some strategies, custom for others) would drift apart. The loop below
(`strategy.run` in a `tf.function`, `tf.nn.compute_average_loss`, Keras model
and optimizer) serves default, mirrored, multi-worker and TPU alike, with
the fault tolerance of `tf.train.CheckpointManager` backups.

model_dir holds: config.json (the resolved config), backup/ (resume state),
best/ (weights with the best validation score: selection never looks at the
test split), history.json, training_curves.png and TensorBoard logs/.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from lma_tf import atomic
from lma_tf import config as lma_config
from lma_tf.data import pipeline, records
from lma_tf.models import classical, losses
from lma_tf.models import networks as lma_model
from lma_tf.training import strategy as lma_strategy

CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"
BEST_DIR = "best"
BACKUP_DIR = "backup"
CLASSICAL_JSON = "classical.json"


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates and fills train-split statistics from the records' manifest."""
    config = ml_collections.ConfigDict(config.to_dict())
    lma_config.validate_config(config)
    norm = records.load_manifest(config.data.records_dir)["normalization"]
    if not config.model.strain_std:
        config.model.strain_mean = float(norm["strain_mean"] or 0.0)
        config.model.strain_std = float(norm["strain_std"] or 1.0)
    if not config.model.tos_mean_ms:
        config.model.tos_mean_ms = float(norm["tos_mean_ms"] or 40.0)
    return config


def save_config(config: ml_collections.ConfigDict, model_dir: str) -> None:
    os.makedirs(model_dir, exist_ok=True)
    _write_json(os.path.join(model_dir, CONFIG_JSON), config.to_dict())


def load_config(model_dir: str) -> ml_collections.ConfigDict:
    """The resolved config saved by `train` next to the checkpoints."""
    path = os.path.join(model_dir, CONFIG_JSON)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {model_dir} is not a trained model dir"
        )
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def _write_json(path: str, obj) -> None:
    atomic.write_json(path, obj, sort_keys=True)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """AdamW (Keras' own) with linear warm-up then cosine decay."""
    t = config.train
    total = max(1, t.epochs * steps_per_epoch)
    warmup = min(int(t.warmup_epochs * steps_per_epoch), total - 1)
    if t.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else t.learning_rate,
            decay_steps=total - warmup,
            alpha=0.01,
            warmup_target=t.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    elif t.schedule == "constant":
        lr = t.learning_rate
    else:
        raise ValueError(f"unknown train.schedule {t.schedule!r}")
    opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=t.weight_decay)
    if t.mixed_precision:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _set_determinism(config: ml_collections.ConfigDict) -> None:
    keras.utils.set_random_seed(int(config.seed))
    if config.train.deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def _summaries(outputs: dict, labels: dict, weights: dict) -> dict:
    """Sums (not means) so that replicas and steps add up exactly."""
    w = weights["tos"]
    out = {"weight": tf.reduce_sum(w)}
    if "tos" in outputs:
        err = tf.abs(tf.cast(outputs["tos"], tf.float32) - labels["tos"])
        out["tos_abs_err"] = tf.reduce_sum(w * err)
    if "lma" in outputs:
        pred = tf.cast(tf.argmax(outputs["lma"], axis=-1), tf.float32)
        hit = tf.cast(tf.equal(pred, tf.round(labels["lma"])), tf.float32)
        out["lma_correct"] = tf.reduce_sum(weights["lma"] * hit)
    return out


def _finish(sums: dict, num_examples: float) -> dict:
    n = max(sums.get("weight", 0.0), 1.0)
    out = {"loss": sums["loss"] / max(num_examples, 1.0)}
    if "tos_abs_err" in sums:
        out["tos_mae_ms"] = sums["tos_abs_err"] / n
    if "lma_correct" in sums:
        out["lma_accuracy"] = sums["lma_correct"] / n
    return out


def _write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Chief writes model_dir; other workers a private scratch dir (then deleted)."""
    if lma_strategy.is_chief(strategy):
        return model_dir
    task_id = strategy.cluster_resolver.task_id
    return os.path.join(model_dir, ".workers", f"worker_{task_id}")


def _check_resumable(config: ml_collections.ConfigDict, model_dir: str) -> None:
    """Refuses to resume a backup made with other data or another model.

    Old weights with new normalisation statistics (say, records rebuilt from
    another cohort) would train silently on skewed inputs.
    """
    backup = tf.train.latest_checkpoint(os.path.join(model_dir, BACKUP_DIR))
    if backup is None or not os.path.exists(os.path.join(model_dir, CONFIG_JSON)):
        return
    saved = load_config(model_dir).to_dict()
    new = json.loads(json.dumps(config.to_dict(), default=atomic.json_default))
    differ = [
        f"{part}.{k}"
        for part in ("data", "model", "loss")
        for k in sorted(set(saved[part]) | set(new[part]))
        if saved[part].get(k) != new[part].get(k)
    ]
    if differ:
        raise TrainingError(
            f"{model_dir} holds a backup of a run with another config "
            f"({', '.join(differ)}); resume with the same config and records, "
            "or train into a new --model_dir"
        )


def train_classical(config: ml_collections.ConfigDict, model_dir: str) -> dict:
    """The non-learned baseline: only its threshold is chosen, on the val split."""
    ds = pipeline.make_dataset(config, "val", training=False, include_metadata=True)
    strains, tos, frames = [], [], []
    for feats, labels, _ in ds:
        keep = feats["has_tos"].numpy() > 0
        strains += list(feats["strain"].numpy()[keep, :126])
        tos += list(labels["tos"].numpy()[keep, :126])
        frames += list(feats["num_frames"].numpy()[keep])
    params = classical.params_from_config(config)
    if strains:
        params["threshold"] = classical.fit_threshold(strains, tos, frames)
    _write_json(os.path.join(model_dir, CLASSICAL_JSON), params)
    return {"classical_params": params}


def build_train_step(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    optimizer,
    config: ml_collections.ConfigDict,
    global_batch: int,
) -> Callable:
    """A `tf.function` taking a distributed iterator; returns summed metrics.

    Gradients are all-reduced by the Keras optimizer inside `strategy.run`;
    clipping (`train.clipnorm`) is applied to each replica's share before
    that (clip-then-sum: with clipping active, updates depend on the replica
    count; set it to 0 for replica-count-invariant updates).
    """
    clipnorm = float(config.train.clipnorm)
    mixed = bool(config.train.mixed_precision)

    def step_fn(inputs):
        feats, labels, weights = inputs
        with tf.GradientTape() as tape:
            outputs = model(feats["strain"], training=True)
            per_example, _ = losses.per_example_loss(outputs, labels, weights, config)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch
            )
            scaled = optimizer.scale_loss(loss) if mixed else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        if clipnorm > 0:
            # Under mixed precision the gradients are still multiplied by the
            # loss scale here; clip at the same threshold in true units.
            limit = clipnorm * optimizer.dynamic_scale if mixed else clipnorm
            grads, _ = tf.clip_by_global_norm(grads, limit)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        sums = _summaries(outputs, labels, weights)
        sums["loss"] = tf.reduce_sum(per_example)
        return sums

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(step_fn, args=(next(iterator),))
        return {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    return train_step


def train(
    config: ml_collections.ConfigDict,
    model_dir: str,
    strategy: tf.distribute.Strategy | None = None,
    *,
    progress: bool = True,
    fault_hook: Callable[[int], None] | None = None,
) -> dict:
    """Trains `config`'s experiment into `model_dir`; resumes from a backup.

    Args:
      config: experiment config (see `lma_tf.config`); `data.records_dir` set.
      model_dir: output directory; rerunning the same command resumes.
      strategy: a tf.distribute strategy (default: the default strategy).
      progress: show a Keras progress bar per epoch (chief only).
      fault_hook: called with the global step after every step (tests use it
        to simulate a crash).

    Returns:
      The history: per-epoch train and validation metrics, plus `stopped`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    config = resolve_config(config)
    chief = lma_strategy.is_chief(strategy)
    write_dir = _write_dir(model_dir, strategy)
    _check_resumable(config, model_dir)
    if config.model.kind != "classical" and pipeline.count_examples(config, "val") == 0:
        raise TrainingError(
            f"{config.data.records_dir}: the val split is empty; model selection "
            "needs one (rerun make_records with another --split or more subjects)"
        )
    os.makedirs(write_dir, exist_ok=True)
    if chief:
        save_config(config, model_dir)
    if config.model.kind == "classical":
        return train_classical(config, model_dir)
    _set_determinism(config)
    previous_policy = keras.mixed_precision.global_policy()
    if config.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train_loop(
            config, model_dir, strategy, chief, write_dir, progress, fault_hook
        )
    finally:
        # The policy is process-global: leave it as it was for the caller.
        keras.mixed_precision.set_global_policy(previous_policy)


def _train_loop(
    config: ml_collections.ConfigDict,
    model_dir: str,
    strategy: tf.distribute.Strategy,
    chief: bool,
    write_dir: str,
    progress: bool,
    fault_hook: Callable[[int], None] | None,
) -> dict:
    """The body of `train` once the config, dirs and precision are set."""

    global_batch = int(config.train.batch_size)
    num_train = pipeline.count_examples(config, "train")
    if num_train < global_batch:
        raise TrainingError(
            f"train split has {num_train} slices, less than a batch of {global_batch}"
        )
    steps_per_epoch = int(config.train.steps_per_epoch)
    if steps_per_epoch <= 0:
        steps_per_epoch = num_train // global_batch

    with strategy.scope():
        model = lma_model.build_model(config)
        optimizer = make_optimizer(config, steps_per_epoch)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        best_var = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best")
        wait_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="wait")
    state = tf.train.Checkpoint(
        model=model,
        rng=_seed_states(model),
        optimizer=optimizer,
        epoch=epoch_var,
        step=step_in_epoch,
        best=best_var,
        wait=wait_var,
    )
    backup = tf.train.CheckpointManager(state, os.path.join(write_dir, BACKUP_DIR), 1)
    best_ckpt = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), os.path.join(write_dir, BEST_DIR), 1
    )
    history = _load_history(model_dir)
    if backup.latest_checkpoint:
        state.restore(backup.latest_checkpoint).assert_existing_objects_matched()
        print(
            f"[train] resumed from {backup.latest_checkpoint} at epoch "
            f"{int(epoch_var.numpy())}, step {int(step_in_epoch.numpy())}",
            file=sys.stderr,
        )
        history = history[: int(epoch_var.numpy())]

    val_ds = pipeline.make_dataset(config, "val", training=False)
    train_step = build_train_step(strategy, model, optimizer, config, global_batch)

    @tf.function
    def eval_step(feats, labels, weights):
        outputs = model(feats["strain"], training=False)
        per_example, _ = losses.per_example_loss(outputs, labels, weights, config)
        sums = _summaries(outputs, labels, weights)
        sums["loss"] = tf.reduce_sum(per_example)
        return sums, tf.shape(per_example)[0]

    def evaluate_val() -> dict:
        # Every worker scores the whole val split locally: no collectives, so
        # uneven val shards cannot hang a multi-worker run, and all workers
        # take the same early-stopping decision.
        total: dict[str, float] = {}
        n = 0
        for feats, labels, weights in val_ds:
            sums, b = eval_step(feats, labels, weights)
            n += int(b)
            for k, v in sums.items():
                total[k] = total.get(k, 0.0) + float(v)
        return {f"val_{k}": v for k, v in _finish(total, n).items()}

    logs_dir = os.path.join(write_dir, "logs")
    train_writer = tf.summary.create_file_writer(os.path.join(logs_dir, "train"))
    val_writer = tf.summary.create_file_writer(os.path.join(logs_dir, "val"))
    patience = int(config.train.early_stopping_patience)
    stopped = "completed"
    first_epoch = int(epoch_var.numpy())
    if patience > 0 and int(wait_var.numpy()) >= patience:
        stopped = f"early stopping at epoch {first_epoch} (in an earlier run)"
        first_epoch = int(config.train.epochs)
    for epoch in range(first_epoch, int(config.train.epochs)):
        start_step = int(step_in_epoch.numpy())
        # A fresh, epoch-seeded stream, fast-forwarded to the backup's step:
        # a resumed epoch sees exactly the batches the killed one would have.
        iterator = iter(
            strategy.distribute_datasets_from_function(
                lambda ctx, e=epoch, s=start_step: pipeline.make_dataset(
                    config,
                    "train",
                    ctx,
                    repeat=True,
                    epoch=e,
                    skip_batches=s
                    * ctx.num_replicas_in_sync
                    // ctx.num_input_pipelines,
                )
            )
        )
        bar = keras.utils.Progbar(
            steps_per_epoch,
            stateful_metrics=["loss", "tos_mae_ms", "lma_accuracy"],
            verbose=1 if (progress and chief) else 0,
        )
        totals: dict[str, float] = {}
        for step in range(start_step, steps_per_epoch):
            sums = {k: float(v) for k, v in train_step(iterator).items()}
            if not math.isfinite(sums["loss"]):
                raise TrainingError(
                    f"loss became {sums['loss']} at epoch {epoch}, step {step} "
                    f"(global step {int(optimizer.iterations.numpy())}); stopping. "
                    "Lower train.learning_rate or check the inputs."
                )
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + v
            done = step - start_step + 1
            bar.update(step + 1, list(_finish(totals, done * global_batch).items()))
            step_in_epoch.assign(step + 1)
            if (step + 1) % int(config.train.backup_every_steps) == 0:
                backup.save(checkpoint_number=int(optimizer.iterations.numpy()))
            if fault_hook is not None:
                fault_hook(int(optimizer.iterations.numpy()))
        metrics = _finish(totals, max(steps_per_epoch - start_step, 1) * global_batch)
        metrics.update(evaluate_val())
        metrics["epoch"] = epoch
        metrics["learning_rate"] = float(
            keras.ops.convert_to_numpy(optimizer.learning_rate)
        )
        history.append(metrics)
        with train_writer.as_default(step=epoch):
            for k, v in metrics.items():
                if not k.startswith("val_") and k != "epoch":
                    tf.summary.scalar(k, v)
        with val_writer.as_default(step=epoch):
            for k, v in metrics.items():
                if k.startswith("val_"):
                    tf.summary.scalar(k[4:], v)
        if progress and chief:
            shown = ", ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("val_")
            )
            print(f"epoch {epoch + 1}/{config.train.epochs}: {shown}", file=sys.stderr)

        # best_var holds a value to minimise: accuracies are negated.
        sign = (
            -1.0
            if lma_config.SELECTION_METRICS[config.train.selection_metric] == "max"
            else 1.0
        )
        score = sign * metrics[config.train.selection_metric]
        if score < float(best_var.numpy()):
            best_var.assign(score)
            wait_var.assign(0)
            best_ckpt.save(checkpoint_number=epoch)
        else:
            wait_var.assign_add(1)
        epoch_var.assign(epoch + 1)
        step_in_epoch.assign(0)
        backup.save(checkpoint_number=int(optimizer.iterations.numpy()))
        if chief:
            _write_json(os.path.join(model_dir, HISTORY_JSON), history)
        if patience > 0 and int(wait_var.numpy()) >= patience:
            stopped = f"early stopping at epoch {epoch + 1}"
            break

    if not lma_strategy.is_chief(strategy):
        shutil.rmtree(write_dir, ignore_errors=True)
    if chief:
        _plot_history(history, model_dir)
    return {
        "history": history,
        "stopped": stopped,
        "weights_checksum": _checksum(model),
    }


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


def _load_history(model_dir: str) -> list[dict]:
    path = os.path.join(model_dir, HISTORY_JSON)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _checksum(model: keras.Model) -> float:
    """A number that differs when any weight differs (replica agreement tests)."""
    total = 0.0
    for i, w in enumerate(model.weights):
        total += (i + 1) * float(
            np.sum(np.asarray(keras.ops.convert_to_numpy(w), np.float64))
        )
    return total


def _plot_history(history: list[dict], model_dir: str) -> None:
    try:
        from lma_tf.viz import plots
    except ImportError:  # plots are a convenience, never a reason to fail
        return
    series: dict[str, list[float]] = {}
    for row in history:
        for k, v in row.items():
            if k not in ("epoch", "learning_rate"):
                series.setdefault(k, []).append(v)
    plots.plot_training_curves(series, os.path.join(model_dir, "training_curves.png"))


def restore_best(config: ml_collections.ConfigDict, model_dir: str) -> keras.Model:
    """Builds the model and loads the best (validation-selected) weights.

    Raises:
      FileNotFoundError: the directory holds no trained checkpoint.
    """
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, BEST_DIR))
    if latest is None:
        raise FileNotFoundError(
            f"no trained checkpoint in {os.path.join(model_dir, BEST_DIR)}: "
            "train first (python -m lma_tf.training.train_lib ...)"
        )
    model = lma_model.build_model(config)
    # Every variable of the model must come from the checkpoint: a mismatch
    # (other config, other code) must not leave random weights in place.
    tf.train.Checkpoint(model=model).restore(latest).assert_existing_objects_matched()
    return model


def main(argv: list[str]) -> None:
    """absl entry point: flags -> config -> strategy -> `train`."""
    from lma_tf.cli import quiet_logs

    quiet_logs()
    del argv
    from absl import flags

    f = flags.FLAGS
    if f.num_cpu_replicas:
        lma_strategy.split_cpu(f.num_cpu_replicas)
    config = f.config
    if f.records_dir:
        config.data.records_dir = f.records_dir
    strategy = lma_strategy.get_strategy(f.strategy, f.num_cpu_replicas, f.tpu)
    print(
        f"[train] {config.name}: strategy={f.strategy} replicas="
        f"{strategy.num_replicas_in_sync} model_dir={f.model_dir}",
        file=sys.stderr,
    )
    try:
        result = train(config, f.model_dir, strategy)
    except (TrainingError, FileNotFoundError, ValueError) as e:
        sys.exit(f"train: error: {e}")
    if "history" in result:
        last = result["history"][-1] if result["history"] else {}
        print(f"[train] {result['stopped']}; last epoch: {json.dumps(last)}")
        print(f"[train] weights checksum: {result['weights_checksum']!r}")
    else:
        print(f"[train] classical parameters: {json.dumps(result['classical_params'])}")


def define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file(
        "config",
        "experiments/multitask.py",
        "Experiment config file.",
        lock_config=False,
    )
    flags.DEFINE_string("records_dir", "", "Records directory (overrides the config).")
    flags.DEFINE_string(
        "model_dir", None, "Where checkpoints and logs go.", required=True
    )
    flags.DEFINE_enum("strategy", "default", list(lma_strategy.STRATEGIES), "Strategy.")
    flags.DEFINE_integer(
        "num_cpu_replicas", 0, "mirrored without GPUs: split the CPU into N devices."
    )
    flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
