"""Tiny on-the-fly fixtures for tests (numpy only, no synthetic physiology)."""

from __future__ import annotations

import os

import numpy as np

from lma_tf import constants
from lma_tf.data.slices import DenseSlice


def random_slice(
    rng: np.random.Generator,
    subject_id: str,
    slice_id: str,
    num_frames: int = 30,
    with_labels: bool = True,
) -> DenseSlice:
    """A valid slice with random strain, TOS on the frame grid and some scar."""
    n = constants.NUM_SECTORS
    strain = rng.normal(0.0, 0.05, size=(n, num_frames)).astype(np.float32)
    tos = scar = None
    if with_labels:
        frames = rng.integers(1, num_frames // 2, size=n)
        tos = (frames * constants.DEFAULT_FRAME_PERIOD_MS).astype(np.float32)
        scar = np.zeros(n, np.float32)
        start = int(rng.integers(0, n))
        scar[(start + np.arange(15)) % n] = 0.8
    return DenseSlice(
        subject_id=subject_id,
        slice_id=slice_id,
        strain_matrix=strain,
        tos_ms=tos,
        scar_fraction=scar,
        slice_location=float(rng.uniform(-30, 30)),
    )


def write_npz(path: str, s: DenseSlice, **overrides) -> str:
    """Writes a slice in the data contract's .npz form (keys may be overridden)."""
    arrays = {
        "subject_id": np.array(s.subject_id),
        "slice_id": np.array(s.slice_id),
        "strain_matrix": s.strain_matrix,
        "frame_period_ms": np.array(s.frame_period_ms),
    }
    if s.tos_ms is not None:
        arrays["tos_ms"] = s.tos_ms
    if s.scar_fraction is not None:
        arrays["scar_fraction"] = s.scar_fraction
    if s.slice_location is not None:
        arrays["slice_location"] = np.array(s.slice_location)
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_cohort_npz(
    root: str, num_subjects: int, slices_per_subject: int = 3, seed: int = 0
) -> list[DenseSlice]:
    """Writes `num_subjects` x `slices_per_subject` random slices as .npz files."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num_subjects):
        for j in range(slices_per_subject):
            s = random_slice(
                rng, f"P{i:03d}", f"P{i:03d}_{j}", int(rng.integers(20, 60))
            )
            write_npz(os.path.join(root, s.subject_id, f"{s.slice_id}.npz"), s)
            out.append(s)
    return out


def synthetic_records(root: str, num_subjects: int, seed: int) -> str:
    """A synthetic cohort as npz under root/c and its records under root/r."""
    from lma_tf.data import records, synthetic, synthetic_io

    cohort_dir, records_dir = os.path.join(root, "c"), os.path.join(root, "r")
    synthetic_io.write_cohort(
        synthetic.generate_cohort(num_subjects, seed), cohort_dir, "npz"
    )
    records.make_records(
        [cohort_dir], records.RecordsOptions(output_dir=records_dir, progress=False)
    )
    return records_dir


def tiny_config(cfg, records_dir: str, **train_overrides):
    """Shrinks an experiment config to a seconds-long run on `records_dir`."""
    cfg.data.records_dir = records_dir
    cfg.model.trunk_channels = (8, 16)
    cfg.model.frame_pools = 2
    cfg.model.head_channels = (16,)
    cfg.model.head_units = (16,)
    cfg.train.batch_size = 8
    cfg.train.epochs = 2
    cfg.train.steps_per_epoch = 3
    cfg.train.warmup_epochs = 0
    for key, value in train_overrides.items():
        cfg.train[key] = value
    return cfg


def train_tiny(root: str, records_dir: str, experiments, epochs: int = 1) -> dict:
    """Trains tiny runs of the named experiments; returns {name: model_dir}."""
    from lma_tf import config as lma_config
    from lma_tf.training import train_lib as train

    dirs = {}
    for name in experiments:
        cfg = tiny_config(lma_config.load_experiment(name), records_dir, epochs=epochs)
        dirs[name] = os.path.join(root, name)
        train.train(cfg, dirs[name], progress=False)
    return dirs


def tiny_export(export_dir: str, fmt: str | None = None, seed: int = 0) -> str:
    """An untrained tiny multitask network exported to `export_dir/1`.

    Serving tests need a real export, not a trained one: the weights are
    random (seeded), the normalisation statistics fixed.
    """
    import keras

    from lma_tf import config as lma_config
    from lma_tf.models import registry
    from lma_tf.serving import export

    cfg = tiny_config(lma_config.base_config(), "unused")
    cfg.model.strain_mean, cfg.model.strain_std = 0.0, 0.05
    cfg.model.tos_mean_ms = 40.0
    keras.utils.set_random_seed(seed)
    model = registry.get(cfg.model.kind).build(cfg)
    return export.export_model(model, cfg, export_dir, fmt=fmt, version=1)
