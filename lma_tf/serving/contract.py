"""The serving contract: what an exported model takes, what it refuses, what it returns.

Numpy and the standard library only, so that the TensorFlow-free serving
path (ONNX Runtime) can import it; the TensorFlow side of the same contract
(the signatures and their in-graph checks) is `signatures`. Export writes it
into the SavedModel and the ONNX file, predict calls it; `docs/serving.md`
documents it for clients.

  serving_default(strain: float32 (batch, 126, F), frame_period_ms: float32
      (batch,)). F may be any frame count in [16, 128]; each period must be a
      finite number of ms in [5, 100] and the strain finite, within [-1, 1]
      (the ranges of the data contract, `slices.validate_slice`). Other
      periods than the model's are resampled to the training grid.
  serve_examples(examples: string (batch,)): serialized `tf.train.Example`s
      (SavedModel only), each with its own frame count and period.

Outputs, each (batch, 126) float32: `tos_ms` (floored at 17 ms),
`lma_probability`, `combined_tos_ms` (see `signatures.outputs_from_model`).

`check_inputs_np` is the one numpy check of a request, applied wherever
inputs reach ONNX Runtime (and before the SavedModel, for the same errors);
the in-graph checks of `signatures` refuse the same inputs with the same
messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lma_tf import constants
from lma_tf.data import slices
from lma_tf.errors import UsageError

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
STRAIN_INPUT = "strain"
PERIOD_INPUT = "frame_period_ms"
EXAMPLES_INPUT = "examples"
# The output names are the prediction CSV's columns (`prediction_csv`).
TOS_MS = "tos_ms"
LMA_PROBABILITY = "lma_probability"
COMBINED_TOS_MS = "combined_tos_ms"
OUTPUT_KEYS = (TOS_MS, LMA_PROBABILITY, COMBINED_TOS_MS)
SIGNATURE_INPUTS = {
    SERVING_SIGNATURE: (STRAIN_INPUT, PERIOD_INPUT),
    EXAMPLES_SIGNATURE: (EXAMPLES_INPUT,),
}
# The ranges of the data contract (`slices.validate_slice`), so that what
# the records tool reads, serving takes.
FRAMES_RANGE = (constants.MIN_FRAMES, constants.MAX_FRAMES)
PERIOD_RANGE_MS = slices.FRAME_PERIOD_RANGE_MS
MAX_ABS_STRAIN = slices.MAX_ABS_STRAIN

# The messages of the checks, shared by the numpy and the in-graph side.
TOO_FEW_FRAMES = f"strain needs at least {constants.MIN_FRAMES} frames"
TOO_MANY_FRAMES = f"strain may have at most {constants.MAX_FRAMES} frames"
BAD_PERIOD = (
    f"frame_period_ms must be a finite number of ms in "
    f"[{PERIOD_RANGE_MS[0]:g}, {PERIOD_RANGE_MS[1]:g}]"
)
BAD_STRAIN = "strain has NaN or inf"
STRAIN_RANGE = (
    f"strain must be within [-{MAX_ABS_STRAIN:g}, {MAX_ABS_STRAIN:g}] "
    "(Ecc is a fraction: -0.15 is 15 % shortening)"
)
PERIOD_COUNT = "frame_period_ms needs one value per strain matrix"
# The SavedModel signatures refuse an empty batch (it would fail deep in the
# network); the runtimes and `lma-tf predict` answer one with empty outputs
# without running the graph, so the numpy checks accept it.
EMPTY_BATCH = "the request holds no strain matrix (batch size 0)"
BAD_OUTPUT = "the model's outputs are not finite"


class InputError(UsageError):
    """A request outside the serving contract (exit status 2)."""


def _as_float32(value: Any, name: str) -> np.ndarray:
    """`value` as a float32 array; InputError for non-numbers (text, objects)."""
    array = np.asarray(value)
    kind = array.dtype.kind  # i, u: integers, f: floats (b: bool, c: complex)
    if kind not in "iuf":
        raise InputError(f"{name} must hold real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused below
        return array.astype(np.float32)


def check_inputs_np(strain: Any, frame_period_ms: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checks one `serving_default` request; returns it as float32 arrays.

    The conditions and messages of the in-graph checks, in a fixed order:
    shape (batch, 126, F), F in [16, 128], one period per slice, every
    period finite and in the acquisition range, finite strain, strain
    within [-1, 1].

    Raises:
      InputError: the first condition the request breaks.
    """
    x = _as_float32(strain, STRAIN_INPUT)
    if x.ndim != 3 or x.shape[1] != constants.NUM_SECTORS:
        raise InputError(
            f"strain must have shape (batch, {constants.NUM_SECTORS}, frames), "
            f"got {x.shape}"
        )
    if x.shape[2] < constants.MIN_FRAMES:
        raise InputError(f"{TOO_FEW_FRAMES}, got {x.shape[2]}")
    if x.shape[2] > constants.MAX_FRAMES:
        raise InputError(f"{TOO_MANY_FRAMES}, got {x.shape[2]}")
    p = _as_float32(frame_period_ms, PERIOD_INPUT)
    if p.ndim != 1 or p.shape[0] != x.shape[0]:
        raise InputError(
            f"{PERIOD_COUNT}: strain holds {x.shape[0]}, frame_period_ms has "
            f"shape {p.shape}"
        )
    bad = ~(np.isfinite(p) & (p >= PERIOD_RANGE_MS[0]) & (p <= PERIOD_RANGE_MS[1]))
    if np.any(bad):
        raise InputError(f"{BAD_PERIOD}, got {p[bad][0]!r}")
    if not np.all(np.isfinite(x)):
        raise InputError(BAD_STRAIN)
    if x.size and np.max(np.abs(x)) > MAX_ABS_STRAIN:
        raise InputError(f"{STRAIN_RANGE}, got {np.max(np.abs(x)):g}")
    return x, p


def check_outputs_np(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`outputs` after checking that they are finite.

    A safety net behind the input checks: no valid input is known to give
    NaN or inf, but a client must never receive one as a TOS.

    Raises:
      InputError: an output is NaN or inf.
    """
    for key in OUTPUT_KEYS:
        if not np.all(np.isfinite(outputs[key])):
            raise InputError(f"{BAD_OUTPUT} ({key})")
    return outputs
