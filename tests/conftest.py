"""Test-session set-up: quiet TensorFlow, two logical CPUs, repo on sys.path.

The CPU is split into two logical devices before TensorFlow initialises so
that MirroredStrategy code runs with two replicas on a machine without GPUs.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def _split_cpu() -> None:
    try:
        import tensorflow as tf
    except ImportError:  # numpy-only tests still run
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0],
            [tf.config.LogicalDeviceConfiguration()] * 2,
        )
    except RuntimeError:
        pass  # already initialised by an earlier import; keep what is there


_split_cpu()
