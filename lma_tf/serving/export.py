"""Export a trained model for serving: a versioned SavedModel and ONNX model.

  lma-tf export --model_dir=M --export_dir=E \
      [--format=saved_model,onnx|saved_model|onnx|both] [--version=N]

writes `E/<N>/` (N defaults to the next free integer, the layout TensorFlow
Serving and Triton poll: `layout`). By default the version holds both
formats: the SavedModel (`saved_model.pb`, `variables/`) and `model.onnx`,
the same model for ONNX Runtime, which `lma-tf predict` runs without
TensorFlow. The version directory is built under a hidden temporary sibling
(`E/.tmp-...`) and renamed into place only once complete, so a half-written
export never looks like a servable version.

The SavedModel has the two signatures of `signatures` (`serving_default` on
raw strain + frame periods, `serve_examples` on serialized tf.Examples), with
all preprocessing in the graph: `preprocess.fit_to_model`, the op the
training pipeline applies, and the normalisation with the train-split
statistics inside the Keras model. Outputs: `tos_ms` (floored at 17 ms),
`lma_probability`, `combined_tos_ms`, all from `lma_tf.rules`. See
`docs/serving.md`.

Which kinds export is the registry's call (`registry.get(kind).exportable`:
a network with a TOS head). Kinds without an LMA head serve
lma_probability = 0/1 from the TOS by the label rule of the records.

ONNX (needs tf2onnx, from the `onnx` extra) converts the `serving_default`
function, with the same two inputs and three outputs and a dynamic frame
axis. Without tf2onnx the default export writes the SavedModel alone and
says so; asking for ONNX explicitly fails instead.

The trained run is read through `lma_tf.training.run_dir` only, never the
training loop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from lma_tf import atomic
from lma_tf.data import sector_padding
from lma_tf.errors import LmaError, UsageError
from lma_tf.models import ensemble, registry, test_time
from lma_tf.serving import contract, layout, signatures
from lma_tf.training import run_dir

ONNX_OPSET = 17


# What can be exported: one trained network, or several averaged.
Servable = keras.Model | ensemble.Ensemble


class ExportError(LmaError):
    """The model cannot be exported (e.g. the ONNX converter is missing)."""


class ExportUsageError(ExportError, UsageError):
    """An export refused for a user mistake: wrong dir, kind, version, format."""


def serving_functions(
    model: Servable, config: ml_collections.ConfigDict
) -> tuple[Callable, Callable]:
    """The plain Python bodies of the two signatures (wrap in tf.function)."""
    data = config.data
    # An Ensemble applies each member's views; a single network gets its own.
    net = (
        model if isinstance(model, ensemble.Ensemble) else test_time.wrap(model, config)
    )

    def run_model(strain: tf.Tensor) -> dict[str, tf.Tensor]:
        x = sector_padding.pad(strain, data, axis=1)
        return signatures.outputs_from_model(net(x, training=False))

    def serve_strain(strain: tf.Tensor, frame_period_ms: tf.Tensor) -> dict:
        return run_model(signatures.fit_strain_batch(strain, frame_period_ms, data))

    def serve_examples(examples: tf.Tensor) -> dict:
        strain, _ = signatures.fit_examples(examples, data)
        return run_model(strain)

    return serve_strain, serve_examples


def exportable_kinds() -> tuple[str, ...]:
    """The registered kinds whose models can be exported."""
    return tuple(n for n in registry.names() if registry.get(n).exportable)


def check_exportable(config: ml_collections.ConfigDict) -> None:
    """Raises ExportUsageError for kinds the serving outputs cannot cover.

    The message is generated from the registry entry: a kind without a
    network has nothing to export, one without a TOS head cannot serve
    tos_ms and combined_tos_ms.
    """
    try:
        kind = registry.get(config.model.kind)
    except ValueError as e:
        raise ExportUsageError(str(e)) from None
    if kind.exportable:
        return
    if not kind.is_network:
        why = f"is the {kind.description}: it has no network to export"
    elif not kind.has_tos:
        why = "has no TOS head, so tos_ms and combined_tos_ms cannot be served"
    else:
        why = "cannot be exported"
    raise ExportUsageError(
        f"model.kind={kind.name!r} {why}; export one of {', '.join(exportable_kinds())}"
    )


def load_trained(model_dir: str) -> tuple[keras.Model, ml_collections.ConfigDict]:
    """The validation-selected Keras model of `model_dir` and its resolved config.

    Raises:
      ExportUsageError: no config.json, an unsupported kind, or no trained
        checkpoint.
    """
    try:
        config = run_dir.load_config(model_dir)
    except UsageError as e:
        raise ExportUsageError(str(e)) from None
    check_exportable(config)
    try:
        model = run_dir.restore_best(config, model_dir)
    except UsageError as e:
        raise ExportUsageError(f"cannot export {model_dir}: {e}") from None
    return model, config


def _export_info(
    config: ml_collections.ConfigDict,
    source: str,
    formats: Sequence[str],
    version: int,
    members: int = 1,
) -> dict:
    return {
        "formats": list(formats),
        "format": ",".join(formats),  # the same as one string, as older exports had
        "version": version,
        "source_model_dir": ",".join(os.path.abspath(d) for d in source.split(","))
        if source
        else "",
        "ensemble_members": members,
        "model_kind": config.model.kind,
        "signatures": {k: list(v) for k, v in contract.SIGNATURE_INPUTS.items()},
        "outputs": list(contract.OUTPUT_KEYS),
        "frames_range": list(contract.FRAMES_RANGE),
        "frame_period_range_ms": list(contract.PERIOD_RANGE_MS),
        "max_abs_strain": contract.MAX_ABS_STRAIN,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "config": config.to_dict(),
    }


def write_saved_model(
    model: Servable, config: ml_collections.ConfigDict, path: str
) -> None:
    """Writes the two-signature SavedModel of `model` to `path` (not atomic)."""
    serve_strain, serve_examples = serving_functions(model, config)
    archive = keras.export.ExportArchive()
    for member in model.models if isinstance(model, ensemble.Ensemble) else [model]:
        archive.track(member)
    archive.add_endpoint(
        contract.SERVING_SIGNATURE, serve_strain, signatures.strain_signature()
    )
    archive.add_endpoint(
        contract.EXAMPLES_SIGNATURE, serve_examples, signatures.examples_signature()
    )
    archive.write_out(path, verbose=False)


def write_onnx(
    model: Servable,
    config: ml_collections.ConfigDict,
    path: str,
    opset: int = ONNX_OPSET,
) -> None:
    """Converts the `serving_default` function to ONNX at `path` (tf2onnx)."""
    tf2onnx = _import_tf2onnx()
    serve_strain, _ = serving_functions(model, config)
    signature = signatures.strain_signature()
    fn = tf.function(serve_strain, input_signature=signature, autograph=False)
    model_proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=signature, opset=opset
    )
    _name_onnx_dims(model_proto)
    with open(path, "wb") as f:
        f.write(model_proto.SerializeToString())


def _name_onnx_dims(model_proto) -> None:
    """Names the dynamic axes `batch` and `frames` (tf2onnx leaves `unk__N`)."""
    names = {
        contract.STRAIN_INPUT: ("batch", None, "frames"),
        contract.PERIOD_INPUT: ("batch",),
        **{k: ("batch", None) for k in contract.OUTPUT_KEYS},
    }
    graph = model_proto.graph
    for value in list(graph.input) + list(graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, names[value.name]):
            if name is not None:
                dim.dim_param = name


class OnnxMissingError(ExportError):
    """tf2onnx is not installed."""


def _import_tf2onnx():
    try:
        import tf2onnx
    except ImportError as e:
        raise OnnxMissingError(
            f"the ONNX export needs tf2onnx ({e}): pip install -e '.[onnx]', "
            "or export with --format=saved_model"
        ) from None
    return tf2onnx


DEFAULT_FORMATS = layout.FORMATS  # saved_model and onnx


def parse_formats(fmt: str | Sequence[str] | None) -> tuple[str, ...]:
    """`saved_model,onnx`, `both`, one name or a sequence -> format names.

    Raises:
      ExportUsageError: an unknown or empty format.
    """
    if fmt is None:
        return DEFAULT_FORMATS
    names = fmt.split(",") if isinstance(fmt, str) else list(fmt)
    names = [n.strip() for n in names if n.strip()]
    if names == ["both"]:
        return DEFAULT_FORMATS
    unknown = [n for n in names if n not in layout.FORMATS]
    if unknown or not names:
        raise ExportUsageError(
            f"unknown format {fmt!r}; choose {', '.join(layout.FORMATS)}, a "
            "comma-separated list of them, or both"
        )
    return tuple(n for n in layout.FORMATS if n in names)


def _write_version(
    model: Servable,
    config: ml_collections.ConfigDict,
    tmp: str,
    formats: tuple[str, ...],
    explicit: bool,
) -> tuple[str, ...]:
    """Writes `formats` into `tmp`; returns those written.

    ONNX is left out, with a warning, when tf2onnx is missing and the
    formats are the default ones (`explicit` False).
    """
    written = []
    if "saved_model" in formats:
        write_saved_model(model, config, tmp)
        written.append("saved_model")
    if "onnx" in formats:
        os.makedirs(tmp, exist_ok=True)
        try:
            write_onnx(model, config, os.path.join(tmp, layout.ONNX_FILE))
            written.append("onnx")
        except OnnxMissingError as e:
            if explicit or not written:
                raise
            logging.warning("ONNX not exported: %s", e)
    return tuple(written)


def export_model(
    model: Servable,
    config: ml_collections.ConfigDict,
    export_dir: str,
    *,
    fmt: str | Sequence[str] | None = None,
    version: int | None = None,
    source_model_dir: str = "",
) -> str:
    """Exports `model` atomically to `export_dir/<version>`; returns that path.

    Args:
      fmt: `saved_model`, `onnx`, both comma-separated or `both`; None (the
        default) is both, without ONNX (and a warning) when tf2onnx is
        missing.

    Raises:
      ExportUsageError: the version exists already or is negative, the
        format is unknown, or the kind cannot be exported.
      ExportError: ONNX was asked for explicitly and tf2onnx is missing.
    """
    formats = parse_formats(fmt)
    check_exportable(config)
    if version is not None and int(version) < 0:
        raise ExportUsageError(f"version must be >= 0, got {version}")
    os.makedirs(export_dir, exist_ok=True)
    version = layout.next_version(export_dir) if version is None else int(version)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise ExportUsageError(f"{final} exists already: choose another --version")
    tmp = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        written = _write_version(model, config, tmp, formats, fmt is not None)
        members = len(model.models) if isinstance(model, ensemble.Ensemble) else 1
        info = _export_info(config, source_model_dir, written, version, members)
        atomic.write_json(os.path.join(tmp, layout.EXPORT_INFO), info, sort_keys=True)
        os.rename(tmp, final)  # atomic; fails if another export took `version`
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_ensemble(
    model_dirs: Sequence[str],
) -> tuple[ensemble.Ensemble, ml_collections.ConfigDict]:
    """The trained runs of `model_dirs` as one `Ensemble`, and member 0's config.

    Raises:
      ExportUsageError: a run cannot be exported, or the members differ in
        kind or in the preprocessing they expect.
    """
    loaded = [load_trained(d) for d in model_dirs]
    try:
        net = ensemble.Ensemble([m for m, _ in loaded], [c for _, c in loaded])
    except ValueError as e:
        joined = ", ".join(model_dirs)
        raise ExportUsageError(f"cannot export {joined} together: {e}") from None
    return net, loaded[0][1]


def export(
    model_dir: str | Sequence[str],
    export_dir: str,
    fmt: str | Sequence[str] | None = None,
    version: int | None = None,
) -> str:
    """Exports the best checkpoint of a trained `model_dir`; returns the version dir.

    Several run dirs (a list, or one comma-separated string) export one model
    that averages them (`lma_tf.models.ensemble`), e.g. the seeds of
    `lma-tf crossval --members`. `fmt` as for `export_model` (default:
    SavedModel and ONNX).

    Raises:
      ExportUsageError: a `model_dir` is not an exportable trained run, the
        members do not fit together, or the version / format is refused
        (see `export_model`).
      ExportError: the export itself failed (e.g. no ONNX converter).
    """
    parse_formats(fmt)  # before loading the model: fail fast
    dirs = model_dir.split(",") if isinstance(model_dir, str) else list(model_dir)
    dirs = [d for d in dirs if d]
    if not dirs:
        raise ExportUsageError("no model directory given")
    if len(dirs) > 1:
        model, config = load_ensemble(dirs)
    else:
        model, config = load_trained(dirs[0])
    return export_model(
        model,
        config,
        export_dir,
        fmt=fmt,
        version=version,
        source_model_dir=",".join(dirs),
    )
