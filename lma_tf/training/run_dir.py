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
"""

from __future__ import annotations

import json
import os
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
