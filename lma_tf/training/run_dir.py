"""The run directory of one experiment: the one place that reads and writes it.

  model_dir/
    config.json          the resolved config (train-split statistics filled in)
    history.json         per-epoch train and validation metrics
    backup/              resume state (tf.train.CheckpointManager)
    best/                weights selected on the validation split
    classical.json       the fitted parameters of the non-learned detector
    training_curves.png, logs/ (TensorBoard)

Evaluation, export and Grad-CAM read a run through these functions only, so
they never import the training loop.

A run directory holds one run. Training into it again resumes that run only
with the same config (`check_reusable`): any other value of a field that
changes what is trained (every field but `HARMLESS_ON_RESUME`) is refused,
naming the fields, and so is a run that cannot be resumed (history or best
weights but no backup). `clear_run` starts over (`lma-tf train --overwrite`).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import ml_collections

from lma_tf import atomic
from lma_tf.errors import UsageError

CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"
BEST_DIR = "best"
BACKUP_DIR = "backup"
CLASSICAL_JSON = "classical.json"
CURVES_PNG = "training_curves.png"
LOGS_DIR = "logs"
# What a run writes into its directory (`clear_run` removes these only).
RUN_FILES = (
    CONFIG_JSON,
    HISTORY_JSON,
    BACKUP_DIR,
    BEST_DIR,
    CLASSICAL_JSON,
    CURVES_PNG,
    LOGS_DIR,
)
# Config fields that may change between a run and its resumption: they
# decide when backups are written, what is logged and whether parsed records
# are cached, never which numbers training computes.
HARMLESS_ON_RESUME = frozenset(
    {
        "name",
        "train.backup_every_steps",
        "train.log_every_steps",
        "train.steps_per_execution",  # the same steps, fused or not
        "data.cache",
        "data.cache_max_mb",
        # How a trained model is run at inference, not what training computes.
        "model.test_time_shifts",
        "model.test_time_mirror",
    }
)
# Fields added after runs were saved: a saved config without one trained
# exactly as with this value, so resuming it is no conflict.
DEFAULT_IF_MISSING = {
    "data.augment_mirror": False,
    "model.tos_output": "dense",
    "model.onset_channels": 16,
}


class RunDirConflict(UsageError):
    """`model_dir` holds another run, or one that cannot be resumed (exit 2)."""


def path(model_dir: str, name: str) -> str:
    return os.path.join(model_dir, name)


def write_json(file_path: str, obj: Any) -> None:
    atomic.write_json(file_path, obj, sort_keys=True)


def save_config(config: ml_collections.ConfigDict, model_dir: str) -> None:
    os.makedirs(model_dir, exist_ok=True)
    write_json(path(model_dir, CONFIG_JSON), config.to_dict())


def load_config(model_dir: str) -> ml_collections.ConfigDict:
    """The resolved config saved by training next to the checkpoints.

    Raises:
      UsageError: `model_dir` is not a trained run directory.
    """
    file_path = path(model_dir, CONFIG_JSON)
    if not os.path.exists(file_path):
        raise UsageError(
            f"{file_path} not found: {model_dir} is not a trained model dir "
            "(train one with `lma-tf train --model_dir=...`)"
        )
    with open(file_path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def load_history(model_dir: str) -> list[dict]:
    file_path = path(model_dir, HISTORY_JSON)
    if not os.path.exists(file_path):
        return []
    with open(file_path, encoding="utf-8") as f:
        return json.load(f)


def save_history(history: list[dict], model_dir: str) -> None:
    write_json(path(model_dir, HISTORY_JSON), history)


def save_classical_params(params: dict, model_dir: str) -> None:
    write_json(path(model_dir, CLASSICAL_JSON), params)


def load_classical_params(config: ml_collections.ConfigDict, model_dir: str) -> dict:
    """The fitted detector parameters, or the config's if it was never fitted."""
    file_path = path(model_dir, CLASSICAL_JSON)
    if os.path.exists(file_path):
        with open(file_path, encoding="utf-8") as f:
            return json.load(f)
    from lma_tf.models import classical

    return classical.params_from_config(config)


def best_checkpoint(model_dir: str) -> str:
    """The validation-selected checkpoint prefix; UsageError if none."""
    import tensorflow as tf

    best = path(model_dir, BEST_DIR)
    latest = tf.train.latest_checkpoint(best)
    if latest is None:
        raise UsageError(
            f"no trained checkpoint in {best}: train first "
            "(`lma-tf train --model_dir=...`)"
        )
    return latest


def restore_best(config: ml_collections.ConfigDict, model_dir: str):
    """Builds the model of `config` and loads its best (validation-selected) weights.

    Raises:
      UsageError: the directory holds no trained checkpoint.
    """
    import tensorflow as tf

    from lma_tf.models import registry

    latest = best_checkpoint(model_dir)
    model = registry.get(config.model.kind).build(config)
    # Every variable of the model must come from the checkpoint: a mismatch
    # (other config, other code) must not leave random weights in place.
    tf.train.Checkpoint(model=model).restore(latest).assert_existing_objects_matched()
    return model


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_differences(saved: dict, new: dict) -> list[str]:
    """`field (saved -> new)` for each dotted field whose value differs.

    Lists and tuples compare alike; `HARMLESS_ON_RESUME` fields are skipped.
    """
    new = json.loads(json.dumps(new, default=atomic.json_default))
    saved, new = _flatten(saved), _flatten(new)
    for key, value in DEFAULT_IF_MISSING.items():
        saved.setdefault(key, value)
        new.setdefault(key, value)
    return [
        f"{k} ({saved.get(k)!r} -> {new.get(k)!r})"
        for k in sorted(set(saved) | set(new))
        if k not in HARMLESS_ON_RESUME and saved.get(k) != new.get(k)
    ]


def has_backup(model_dir: str) -> bool:
    """Whether `model_dir/backup` holds a checkpoint to resume from."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(path(model_dir, BACKUP_DIR)) is not None


def _has_best(model_dir: str) -> bool:
    best = path(model_dir, BEST_DIR)
    return os.path.isdir(best) and any(n.endswith(".index") for n in os.listdir(best))


def check_reusable(config: ml_collections.ConfigDict, model_dir: str) -> None:
    """Refuses to train `config` into a `model_dir` holding another run.

    Fine: an empty or new directory, or a run of the same config (resumed
    from its backup, or refitted for a kind without a network).

    Raises:
      RunDirConflict: the saved config differs (the message names the
        fields), or the run has history or best weights but no backup, or
        training files but no config.json.
    """
    overwrite = "pass --overwrite to start over, or train into a new --model_dir"
    if os.path.exists(path(model_dir, CONFIG_JSON)):
        differ = config_differences(load_config(model_dir).to_dict(), config.to_dict())
        if differ:
            raise RunDirConflict(
                f"{model_dir} holds a run with another config (differs in "
                f"{', '.join(differ)}); rerun with the same config to resume it, "
                f"or {overwrite}"
            )
    backup = has_backup(model_dir)
    trained = os.path.exists(path(model_dir, HISTORY_JSON)) or _has_best(model_dir)
    if trained and not backup:
        raise RunDirConflict(
            f"{model_dir} holds a run that cannot be resumed (history.json or "
            f"best/ but no backup/: the run stopped on a NaN loss, or backup/ "
            f"was removed); {overwrite}"
        )
    if (backup or trained) and not os.path.exists(path(model_dir, CONFIG_JSON)):
        raise RunDirConflict(
            f"{model_dir} holds training files but no config.json, so its "
            f"config cannot be checked; {overwrite}"
        )


def clear_run(model_dir: str) -> None:
    """Removes the files a run wrote into `model_dir` (and nothing else)."""
    for name in RUN_FILES:
        target = path(model_dir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)


def remove_backup(model_dir: str) -> None:
    """Deletes `model_dir/backup`: a state that must not be resumed."""
    shutil.rmtree(path(model_dir, BACKUP_DIR), ignore_errors=True)
