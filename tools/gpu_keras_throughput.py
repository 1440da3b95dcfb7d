"""Indicative GPU throughput of the lma_tf network under another Keras backend.

For accelerator machines without TensorFlow (where tools/gpu_check.sh cannot
run): builds the same `lma_tf.models.networks.build_model` network under Keras 3's JAX
backend and times `model.fit` on synthetic tensors (no tf.data, no
tf.distribute: the network's own speed, not the project's training path).
Fails unless the backend runs on a GPU.

  python tools/gpu_keras_throughput.py [--backend=jax] [--steps=50]
"""

import os
import sys
import time

from absl import app, flags

_BACKEND = flags.DEFINE_enum(
    "backend", "jax", ["jax", "tensorflow", "torch"], "Keras backend."
)
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps per configuration.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32", "128"], "Batch sizes.")
_ALLOW_CPU = flags.DEFINE_bool("allow_cpu", False, "Run without a GPU (dry run).")


def main(argv) -> None:
    del argv
    backend = _BACKEND.value
    os.environ["KERAS_BACKEND"] = backend
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import keras
    import numpy as np

    from lma_tf import config as lma_config
    from lma_tf.models import networks as lma_model

    devices = _devices(backend)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {devices}")
    if not _ALLOW_CPU.value and not any(
        "gpu" in d.lower() or "cuda" in d.lower() for d in devices
    ):
        sys.exit("gpu_keras_throughput: FAILED: the backend sees no GPU")

    rng = np.random.default_rng(0)
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        for batch in (int(b) for b in _BATCH_SIZES.value):
            cfg = lma_config.base_config()
            cfg.model.tos_mean_ms = 40.0
            net = lma_model.build_model(cfg)
            net.compile(
                optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-5),
                loss={
                    "tos": "mse",
                    "lma": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                },
                loss_weights={"tos": 1.0, "lma": 10.0},
            )
            n = batch * _STEPS.value
            x = rng.normal(0.0, 0.05, (n, 128, 64)).astype("float32")
            y = {
                "tos": rng.uniform(17, 140, (n, 128)).astype("float32"),
                "lma": rng.integers(0, 2, (n, 128)).astype("int32"),
            }
            net.fit(
                x[: batch * 3],
                {k: v[: batch * 3] for k, v in y.items()},
                batch_size=batch,
                epochs=1,
                verbose=0,
            )  # compile + warm-up
            start = time.perf_counter()
            net.fit(x, y, batch_size=batch, epochs=1, verbose=0)
            seconds = time.perf_counter() - start
            print(
                f"{policy:14s} batch {batch:4d}: {n / seconds:10.0f} examples/s "
                f"({_STEPS.value} steps)"
            )


def _devices(backend: str) -> list[str]:
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    import torch

    return ["cuda" if torch.cuda.is_available() else "cpu"]


if __name__ == "__main__":
    app.run(main)
