"""The one config object (ml_collections) passed down through every stage.

`experiments/*.py` start from `base_config()` and change what makes each
experiment; command-line overrides (`--config.train.epochs=3`) come on top.
The library never reads absl FLAGS: binaries hand it this object.
"""

from __future__ import annotations

import ml_collections

from lma_tf import constants

EXPERIMENT_KINDS = (
    "multitask",
    "regression_only",
    "classification_only",
    "isbi2021",
    "classical",
)

# Validation metrics a run may select its best checkpoint on, and direction.
SELECTION_METRICS = {
    "val_loss": "min",
    "val_tos_mae_ms": "min",
    "val_lma_accuracy": "max",
}


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all experiments (the paper's multitask setting)."""
    c = ml_collections.ConfigDict()
    c.name = "multitask"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.records_dir = "records"
    c.data.num_frames = 64  # the authors zero-pad to 64 frames
    c.data.drop_last_frames = 0  # the authors drop 5; kept as an option
    c.data.frame_period_ms = constants.DEFAULT_FRAME_PERIOD_MS
    c.data.num_sectors = 128  # 126 padded circularly, masked
    c.data.cache = True  # cache parsed examples in memory when they fit:
    c.data.cache_max_mb = 4096  # estimated from the manifest's slice count
    c.data.shuffle_buffer = 2048
    c.data.cycle_length = 4
    c.data.deterministic = True
    c.data.augment_shift = True
    c.data.mixup_alpha = 0.0
    c.data.noise_std = 0.0

    c.model = ml_collections.ConfigDict()
    c.model.kind = "multitask"
    c.model.trunk_channels = (16, 32, 64)
    c.model.kernel_size = 3
    c.model.frame_pools = 3  # how many of the trunk blocks halve the frame axis
    c.model.circular_padding = True
    c.model.head_channels = (64,)
    c.model.head_units = (64,)
    c.model.dropout = 0.1
    c.model.tos_bias_init_ms = -1.0  # < 0: use the train-split mean TOS
    # Train-split statistics; 0 = fill in from the records' manifest at training
    # time. Saved with the resolved config so serving normalises identically.
    c.model.strain_mean = 0.0
    c.model.strain_std = 0.0
    c.model.tos_mean_ms = 0.0

    c.loss = ml_collections.ConfigDict()
    c.loss.weights = ml_collections.ConfigDict({"tos": 1.0, "lma": 10.0})
    c.loss.tos_scale_ms = 1.0  # MSE in ms^2 / scale^2; 1 = the paper's loss

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32  # global
    c.train.epochs = 60
    c.train.steps_per_epoch = -1  # < 0: one pass over the train split
    c.train.learning_rate = 1e-3
    c.train.weight_decay = 1e-5
    c.train.warmup_epochs = 2
    c.train.schedule = "cosine"  # cosine | constant
    c.train.clipnorm = 5.0  # per-replica global-norm clip; 0 = off
    c.train.early_stopping_patience = 15
    c.train.selection_metric = "val_loss"
    c.train.mixed_precision = False
    c.train.deterministic_ops = False
    c.train.backup_every_steps = 50
    c.train.log_every_steps = 10

    c.classical = ml_collections.ConfigDict()
    c.classical.smooth_sectors = 5
    c.classical.smooth_frames = 3
    c.classical.threshold = -0.02
    c.classical.regularize_sectors = 9
    return c


def validate_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Raises ValueError on an inconsistent config; returns it otherwise."""
    if c.model.kind not in EXPERIMENT_KINDS:
        raise ValueError(f"model.kind={c.model.kind!r} not in {EXPERIMENT_KINDS}")
    if not constants.MIN_FRAMES <= c.data.num_frames <= constants.MAX_FRAMES:
        raise ValueError(f"data.num_frames={c.data.num_frames} out of range")
    if c.data.num_sectors < constants.NUM_SECTORS:
        raise ValueError(f"data.num_sectors must be >= {constants.NUM_SECTORS}")
    if c.data.drop_last_frames < 0:
        raise ValueError("data.drop_last_frames must be >= 0")
    if c.data.mixup_alpha < 0 or c.data.noise_std < 0:
        raise ValueError("data.mixup_alpha and data.noise_std must be >= 0")
    if c.train.batch_size <= 0 or c.train.epochs <= 0:
        raise ValueError("train.batch_size and train.epochs must be positive")
    if c.train.learning_rate <= 0:
        raise ValueError("train.learning_rate must be positive")
    if c.train.selection_metric not in SELECTION_METRICS:
        raise ValueError(
            f"train.selection_metric={c.train.selection_metric!r} not in "
            f"{sorted(SELECTION_METRICS)}"
        )
    if c.model.kind == "classification_only" and "tos" in c.train.selection_metric:
        raise ValueError("classification_only has no TOS to select on")
    if (
        c.model.kind in ("regression_only", "isbi2021")
        and "lma" in c.train.selection_metric
    ):
        raise ValueError(f"{c.model.kind} has no LMA head to select on")
    if set(c.loss.weights.keys()) - {"tos", "lma"}:
        raise ValueError(f"loss.weights keys must be tos/lma, got {c.loss.weights}")
    if c.model.kind != "classical" and c.model.kind != "isbi2021":
        pools = c.model.frame_pools
        if not 0 <= pools <= len(c.model.trunk_channels):
            raise ValueError("model.frame_pools must be <= len(trunk_channels)")
        if c.data.num_frames % (2**pools):
            raise ValueError(
                f"data.num_frames={c.data.num_frames} not divisible by 2^{pools}"
            )
    return c


def load_experiment(name_or_path: str) -> ml_collections.ConfigDict:
    """`get_config()` of experiments/NAME.py (or of a config file path)."""
    import importlib.util
    import os

    path = name_or_path
    if not path.endswith(".py"):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(repo, "experiments", f"{name_or_path}.py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"experiment config {path} not found")
    spec = importlib.util.spec_from_file_location(f"experiment_{os.getpid()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return validate_config(module.get_config())
