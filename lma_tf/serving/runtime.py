"""Running an export: numpy in, numpy out, on ONNX Runtime or TensorFlow.

`load_model(path, runtime)` finds the version to use (`layout`) and returns
a callable `(strain (B, 126, F), frame_period_ms (B,)) -> {output: (B, 126)}`:

  OnnxModel     model.onnx on ONNX Runtime; imports neither TensorFlow nor
                Keras (the serving path of the `serve` extra).
  ServingModel  the SavedModel's `serving_default` on TensorFlow.

Both check every request with `contract.check_inputs_np` before it reaches
the runtime and the outputs with `contract.check_outputs_np`, so both give
the same errors for the same inputs. A damaged or truncated export fails
once, when loaded, with a `ModelLoadError` naming it, never with the
runtime's own traceback.
"""

from __future__ import annotations

import os

import numpy as np

from lma_tf import constants
from lma_tf.errors import LmaError, UsageError
from lma_tf.serving import contract, layout

RUNTIMES = layout.RUNTIMES  # auto (ONNX when the version has it), onnx, tensorflow


class ModelLoadError(LmaError):
    """The export is damaged, incomplete or lacks the serving signature."""


class ModelNotFoundError(ModelLoadError, UsageError):
    """No export of the kind asked for at the path given (exit status 2)."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _damaged(path: str, what: str, e: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load the {what} {path} ({type(e).__name__}: {_first_line(e)}): "
        "it is damaged or incomplete; export it again"
    )


def _no_outputs() -> dict[str, np.ndarray]:
    """The outputs of an empty batch, without calling a runtime."""
    shape = (0, constants.NUM_SECTORS)
    return {k: np.zeros(shape, np.float32) for k in contract.OUTPUT_KEYS}


class OnnxModel:
    """model.onnx of an export version on ONNX Runtime (CPU)."""

    runtime = "onnx"

    def __init__(self, version_dir: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelLoadError(
                f"the ONNX export {version_dir} needs onnxruntime ({e}): "
                "pip install -e '.[serve]', or use --runtime=tensorflow"
            ) from None
        self.path = version_dir
        onnx_file = os.path.join(version_dir, layout.ONNX_FILE)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no graph-rewrite notes
        # Idle threads sleep instead of spinning: on a shared or busy CPU,
        # spinning threads fight the one doing the work (several times
        # slower on a loaded 2-core machine), for a gain of microseconds.
        for pool in ("intra", "inter"):
            options.add_session_config_entry(f"session.{pool}_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                onnx_file, options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own unexported types
            raise _damaged(onnx_file, "ONNX model", e) from None
        names = {o.name for o in self._session.get_outputs()}
        missing = set(contract.OUTPUT_KEYS) - names
        if missing:
            raise ModelLoadError(
                f"{onnx_file} lacks the outputs {sorted(missing)}: not an lma_tf "
                "export; export it again"
            )

    def __call__(self, strain, frame_period_ms) -> dict[str, np.ndarray]:
        """(B, 126, F) strain + (B,) periods -> the three (B, 126) outputs.

        Raises:
          contract.InputError: a request outside the contract.
        """
        x, p = contract.check_inputs_np(strain, frame_period_ms)
        if not len(x):
            return _no_outputs()
        feed = {contract.STRAIN_INPUT: x, contract.PERIOD_INPUT: p}
        values = self._session.run(list(contract.OUTPUT_KEYS), feed)
        return contract.check_outputs_np(dict(zip(contract.OUTPUT_KEYS, values)))


class ServingModel:
    """The `serving_default` signature of a SavedModel on TensorFlow.

    Holds the loaded SavedModel too: its variables live only as long as it.
    """

    runtime = "tensorflow"

    def __init__(self, version_dir: str) -> None:
        import tensorflow as tf

        # What goes wrong reading a damaged SavedModel: a truncated variables
        # file gives IndexError, a damaged index an OpError, a damaged graph
        # an OSError or a protobuf DecodeError (a ValueError).
        load_errors = (LookupError, ValueError, OSError, tf.errors.OpError)
        self.path = version_dir
        try:
            self._loaded = tf.saved_model.load(version_dir)
        except load_errors as e:
            raise _damaged(version_dir, "SavedModel", e) from None
        signature = contract.SERVING_SIGNATURE
        if signature not in self._loaded.signatures:
            raise ModelLoadError(f"{version_dir} has no {signature!r} signature")
        self._fn = self._loaded.signatures[signature]
        self._tf = tf

    def __call__(self, strain, frame_period_ms) -> dict[str, np.ndarray]:
        """(B, 126, F) strain + (B,) periods -> the three (B, 126) outputs.

        Raises:
          contract.InputError: a request outside the contract (the same
            conditions as the in-graph checks).
        """
        x, p = contract.check_inputs_np(strain, frame_period_ms)
        if not len(x):
            return _no_outputs()
        tf = self._tf
        out = self._fn(
            **{
                contract.STRAIN_INPUT: tf.constant(x),
                contract.PERIOD_INPUT: tf.constant(p),
            }
        )
        return contract.check_outputs_np(
            {k: out[k].numpy() for k in contract.OUTPUT_KEYS}
        )


def load_model(path: str, runtime: str = "auto") -> OnnxModel | ServingModel:
    """The model of export `path` (a version dir, or the base for its latest).

    `auto` takes the highest version holding either format and runs its
    model.onnx on ONNX Runtime when it has one, else its SavedModel on
    TensorFlow; `onnx` and `tensorflow` take the highest version holding
    that format.

    Raises:
      ModelNotFoundError: no such export at `path`, or an unknown runtime.
      ModelLoadError: the export is damaged or onnxruntime is missing.
    """
    if runtime not in RUNTIMES:
        raise ModelNotFoundError(
            f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
        )
    try:
        version_dir = layout.latest_export_dir(path, runtime)
    except FileNotFoundError as e:
        raise ModelNotFoundError(str(e)) from None
    if runtime == "onnx" or (runtime == "auto" and layout.is_onnx(version_dir)):
        return OnnxModel(version_dir)
    return ServingModel(version_dir)
