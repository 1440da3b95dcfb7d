"""Export a trained model for serving: a versioned SavedModel, or ONNX.

  python -m lma_tf.serving.export --model_dir=M --export_dir=E \
      [--format=saved_model|onnx] [--version=N]

writes `E/<N>/` (N defaults to the next free integer, the layout TensorFlow
Serving and Triton poll). The version directory is built under a hidden
temporary sibling (`E/.tmp-...`) and renamed into place only once complete,
so a half-written export never looks like a servable version.

The SavedModel has two signatures, both with all preprocessing in the graph
(the very `lma_tf.data.preprocess` ops the training pipeline applies, and the
normalisation with the train-split statistics inside the Keras model), so
there is no train/serve skew:

  serving_default(strain: float32 (batch, 126, F), frame_period_ms: float32
      (batch,)). F may be any frame count in [16, 128]. `frame_period_ms` is a
      required input (a signature has no optional inputs): send 17.0, the
      DENSE convention, when in doubt. Other periods are resampled to the
      training grid, example by example.
  serve_examples(examples: string (batch,)): serialized `tf.train.Example`s
      holding at least `strain/matrix`, `strain/num_frames` and optionally
      `strain/frame_period_ms`, parsed with `features.SERVING_FEATURE_SPEC`
      (the training feature spec; examples of one batch may differ in F).

Both return, each (batch, 126) float32:
  tos_ms: regressed time to onset of shortening, ms (>= 17).
  lma_probability: P(scar-free late activation) = softmax(lma logits)[..., 1].
  combined_tos_ms: tos_ms, set to 17 ms where lma_probability < 0.5 (the
      paper's combined output).

Models without a classification head (`regression_only`, `isbi2021`) export
with lma_probability = 1.0 where tos_ms > 17 + `constants.LMA_TOS_EPS_MS`
(the label rule of the records), else 0.0; combined_tos_ms follows from it.
`classification_only` (no TOS head) and `classical` (no network) are refused.

ONNX (`--format=onnx`, needs the `onnx` extra: tf2onnx, onnx, onnxruntime)
converts the `serving_default` function, with the same two inputs and three
outputs and a dynamic frame axis, to `E/<N>/model.onnx` (Triton's layout).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable

import keras
import ml_collections
import tensorflow as tf

from lma_tf import atomic, constants
from lma_tf.data import features, preprocess
from lma_tf.models import networks as lma_model
from lma_tf.training import train_lib as lma_train

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
STRAIN_INPUT = "strain"
PERIOD_INPUT = "frame_period_ms"
EXAMPLES_INPUT = "examples"
TOS_MS = "tos_ms"
LMA_PROBABILITY = "lma_probability"
COMBINED_TOS_MS = "combined_tos_ms"
OUTPUT_KEYS = (TOS_MS, LMA_PROBABILITY, COMBINED_TOS_MS)
FORMATS = ("saved_model", "onnx")
ONNX_FILE = "model.onnx"
# Written next to the export; TensorFlow Serving ignores assets.extra.
EXPORT_INFO = os.path.join("assets.extra", "lma_tf_export.json")
ONNX_OPSET = 17

_TOS_KINDS = ("multitask", "regression_only", "isbi2021")
_VERSION_RE = re.compile(r"^\d+$")


class ExportError(RuntimeError):
    """The model directory cannot be exported (no checkpoint, unsupported kind)."""


def strain_signature() -> list[tf.TensorSpec]:
    """Input specs of `serving_default`: raw strain and per-slice frame period."""
    return [
        tf.TensorSpec([None, constants.NUM_SECTORS, None], tf.float32, STRAIN_INPUT),
        tf.TensorSpec([None], tf.float32, PERIOD_INPUT),
    ]


def examples_signature() -> list[tf.TensorSpec]:
    """Input spec of `serve_examples`: a batch of serialized tf.Examples."""
    return [tf.TensorSpec([None], tf.string, EXAMPLES_INPUT)]


def _check_frames(num_frames: tf.Tensor) -> list:
    """In-graph checks of the data contract's frame range (clear serving errors)."""
    return [
        tf.debugging.assert_greater_equal(
            num_frames,
            tf.cast(constants.MIN_FRAMES, num_frames.dtype),
            message=f"strain needs at least {constants.MIN_FRAMES} frames",
        ),
        tf.debugging.assert_less_equal(
            num_frames,
            tf.cast(constants.MAX_FRAMES, num_frames.dtype),
            message=f"strain may have at most {constants.MAX_FRAMES} frames",
        ),
    ]


def _check_periods(frame_period_ms: tf.Tensor) -> list:
    """In-graph checks that every frame period is a positive finite number."""
    return [
        tf.debugging.assert_positive(
            frame_period_ms, message="frame_period_ms must be positive"
        ),
        tf.debugging.assert_all_finite(
            frame_period_ms, message="frame_period_ms must be finite"
        ),
    ]


def _fit_one(
    strain: tf.Tensor, frame_period_ms: tf.Tensor, data: ml_collections.ConfigDict
) -> tf.Tensor:
    """One (126, F) slice -> (126, T): exactly `pipeline.parse_and_fit`'s ops."""
    strain = preprocess.resample_frames(strain, frame_period_ms, data.frame_period_ms)
    return preprocess.fit_frames(strain, data.num_frames, data.drop_last_frames)


def _fit_each(
    strains: tf.Tensor, periods: tf.Tensor, data: ml_collections.ConfigDict
) -> tf.Tensor:
    """Per-example `_fit_one` over a batch (each may resample to its own length)."""
    spec = tf.TensorSpec([constants.NUM_SECTORS, data.num_frames], tf.float32)
    return tf.map_fn(
        lambda a: _fit_one(a[0], a[1], data),
        (strains, periods),
        fn_output_signature=spec,
    )


def fit_strain_batch(
    strain: tf.Tensor, frame_period_ms: tf.Tensor, data: ml_collections.ConfigDict
) -> tf.Tensor:
    """(B, 126, F) raw strain + (B,) periods -> (B, 126, T) model frames.

    When every period of the batch is the same (the usual 17 ms case) the
    ops run once on the whole batch; otherwise example by example, because
    each period resamples to a different length before the crop/pad. Both
    paths compute what `pipeline.parse_and_fit` computes per example.
    """
    strain = tf.convert_to_tensor(strain, tf.float32)
    period = tf.convert_to_tensor(frame_period_ms, tf.float32)
    checks = _check_frames(tf.shape(strain)[-1]) + _check_periods(period)
    checks.append(
        tf.debugging.assert_equal(
            tf.shape(period)[0],
            tf.shape(strain)[0],
            message="frame_period_ms needs one value per strain matrix",
        )
    )
    checks.append(
        tf.debugging.assert_all_finite(strain, message="strain has NaN or inf")
    )
    with tf.control_dependencies(checks):
        strain = tf.identity(strain)
    # period[0] even for an empty batch (any value does then).
    first = tf.concat([period, [float(data.frame_period_ms)]], axis=0)[0]
    uniform = tf.reduce_all(tf.equal(period, first))
    return tf.cond(
        uniform,
        lambda: _fit_one(strain, first, data),
        lambda: _fit_each(strain, period, data),
    )


def fit_examples(
    serialized: tf.Tensor, data: ml_collections.ConfigDict
) -> tuple[tf.Tensor, tf.Tensor]:
    """(B,) serialized tf.Examples -> ((B, 126, T) model frames, (B,) F).

    Parsed with the training feature spec; each example may have its own
    frame count and period.
    """
    parsed = tf.io.parse_example(serialized, features.SERVING_FEATURE_SPEC)
    num_frames = parsed[features.NUM_FRAMES]
    periods = parsed[features.FRAME_PERIOD]
    with tf.control_dependencies(_check_frames(num_frames) + _check_periods(periods)):
        raw = tf.identity(parsed[features.STRAIN])
    spec = tf.TensorSpec([constants.NUM_SECTORS, data.num_frames], tf.float32)

    def one(args):
        matrix = features.decode_strain(args[0], args[1])
        return _fit_one(matrix, args[2], data)

    strain = tf.map_fn(one, (raw, num_frames, periods), fn_output_signature=spec)
    strain = tf.debugging.assert_all_finite(strain, "strain has NaN or inf")
    return strain, num_frames


def outputs_from_model(outputs: dict) -> dict[str, tf.Tensor]:
    """Keras outputs on 128 padded sectors -> the three (B, 126) serving outputs."""
    if lma_model.TOS not in outputs:
        raise ExportError("the model has no TOS head")
    tos = preprocess.unpad_sectors(tf.cast(outputs[lma_model.TOS], tf.float32), 1)
    floor = tf.constant(constants.TOS_FLOOR_MS, tf.float32)
    if lma_model.LMA in outputs:
        logits = preprocess.unpad_sectors(
            tf.cast(outputs[lma_model.LMA], tf.float32), 1
        )
        probability = tf.nn.softmax(logits, axis=-1)[..., 1]
    else:
        late = tos > constants.TOS_FLOOR_MS + constants.LMA_TOS_EPS_MS
        probability = tf.cast(late, tf.float32)
    combined = tf.where(probability < 0.5, floor, tos)
    return {TOS_MS: tos, LMA_PROBABILITY: probability, COMBINED_TOS_MS: combined}


def serving_functions(
    model: keras.Model, config: ml_collections.ConfigDict
) -> tuple[Callable, Callable]:
    """The plain Python bodies of the two signatures (wrap in tf.function)."""
    data = config.data

    def run_model(strain: tf.Tensor) -> dict[str, tf.Tensor]:
        x = preprocess.pad_sectors(strain, data.num_sectors, axis=1)
        return outputs_from_model(model(x, training=False))

    def serve_strain(strain, frame_period_ms):
        return run_model(fit_strain_batch(strain, frame_period_ms, data))

    def serve_examples(examples):
        strain, _ = fit_examples(examples, data)
        return run_model(strain)

    return serve_strain, serve_examples


def check_exportable(config: ml_collections.ConfigDict) -> None:
    """Raises ExportError for experiment kinds the serving outputs cannot cover."""
    kind = config.model.kind
    if kind == "classical":
        raise ExportError(
            "model.kind='classical' is the non-learned onset detector: it has no "
            "network to export (run it with lma_tf.models.classical)"
        )
    if kind == "classification_only":
        raise ExportError(
            "model.kind='classification_only' has no TOS head, so tos_ms and "
            f"combined_tos_ms cannot be served; export one of {_TOS_KINDS}"
        )
    if kind not in _TOS_KINDS:
        raise ExportError(f"model.kind={kind!r} cannot be exported")


def load_trained(model_dir: str) -> tuple[keras.Model, ml_collections.ConfigDict]:
    """The validation-selected Keras model of `model_dir` and its resolved config.

    Raises:
      ExportError: no config.json, an unsupported kind, or no trained checkpoint.
    """
    try:
        config = lma_train.load_config(model_dir)
    except FileNotFoundError as e:
        raise ExportError(str(e)) from None
    check_exportable(config)
    try:
        model = lma_train.restore_best(config, model_dir)
    except FileNotFoundError as e:
        raise ExportError(f"cannot export {model_dir}: {e}") from None
    return model, config


def next_version(export_dir: str) -> int:
    """1 + the largest numeric version under `export_dir` (1 when none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if _VERSION_RE.match(n)]
    return max(versions, default=0) + 1


def latest_version_dir(path: str) -> str:
    """`path` if it is a SavedModel, else its highest version holding one.

    ONNX versions (no saved_model.pb) are skipped.
    """
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = [
            int(n)
            for n in os.listdir(path)
            if _VERSION_RE.match(n)
            and os.path.exists(os.path.join(path, n, "saved_model.pb"))
        ]
        if versions:
            return os.path.join(path, str(max(versions)))
    raise FileNotFoundError(
        f"{path} is neither a SavedModel nor a dir of SavedModel versions"
    )


def _export_info(
    config: ml_collections.ConfigDict, source: str, fmt: str, version: int
) -> dict:
    return {
        "format": fmt,
        "version": version,
        "source_model_dir": os.path.abspath(source) if source else "",
        "model_kind": config.model.kind,
        "signatures": {
            SERVING_SIGNATURE: [STRAIN_INPUT, PERIOD_INPUT],
            EXAMPLES_SIGNATURE: [EXAMPLES_INPUT],
        },
        "outputs": list(OUTPUT_KEYS),
        "frames_range": [constants.MIN_FRAMES, constants.MAX_FRAMES],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "config": config.to_dict(),
    }


def _write_json(path: str, obj: dict) -> None:
    atomic.write_json(path, obj, sort_keys=True)


def write_saved_model(
    model: keras.Model, config: ml_collections.ConfigDict, path: str
) -> None:
    """Writes the two-signature SavedModel of `model` to `path` (not atomic)."""
    serve_strain, serve_examples = serving_functions(model, config)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_SIGNATURE, serve_strain, strain_signature())
    archive.add_endpoint(EXAMPLES_SIGNATURE, serve_examples, examples_signature())
    archive.write_out(path, verbose=False)


def write_onnx(
    model: keras.Model,
    config: ml_collections.ConfigDict,
    path: str,
    opset: int = ONNX_OPSET,
) -> None:
    """Converts the `serving_default` function to ONNX at `path` (tf2onnx)."""
    try:
        import tf2onnx
    except ImportError as e:
        raise ExportError(
            f"--format=onnx needs tf2onnx ({e}): pip install -e '.[onnx]'"
        ) from None
    serve_strain, _ = serving_functions(model, config)
    fn = tf.function(serve_strain, input_signature=strain_signature(), autograph=False)
    model_proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=strain_signature(), opset=opset
    )
    _name_onnx_dims(model_proto)
    with open(path, "wb") as f:
        f.write(model_proto.SerializeToString())


def _name_onnx_dims(model_proto) -> None:
    """Names the dynamic axes `batch` and `frames` (tf2onnx leaves `unk__N`)."""
    names = {
        STRAIN_INPUT: ("batch", None, "frames"),
        PERIOD_INPUT: ("batch",),
        **{k: ("batch", None) for k in OUTPUT_KEYS},
    }
    graph = model_proto.graph
    for value in list(graph.input) + list(graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, names[value.name]):
            if name is not None:
                dim.dim_param = name


def export_model(
    model: keras.Model,
    config: ml_collections.ConfigDict,
    export_dir: str,
    *,
    fmt: str = "saved_model",
    version: int | None = None,
    source_model_dir: str = "",
) -> str:
    """Exports `model` atomically to `export_dir/<version>`; returns that path.

    Raises:
      ExportError: the version exists already, or the format is unknown.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    check_exportable(config)
    os.makedirs(export_dir, exist_ok=True)
    version = next_version(export_dir) if version is None else int(version)
    if version < 0:
        raise ExportError(f"version must be >= 0, got {version}")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise ExportError(f"{final} exists already: choose another --version")
    tmp = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if fmt == "saved_model":
            write_saved_model(model, config, tmp)
        else:
            os.makedirs(tmp)
            write_onnx(model, config, os.path.join(tmp, ONNX_FILE))
        info = _export_info(config, source_model_dir, fmt, version)
        _write_json(os.path.join(tmp, EXPORT_INFO), info)
        os.rename(tmp, final)  # atomic; fails if another export took `version`
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def export(
    model_dir: str,
    export_dir: str,
    fmt: str = "saved_model",
    version: int | None = None,
) -> str:
    """Exports the best checkpoint of a trained `model_dir`; returns the version dir."""
    model, config = load_trained(model_dir)
    return export_model(
        model, config, export_dir, fmt=fmt, version=version, source_model_dir=model_dir
    )


def main(argv: list[str]) -> None:
    """absl entry point: flags -> `export`."""
    from lma_tf.cli import quiet_logs

    quiet_logs()
    del argv
    from absl import flags

    f = flags.FLAGS
    try:
        path = export(f.model_dir, f.export_dir, f.format, f.version)
    except (ExportError, OSError) as e:
        sys.exit(f"export: error: {e}")
    print(f"[export] wrote {f.format} to {path}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("model_dir", None, "Trained model dir (lma_tf.training.train_lib).")
    flags.DEFINE_string("export_dir", None, "Base dir; the export goes to <dir>/<N>.")
    flags.DEFINE_enum("format", "saved_model", list(FORMATS), "Export format.")
    flags.DEFINE_integer("version", None, "Version number (default: next free).")
    flags.mark_flags_as_required(["model_dir", "export_dir"])


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
