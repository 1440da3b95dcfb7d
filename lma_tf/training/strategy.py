"""Picks the tf.distribute strategy by name: default, mirrored, multi_worker, tpu.

TensorFlow is imported on first use, so that the command layer can offer
`STRATEGIES` as flag values without it (`lma-tf train --help` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(num_devices: int) -> None:
    """Splits the first CPU into `num_devices` logical devices.

    Must run before TensorFlow initialises its devices; lets MirroredStrategy
    run N replicas on a machine without GPUs (tests, CI).
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices
    )


def get_strategy(
    name: str, num_cpu_replicas: int = 0, tpu: str = ""
) -> tf.distribute.Strategy:
    """Returns the strategy called `name`.

    Args:
      name: one of STRATEGIES.
      mirrored: all local GPUs; without GPUs, `num_cpu_replicas` logical CPUs
        (split with `split_cpu` first) or the one CPU.
      multi_worker: MultiWorkerMirroredStrategy configured from TF_CONFIG.
      tpu: TPUStrategy on the TPU named by `tpu` ("" = local / from the env).
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        if num_cpu_replicas:
            if len(cpus) < num_cpu_replicas:
                raise ValueError(
                    f"{num_cpu_replicas} CPU replicas asked for, {len(cpus)} logical "
                    "CPUs exist: call split_cpu() before TensorFlow initialises"
                )
            cpus = cpus[:num_cpu_replicas]
        else:
            cpus = cpus[:1]
        return tf.distribute.MirroredStrategy(cpus)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that owns the model directory (always, single-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
