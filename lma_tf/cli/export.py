"""`lma-tf export`: a trained run as a versioned SavedModel and ONNX model.

  lma-tf export --model_dir=M[,M2,...] --export_dir=E
      [--format=saved_model,onnx|saved_model|onnx|both] [--version=N]

Several run dirs export one model averaging them (an ensemble of seeds).

writes `E/<N>/` (N: the next free version unless given), by default with
both the SavedModel and model.onnx; see `lma_tf.serving.export` and
`docs/serving.md`.
"""

from __future__ import annotations

from absl import flags

from lma_tf import cli
from lma_tf.serving import layout  # standard library only

_MODEL_DIR = flags.DEFINE_string(
    "model_dir",
    None,
    "Trained run dir (config.json and best/ from `lma-tf train`); several, "
    "comma-separated, export their average.",
)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Base dir; the export goes to <dir>/<N>."
)
_FORMAT = flags.DEFINE_string(
    "format",
    ",".join(layout.FORMATS),
    "What the version holds: saved_model, onnx, both (comma-separated or "
    "`both`). The default leaves ONNX out, with a warning, without tf2onnx.",
)
_VERSION = flags.DEFINE_integer("version", None, "Version number (default: next free).")


def main(argv: list[str]) -> None:
    """Checks the flags (before TensorFlow loads), then `export.export`."""
    from lma_tf.errors import LmaError, UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if not _MODEL_DIR.value:
        raise UsageError("--model_dir is required (a trained run dir)")
    if not _EXPORT_DIR.value:
        raise UsageError("--export_dir is required (the base dir of the versions)")
    if _VERSION.value is not None and _VERSION.value < 0:
        raise UsageError(f"--version must be >= 0, got {_VERSION.value}")
    from lma_tf.serving import export

    # Only a format given on the command line is explicit (see export_model).
    fmt = _FORMAT.value if flags.FLAGS["format"].present else None
    try:
        path = export.export(_MODEL_DIR.value, _EXPORT_DIR.value, fmt, _VERSION.value)
    except FileNotFoundError:
        raise  # cli.run: a usage error
    except OSError as e:  # e.g. a full disk or a read-only export dir
        raise LmaError(f"cannot write the export under {_EXPORT_DIR.value}: {e}") from e
    written = [f for f in layout.FORMATS if layout.HAS_FORMAT[f](path)]
    print(f"[export] wrote {' and '.join(written)} to {path}")


if __name__ == "__main__":
    cli.run("export", main)
