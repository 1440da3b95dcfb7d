"""The on-disk layout of exports: numbered versions under an export dir.

  export_dir/
    1/                 a SavedModel (saved_model.pb, variables/, assets.extra/)
    2/model.onnx       or an ONNX model (Triton's layout), + assets.extra/
    .tmp-3-<pid>/      an export in progress (renamed to 3/ once complete)

TensorFlow Serving and Triton poll this layout. Standard library only, so
that the command layer and predict can read it without TensorFlow or the
training code.
"""

from __future__ import annotations

import os
import re

FORMATS = ("saved_model", "onnx")
SAVED_MODEL_PB = "saved_model.pb"
ONNX_FILE = "model.onnx"
# Written next to the export; TensorFlow Serving ignores assets.extra.
EXPORT_INFO = os.path.join("assets.extra", "lma_tf_export.json")
# The marks of a training run dir (`lma_tf.training.run_dir.CONFIG_JSON` and
# `BEST_DIR`; not imported, so that serving never loads the training code).
RUN_CONFIG_JSON = "config.json"
RUN_BEST_DIR = "best"

_VERSION_RE = re.compile(r"^\d+$")


def next_version(export_dir: str) -> int:
    """1 + the largest numeric version under `export_dir` (1 when none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if _VERSION_RE.match(n)]
    return max(versions, default=0) + 1


def is_saved_model(path: str) -> bool:
    return os.path.exists(os.path.join(path, SAVED_MODEL_PB))


def is_training_run(path: str) -> bool:
    """Whether `path` looks like a training run dir (config.json and best/)."""
    return os.path.isfile(os.path.join(path, RUN_CONFIG_JSON)) and os.path.isdir(
        os.path.join(path, RUN_BEST_DIR)
    )


def latest_version_dir(path: str) -> str:
    """`path` if it is a SavedModel, else its highest version holding one.

    ONNX versions (no saved_model.pb) are skipped.

    Raises:
      FileNotFoundError: no SavedModel there; the message says to export
        first when `path` is a training run dir.
    """
    if is_saved_model(path):
        return path
    if os.path.isdir(path):
        versions = [
            int(n)
            for n in os.listdir(path)
            if _VERSION_RE.match(n) and is_saved_model(os.path.join(path, n))
        ]
        if versions:
            return os.path.join(path, str(max(versions)))
    if is_training_run(path):
        raise FileNotFoundError(
            f"{path} is a training run dir, not an export: export it first with "
            f"`lma-tf export --model_dir={path} --export_dir=...` and pass "
            "that export dir"
        )
    raise FileNotFoundError(
        f"{path} is neither a SavedModel nor a dir of SavedModel versions"
    )
