"""Test-session set-up: quiet TensorFlow, two logical CPUs, repo on sys.path.

The CPU is split into two logical devices before TensorFlow initialises so
that MirroredStrategy code runs with two replicas on a machine without GPUs.
"""

import os
import sys

import pytest

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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Tiny multitask, regression-only and classical runs on a 14-subject cohort.

    Session-scoped: evaluation and Grad-CAM tests read the same runs.
    Returns (root, {experiment: model_dir}).
    """
    from lma_tf import testing

    root = tmp_path_factory.mktemp("trained")
    records_dir = testing.synthetic_records(str(root), 14, 1)
    dirs = testing.train_tiny(
        str(root), records_dir, ("multitask", "regression_only", "classical")
    )
    return root, dirs


@pytest.fixture
def captured(monkeypatch):
    """Keeps every figure handed to figures.save_figure, so tests can inspect it."""
    from lma_tf.viz import figures

    figs = []
    save = figures.save_figure

    def keep(fig, path, **kw):
        figs.append(fig)
        return save(fig, path, **kw)

    monkeypatch.setattr(figures, "save_figure", keep)
    return figs
