"""What a network costs: parameters, FLOPs, serving latency, training speed.

For any experiment config (every kind of `lma_tf.models.registry`):

  params                 trainable parameters (0 for a kind without a network)
  flops_per_example      2 x the multiply-adds of the conv, separable conv,
                         depthwise conv and dense layers for one slice at the
                         config's (sectors, frames), counted from the Keras
                         layers' shapes (`count_flops`); element-wise layers
                         (BatchNorm, ReLU, pooling) are left out. None
                         without a network.
  latency_p50_ms         median wall time of one single-slice request to the
                         export (numpy in, numpy out, input checks included)
                         on the best runtime: ONNX Runtime when it is
                         installed, else the SavedModel on TensorFlow
                         (`latency_runtime` says which).
  train_examples_per_s   examples/s of the project's own train step
                         (`steps.build_train_step`) fed from in-memory
                         tensors, after warm-up.

Speed figures depend on the machine and on whatever else runs on it; the
counts do not. The weights do not change any of them, so an untrained
network of the config measures the same as the trained one.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import ml_collections
import numpy as np

from lma_tf.models import registry

COST_KEYS = (
    "params",
    "flops_per_example",
    "latency_p50_ms",
    "latency_runtime",
    "train_examples_per_s",
)


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def _layer_flops(layer) -> int:
    """2 x multiply-adds of one layer for one example (0 for other layers)."""
    from keras import layers

    # Output spatial positions (all but batch and channels) of a conv layer.
    if isinstance(layer, layers.SeparableConv2D):
        out = layer.output.shape
        cin = int(layer.input.shape[-1])
        positions = _prod(out[1:-1])
        kh, kw = layer.kernel_size
        mult = int(layer.depth_multiplier)
        depthwise = positions * kh * kw * cin * mult
        pointwise = positions * cin * mult * int(out[-1])
        return 2 * (depthwise + pointwise)
    if isinstance(layer, layers.DepthwiseConv2D):
        out = layer.output.shape
        kh, kw = layer.kernel_size
        return 2 * _prod(out[1:]) * kh * kw
    if isinstance(layer, layers.Conv2D | layers.Conv1D):
        out = layer.output.shape
        cin = int(layer.input.shape[-1]) // int(getattr(layer, "groups", 1) or 1)
        return 2 * _prod(out[1:]) * _prod(layer.kernel_size) * cin
    if isinstance(layer, layers.Dense):
        shape = layer.input.shape
        return 2 * _prod(shape[1:]) * int(layer.units)
    return 0


def count_flops(model) -> int:
    """FLOPs (2 x multiply-adds) of one example through a built Keras model.

    Counts Conv1D/Conv2D (grouped too), SeparableConv2D, DepthwiseConv2D and
    Dense layers from their input and output shapes, recursing into nested
    models; a dense layer applied per sector counts once per sector.
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer)
        else:
            total += _layer_flops(layer)
    return total


def count_params(model) -> int:
    """Trainable parameters of a Keras model."""
    return int(sum(_prod(w.shape) for w in model.trainable_weights))


def _build(config: ml_collections.ConfigDict):
    from lma_tf.models import networks

    return networks.build_model(config)


def static_cost(config: ml_collections.ConfigDict) -> dict:
    """params and flops_per_example of `config`'s network (cheap: no timing)."""
    kind = registry.get(config.model.kind)
    if not kind.is_network:
        return {"params": 0, "flops_per_example": None}
    model = _build(config)
    return {"params": count_params(model), "flops_per_example": count_flops(model)}


def serving_latency(
    config: ml_collections.ConfigDict,
    model=None,
    calls: int = 100,
    num_frames: int | None = None,
    seed: int = 0,
) -> dict:
    """Single-slice latency p50 (ms) of the export of `config`'s network.

    Exports `model` (default: the untrained network of `config`) with
    `serving.export.export_model` and loads it with `serving.runtime` in
    `auto` mode (ONNX Runtime when the export has model.onnx and onnxruntime
    is installed, else the SavedModel), then times `calls` requests after 10
    warm-up ones (`bench._timed_calls`). A kind that cannot be exported
    gives latency None, with the reason in `latency_runtime`.
    """
    from lma_tf import bench, constants
    from lma_tf.serving import export, runtime

    if not registry.get(config.model.kind).exportable:
        return {"latency_p50_ms": None, "latency_runtime": "not exportable"}
    model = _build(config) if model is None else model
    frames = int(num_frames or config.data.num_frames)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.05, (1, constants.NUM_SECTORS, frames)).astype(np.float32)
    p = np.full([1], config.data.frame_period_ms, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = export.export_model(model, config, tmp, version=1)
        try:
            served = runtime.load_model(path, "auto")
        except runtime.ModelLoadError:  # model.onnx but no onnxruntime
            served = runtime.load_model(path, "tensorflow")
        times = bench._timed_calls(lambda: served(x, p), calls, 10)
    name = served.runtime
    if name == "onnx":
        import onnxruntime

        name = f"onnxruntime {onnxruntime.__version__}"
    else:
        import tensorflow as tf

        name = f"tensorflow {tf.__version__}"
    return {
        "latency_p50_ms": float(np.percentile(np.asarray(times) * 1e3, 50)),
        "latency_runtime": name,
    }


def _fake_batches(config: ml_collections.ConfigDict, n: int, seed: int):
    """`n` in-memory examples shaped as the training pipeline yields them."""
    import tensorflow as tf

    from lma_tf import constants

    d = config.data
    rng = np.random.default_rng(seed)
    s, f = int(d.num_sectors), int(d.num_frames)
    strain = rng.normal(0.0, 0.05, (n, s, f)).astype(np.float32)
    tos = rng.uniform(17.0, 120.0, (n, s)).astype(np.float32)
    lma = (rng.uniform(size=(n, s)) > 0.7).astype(np.float32)
    weight = np.ones((n, s), np.float32)
    weight[:, constants.NUM_SECTORS :] = 0.0  # padded sectors, as in the records
    return tf.data.Dataset.from_tensor_slices(
        ({"strain": strain}, {"tos": tos, "lma": lma}, {"tos": weight, "lma": weight})
    )


def train_speed(
    config: ml_collections.ConfigDict,
    steps: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> float | None:
    """Training examples/s of `config`'s network on in-memory tensors.

    Builds the network, the optimizer (`steps.make_optimizer`) and the train
    step (`steps.build_train_step`, with whatever `train.*` options the
    config sets) under the default strategy, runs `warmup` untimed steps
    (tracing) and times `steps` more calls, each of `train.steps_per_execution`
    steps. None for a kind without a network.
    """
    if not registry.get(config.model.kind).is_network:
        return None
    import keras
    import tensorflow as tf

    from lma_tf.training import steps as train_steps

    batch = int(config.train.batch_size)
    per_call = max(1, int(config.train.get("steps_per_execution", 1) or 1))
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    model = _build(config)
    optimizer = train_steps.make_optimizer(config, steps + warmup)
    step = train_steps.build_train_step(strategy, model, optimizer, config, batch)
    ds = (
        _fake_batches(config, batch * 4, seed)
        .repeat()
        .batch(batch, drop_remainder=True)
    )
    iterator = iter(strategy.experimental_distribute_dataset(ds))

    def call():
        # With train.steps_per_execution = n, one call runs n steps in-graph.
        out = step(iterator, per_call) if per_call > 1 else step(iterator)
        return float(out["loss"])

    for _ in range(warmup):
        call()
    start = time.perf_counter()
    for _ in range(steps):
        call()
    return steps * per_call * batch / (time.perf_counter() - start)


def network_cost(
    config: ml_collections.ConfigDict,
    model=None,
    latency_calls: int = 100,
    train_steps: int = 10,
) -> dict:
    """All of COST_KEYS for `config` (see the module docstring).

    `model`, if given, is the network whose export is timed (e.g. the
    trained one); the counts and training speed use a fresh network of the
    config, which has the same shapes.
    """
    out = static_cost(config)
    if registry.get(config.model.kind).is_network:
        out.update(serving_latency(config, model, calls=latency_calls))
    else:
        out.update({"latency_p50_ms": None, "latency_runtime": "no network"})
    out["train_examples_per_s"] = train_speed(config, steps=train_steps)
    out["cpu_count"] = os.cpu_count()
    return out
