"""The on-disk layout of exports: numbered versions under an export dir.

  export_dir/
    1/                 saved_model.pb, variables/ (the SavedModel), model.onnx
                       (the same model for ONNX Runtime), assets.extra/
    2/                 an export of one format only: either of the two
    .tmp-3-<pid>/      an export in progress (renamed to 3/ once complete)

TensorFlow Serving polls this layout (it ignores model.onnx), and so does
Triton (model.onnx). Standard library only, so that the command layer and
predict can read it without TensorFlow or the training code.
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


def is_onnx(path: str) -> bool:
    return os.path.exists(os.path.join(path, ONNX_FILE))


# Whether a version dir holds each format.
HAS_FORMAT = {"saved_model": is_saved_model, "onnx": is_onnx}
# What each predict runtime needs in a version dir.
_NEEDS = {
    "auto": lambda p: is_saved_model(p) or is_onnx(p),
    "onnx": is_onnx,
    "tensorflow": is_saved_model,
}
RUNTIMES = tuple(_NEEDS)
_WHAT = {
    "auto": "an export (SavedModel or ONNX)",
    "onnx": "an ONNX export (model.onnx)",
    "tensorflow": "a SavedModel",
}


def latest_export_dir(path: str, runtime: str = "auto") -> str:
    """`path` if it holds what `runtime` needs, else its highest such version.

    `runtime` is `auto` (a SavedModel or model.onnx), `onnx` or `tensorflow`.

    Raises:
      FileNotFoundError: nothing usable there; the message says to export
        first when `path` is a training run dir.
    """
    need = _NEEDS[runtime]
    if need(path):
        return path
    if os.path.isdir(path):
        versions = [
            int(n)
            for n in os.listdir(path)
            if _VERSION_RE.match(n) and need(os.path.join(path, n))
        ]
        if versions:
            return os.path.join(path, str(max(versions)))
    if is_training_run(path):
        raise FileNotFoundError(
            f"{path} is a training run dir, not an export: export it first with "
            f"`lma-tf export --model_dir={path} --export_dir=...` and pass "
            "that export dir"
        )
    what = _WHAT[runtime]
    raise FileNotFoundError(f"{path} is neither {what} nor a dir of its versions")


def latest_version_dir(path: str) -> str:
    """`path` if it is a SavedModel, else its highest version holding one.

    Versions holding only ONNX are skipped.

    Raises:
      FileNotFoundError: no SavedModel there (see `latest_export_dir`).
    """
    return latest_export_dir(path, "tensorflow")
