"""What one training or validation step computes, under any tf.distribute strategy.

Steps return sums (of the loss, the weighted TOS error, the correct LMA
calls and the weight) rather than means, so that replicas and steps add up
exactly; `finish` turns the accumulated sums into metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from lma_tf.models import losses


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


def summaries(outputs: dict, labels: dict, weights: dict) -> dict:
    """A batch's weighted metric sums; the caller adds the summed loss."""
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


def finish(sums: dict, num_examples: float) -> dict:
    """Mean loss per example, TOS MAE and LMA accuracy per weighted sector."""
    n = max(sums.get("weight", 0.0), 1.0)
    out = {"loss": sums["loss"] / max(num_examples, 1.0)}
    if "tos_abs_err" in sums:
        out["tos_mae_ms"] = sums["tos_abs_err"] / n
    if "lma_correct" in sums:
        out["lma_accuracy"] = sums["lma_correct"] / n
    return out


def _sum_keys(model: keras.Model) -> list[str]:
    """The keys of a step's sums for `model`'s outputs (see `summaries`)."""
    outputs = model.output if isinstance(model.output, dict) else {}
    keys = ["weight", "loss"]
    if "tos" in outputs:
        keys.append("tos_abs_err")
    if "lma" in outputs:
        keys.append("lma_correct")
    return keys


def build_train_step(
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    optimizer,
    config: ml_collections.ConfigDict,
    global_batch: int,
) -> Callable:
    """`train_step(iterator, num_steps=1)`: that many steps; their summed metrics.

    Gradients are all-reduced by the Keras optimizer inside `strategy.run`;
    clipping (`train.clipnorm`) is applied to each replica's share before
    that (clip-then-sum: with clipping active, updates depend on the replica
    count; set it to 0 for replica-count-invariant updates).

    With `train.steps_per_execution` > 1 the steps run in a loop inside one
    `tf.function` call (one Python round trip per `num_steps` steps, any
    count up to the caller, without retracing). With `train.jit_compile` the
    step (forward, backward, clipping, optimizer update) is compiled with XLA
    under a one-replica strategy; under several replicas it is not (a
    warning says so): synchronised BatchNorm's and the optimizer's
    cross-replica sums cannot run inside a compiled function, and the
    forward pass holds the former.
    """
    clipnorm = float(config.train.clipnorm)
    mixed = bool(config.train.mixed_precision)
    fused = int(config.train.get("steps_per_execution", 1)) > 1
    jit = bool(config.train.get("jit_compile", False))
    keys = _sum_keys(model)

    def gradients(inputs):
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
        sums = summaries(outputs, labels, weights)
        sums["loss"] = tf.reduce_sum(per_example)
        return grads, sums

    def step_fn(inputs):
        grads, sums = gradients(inputs)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums

    if jit and strategy.num_replicas_in_sync == 1:
        step_fn = tf.function(step_fn, jit_compile=True)
    elif jit:
        logging.warning(
            "train.jit_compile is ignored under %d replicas: synchronised "
            "BatchNorm and the optimizer sum across replicas, which XLA cannot "
            "do inside a compiled step",
            strategy.num_replicas_in_sync,
        )

    def one_step(iterator) -> dict:
        per_replica = strategy.run(step_fn, args=(next(iterator),))
        return {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    @tf.function
    def single(iterator):
        return one_step(iterator)

    @tf.function
    def loop(iterator, num_steps):
        totals = {k: tf.constant(0.0, tf.float32) for k in keys}
        for _ in tf.range(num_steps):
            sums = one_step(iterator)
            totals = {k: totals[k] + tf.cast(sums[k], tf.float32) for k in keys}
        return totals

    def train_step(iterator, num_steps: int = 1) -> dict:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if num_steps == 1 and not fused:
            return single(iterator)
        return loop(iterator, tf.constant(num_steps, tf.int32))

    return train_step


def build_eval_step(model: keras.Model, config: ml_collections.ConfigDict) -> Callable:
    """A local (no collectives) `tf.function`: (feats, labels, weights) -> sums, n."""

    @tf.function
    def eval_step(feats, labels, weights):
        outputs = model(feats["strain"], training=False)
        per_example, _ = losses.per_example_loss(outputs, labels, weights, config)
        sums = summaries(outputs, labels, weights)
        sums["loss"] = tf.reduce_sum(per_example)
        return sums, tf.shape(per_example)[0]

    return eval_step
