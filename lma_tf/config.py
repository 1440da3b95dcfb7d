"""The one config object (ml_collections) passed down through every stage.

`experiments/*.py` start from `base_config()` and change what makes each
experiment; command-line overrides (`--config.train.epochs=3`) come on top.
The library never reads absl FLAGS: binaries hand it this object.
"""

from __future__ import annotations

import difflib
import importlib.util
import os

import ml_collections

from lma_tf import constants
from lma_tf.errors import UsageError
from lma_tf.models import registry

EXPERIMENT_KINDS = registry.names()  # the model kinds, one experiment each

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
    # Random mirroring of the ring (the other analysis direction). Off: on
    # the tethered cohort's validation split it cost LMA accuracy, and the
    # mirrored test-time view (model.test_time_mirror) covers the direction.
    c.data.augment_mirror = False
    c.data.mixup_alpha = 0.0
    c.data.noise_std = 0.0
    # The authors' preprocessing and augmentation, as options (xing2023):
    c.data.sector_padding = "circular"  # circular | edge (their copy_boundary)
    # Fixed expansion of the train split: rolled copies of every slice by each
    # listed shift, and 0.5/0.5 mixes of random pairs, scar and scar-free
    # slices apart (lma_tf/data/expansion.py).
    c.data.expand_shifts_scar = ()
    c.data.expand_shifts_scar_free = ()
    c.data.expand_mixup_scar = 0
    c.data.expand_mixup_scar_free = 0

    c.model = ml_collections.ConfigDict()
    c.model.kind = "multitask"
    c.model.trunk_channels = (16, 32, 64)
    c.model.kernel_size = 3
    c.model.frame_pools = 3  # how many of the trunk blocks halve the frame axis
    c.model.circular_padding = True
    c.model.head_channels = (64,)
    c.model.head_units = (64,)
    c.model.dropout = 0.1
    # Weight of the old moving statistics in BatchNorm. 0.9 (PyTorch's 0.1):
    # a small train split gives few steps per epoch, and at Keras' 0.99 the
    # inference statistics lag the weights for tens of epochs (docs/model.md).
    c.model.bn_momentum = 0.9
    # Residual dilated convolutions along the ring after the trunk, one per
    # dilation (e.g. (2, 4, 8, 16)): each sector sees more of the ring.
    c.model.ring_dilations = (2, 4, 8)
    # Leaner variants (docs/model.md): depthwise-separable convolutions, and
    # how many trunk blocks halve the sector axis (the heads restore it).
    c.model.separable = False
    c.model.sector_pools = 2
    # TOS output: "dense" (a linear unit per sector) or "onset" (the expected
    # time over a full-resolution per-frame onset map; docs/model.md).
    c.model.tos_output = "dense"
    c.model.onset_channels = 16
    # Outputs averaged over rotated and mirrored copies of the ring at
    # inference (lma_tf/models/test_time.py; chosen on validation).
    c.model.test_time_shifts = 4
    c.model.test_time_mirror = True
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
    # Optimizer steps per tf.function call (a loop inside the call: fewer
    # Python round trips), and XLA compilation of each step (docs/model.md).
    c.train.steps_per_execution = 1
    c.train.jit_compile = False

    c.classical = ml_collections.ConfigDict()
    c.classical.smooth_sectors = 5
    c.classical.smooth_frames = 3
    c.classical.threshold = -0.02
    c.classical.regularize_sectors = 9
    return c


def validate_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Raises ValueError on an inconsistent config; returns it otherwise."""
    kind = registry.get(c.model.kind)  # ValueError naming the known kinds
    if not constants.MIN_FRAMES <= c.data.num_frames <= constants.MAX_FRAMES:
        raise ValueError(f"data.num_frames={c.data.num_frames} out of range")
    if c.data.num_sectors < constants.NUM_SECTORS:
        raise ValueError(f"data.num_sectors must be >= {constants.NUM_SECTORS}")
    if c.data.drop_last_frames < 0:
        raise ValueError("data.drop_last_frames must be >= 0")
    if c.data.mixup_alpha < 0 or c.data.noise_std < 0:
        raise ValueError("data.mixup_alpha and data.noise_std must be >= 0")
    if c.data.sector_padding not in ("circular", "edge"):
        raise ValueError(
            f"data.sector_padding={c.data.sector_padding!r} not in circular, edge"
        )
    if c.data.expand_mixup_scar < 0 or c.data.expand_mixup_scar_free < 0:
        raise ValueError("data.expand_mixup_scar and _scar_free must be >= 0")
    if c.train.batch_size <= 0 or c.train.epochs <= 0:
        raise ValueError("train.batch_size and train.epochs must be positive")
    if c.train.learning_rate <= 0:
        raise ValueError("train.learning_rate must be positive")
    fused = c.train.get("steps_per_execution", 1)
    if isinstance(fused, bool) or not isinstance(fused, int) or fused < 1:
        raise ValueError(f"train.steps_per_execution={fused!r} must be an int >= 1")
    if not isinstance(c.train.get("jit_compile", False), bool):
        raise ValueError("train.jit_compile must be True or False")
    if c.train.get("jit_compile", False) and c.train.deterministic_ops:
        raise ValueError(
            "train.jit_compile and train.deterministic_ops cannot both be on: "
            "XLA has no deterministic max-pool gradient"
        )
    if c.train.backup_every_steps < 1:
        raise ValueError("train.backup_every_steps must be >= 1")
    if c.train.selection_metric not in SELECTION_METRICS:
        raise ValueError(
            f"train.selection_metric={c.train.selection_metric!r} not in "
            f"{sorted(SELECTION_METRICS)}"
        )
    if not kind.has_tos and "tos" in c.train.selection_metric:
        raise ValueError(f"{kind.name} has no TOS head to select on")
    if not kind.has_lma and "lma" in c.train.selection_metric:
        raise ValueError(f"{kind.name} has no LMA head to select on")
    if set(c.loss.weights.keys()) - {"tos", "lma"}:
        raise ValueError(f"loss.weights keys must be tos/lma, got {c.loss.weights}")
    shifts = c.model.get("test_time_shifts", 1)
    if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 1:
        raise ValueError(
            f"model.test_time_shifts={shifts!r} must be an int >= 1 (1: no rotations)"
        )
    if not isinstance(c.model.get("test_time_mirror", False), bool):
        raise ValueError("model.test_time_mirror must be True or False")
    if not isinstance(c.data.get("augment_mirror", False), bool):
        raise ValueError("data.augment_mirror must be True or False")
    if kind.pools_frames:
        pools = c.model.frame_pools
        if not 0 <= pools <= len(c.model.trunk_channels):
            raise ValueError("model.frame_pools must be <= len(trunk_channels)")
        if c.data.num_frames % (2**pools):
            raise ValueError(
                f"data.num_frames={c.data.num_frames} not divisible by 2^{pools}"
            )
        _validate_lean_model(c)
    return c


def _validate_lean_model(c: ml_collections.ConfigDict) -> None:
    """The network-shape options of `networks.build_cnn` (model block)."""
    m = c.model
    if m.get("tos_output", "dense") not in ("dense", "onset"):
        raise ValueError(f"model.tos_output={m.tos_output!r} not in dense, onset")
    channels = m.get("onset_channels", 16)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"model.onset_channels={channels!r} must be an int >= 1")
    momentum = m.get("bn_momentum", 0.99)
    if isinstance(momentum, bool) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"model.bn_momentum={momentum!r} must be in [0, 1)")
    if not isinstance(m.get("separable", False), bool):
        raise ValueError("model.separable must be True or False")
    pools = m.get("sector_pools", 0)
    if not isinstance(pools, int) or not 0 <= pools <= len(m.trunk_channels):
        raise ValueError(
            f"model.sector_pools={pools!r} must be in 0..{len(m.trunk_channels)} "
            f"(one per trunk block; model.trunk_channels={tuple(m.trunk_channels)}): "
            "set model.sector_pools too when you shorten the trunk"
        )
    if c.data.num_sectors % (2**pools):
        raise ValueError(
            f"data.num_sectors={c.data.num_sectors} not divisible by 2^{pools} "
            "(model.sector_pools)"
        )
    ring = c.data.num_sectors // 2**pools
    for dilation in m.get("ring_dilations", ()):
        if isinstance(dilation, bool) or not isinstance(dilation, int):
            raise ValueError(f"model.ring_dilations: {dilation!r} is not an int")
        if not 1 <= dilation < ring:
            raise ValueError(
                f"model.ring_dilations: {dilation} must be in 1..{ring - 1} "
                f"(the trunk's ring has {ring} sectors)"
            )


def experiments_dir() -> str:
    """The folder of the named experiment configs.

    In a source checkout it is the top-level `experiments/`; an installed
    wheel ships the same files as the `lma_tf.experiments` package.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(os.path.dirname(here), "experiments"),
        os.path.join(here, "experiments"),
    ):
        if os.path.isfile(os.path.join(candidate, "multitask.py")):
            return candidate
    raise UsageError("no experiments folder found: is lma_tf installed completely?")


def experiment_names() -> list[str]:
    """The named experiments (file stems of `experiments/*.py`)."""
    return sorted(
        f[:-3]
        for f in os.listdir(experiments_dir())
        if f.endswith(".py") and not f.startswith("_")
    )


def experiment_path(name_or_path: str) -> str:
    """The config file of an experiment given by name (`multitask`) or path.

    Raises:
      UsageError: no such experiment (the message lists the known names and
        the closest match).
    """
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise UsageError(f"experiment config file {name_or_path} not found")
        return name_or_path
    path = os.path.join(experiments_dir(), f"{name_or_path}.py")
    if os.path.isfile(path):
        return path
    names = experiment_names()
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(
        f"unknown experiment {name_or_path!r}{hint}; known: {', '.join(names)}"
    )


def load_experiment(name_or_path: str) -> ml_collections.ConfigDict:
    """`get_config()` of an experiment given by name or by config file path."""
    path = experiment_path(name_or_path)
    stem = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"lma_tf_experiment_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return validate_config(module.get_config())


def field_defaults(
    c: ml_collections.ConfigDict, prefix: str = ""
) -> list[tuple[str, object]]:
    """Every leaf field of `c` as (dotted name, value), in sorted order."""
    out: list[tuple[str, object]] = []
    for key in c.keys():
        value = c[key]
        if isinstance(value, ml_collections.ConfigDict):
            out.extend(field_defaults(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def fields_help(c: ml_collections.ConfigDict | None = None) -> str:
    """The `--config.FIELD=VALUE` overrides of `c` with their defaults, for --help.

    absl lists `--config` itself but not the fields under it, so `lma-tf
    train --help` appends this text (cheap: no TensorFlow).
    """
    c = base_config() if c is None else c
    lines = [
        "config fields (override with --config.FIELD=VALUE; defaults of the",
        f"{c.name!r} experiment, which other experiments change in places):",
    ]
    lines += [
        f"  --config.{name}={_shell_value(value)}" for name, value in field_defaults(c)
    ]
    return "\n".join(lines) + "\n"


def _shell_value(value: object) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, tuple):
        inner = ",".join(str(v) for v in value) + ("," if len(value) == 1 else "")
        return f"'({inner})'"
    if isinstance(value, str):
        return value or "''"
    return str(value)
