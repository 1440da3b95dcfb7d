"""`lma-tf predict`: TOS and LMA for raw DENSE inputs with an exported model.

  lma-tf predict --saved_model=E/<N> (or E: its latest) --input=PATH
      [--input=...] --output=P.csv [--runtime=auto|onnx|tensorflow]
      [--allow_pickle] [--batch_size=64]

Reads files, directories or CSV manifests like `lma-tf convert`, reports each
rejected slice on stderr and writes the prediction CSV; see
`lma_tf.serving.predict` and `docs/serving.md`. With an export holding
model.onnx (the default export) it runs on ONNX Runtime and never imports
TensorFlow.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from lma_tf import cli
from lma_tf.serving import layout  # standard library only

NOTICE = (
    "research use only: not a medical device; models trained on synthetic "
    "data unless you trained your own"
)

_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "Export version dir E/<N> (or E: its latest version)."
)
_RUNTIME = flags.DEFINE_enum(
    "runtime",
    "auto",
    list(layout.RUNTIMES),
    "auto: ONNX Runtime when the version has model.onnx, else TensorFlow.",
)
_INPUT = flags.DEFINE_multi_string(
    "input", None, "File, directory (recursive) or CSV manifest; repeatable."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "CSV to write (one row per slice x sector)."
)
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Read pickled .npy lists (pickle runs code: trust them)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Slices per call of the model.")


def main(argv: list[str]) -> None:
    """Checks the flags (before TensorFlow loads), then `predict.predict`."""
    from lma_tf.errors import LmaError, UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    for name, holder in (
        ("saved_model", _SAVED_MODEL),
        ("input", _INPUT),
        ("output", _OUTPUT),
    ):
        if not holder.value:
            raise UsageError(f"--{name} is required")
    if _BATCH_SIZE.value <= 0:
        raise UsageError(f"--batch_size must be positive, got {_BATCH_SIZE.value}")
    print(f"[predict] {NOTICE}", file=sys.stderr)
    # numpy loads next. Prediction makes no BLAS call worth a thread pool, and
    # starting OpenBLAS's threads is a good part of numpy's import on a busy
    # CPU; a value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from lma_tf.serving import predict

    try:
        result = predict.predict(
            _SAVED_MODEL.value,
            _INPUT.value,
            _OUTPUT.value,
            runtime=_RUNTIME.value,
            allow_pickle=_ALLOW_PICKLE.value,
            batch_size=_BATCH_SIZE.value,
            # Bars on a terminal only: in a log they are noise, and tqdm's
            # import costs more than reading one patient.
            progress=sys.stderr.isatty(),
        )
    except FileNotFoundError:
        raise  # cli.run: a usage error (a missing input)
    except OSError as e:  # e.g. an unreadable input or an unwritable output
        raise LmaError(str(e)) from e
    print(
        f"[predict] {result['num_slices']} slices -> {result['num_rows']} rows in "
        f"{result['output']}; {result['num_rejects']} rejected "
        f"({result['runtime']}: {result['model']})"
    )


if __name__ == "__main__":
    cli.run("predict", main)
