"""Batch prediction with an export over any input the records tool reads.

  lma-tf predict --saved_model=E/<version> (or E) --input=PATH [--input=...] \
      --output=P.csv [--runtime=auto|onnx|tensorflow] [--allow_pickle] \
      [--batch_size=64]

Inputs are read and validated exactly as the records tool reads them
(`collect.collect_slices`: files, directories, CSV manifests); every rejected
slice gets one `REJECT file=... slice=...: reason` line on stderr and the good
ones are still predicted. A slice the data contract accepts but the serving
contract refuses (a frame period outside the acquisition range) is rejected
the same way. The CSV is the prediction CSV of `prediction_csv` (one row per
slice and sector, ordered by subject, slice, sector, with the input's known
labels when it has them), written atomically.

The model runs on ONNX Runtime when the export has a model.onnx (unless
`runtime="tensorflow"`): then neither TensorFlow nor Keras is imported, from
reading the files to writing the CSV. Slices are batched by frame count (the
`serving_default` signature takes one (batch, 126, F) array), each with its
own frame period. Only the export is used: this module never imports the
training code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lma_tf.data import collect
from lma_tf.data.slices import DenseSlice, Reject
from lma_tf.errors import LmaError, UsageError
from lma_tf.serving import contract, prediction_csv
from lma_tf.serving.prediction_csv import PredictedSlice
from lma_tf.serving.runtime import load_model


class PredictError(LmaError):
    """Nothing could be predicted (no valid slice at all)."""


class PredictUsageError(PredictError, UsageError):
    """A user mistake, such as a bad batch size."""


def _batches(slices: Sequence[DenseSlice], batch_size: int) -> list[list[int]]:
    """Indices of `slices` grouped by frame count, in chunks of `batch_size`."""
    by_frames: dict[int, list[int]] = {}
    for i, s in enumerate(slices):
        by_frames.setdefault(s.num_frames, []).append(i)
    out = []
    for frames in sorted(by_frames):
        idx = by_frames[frames]
        out += [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    return out


def _predicted(s: DenseSlice, outputs: dict[str, np.ndarray]) -> PredictedSlice:
    """One slice's served outputs (and known labels) as a prediction CSV slice."""
    return PredictedSlice(
        subject_id=s.subject_id,
        slice_id=s.slice_id,
        slice_location=s.slice_location,
        tos_ms=outputs[contract.TOS_MS],
        lma_probability=outputs[contract.LMA_PROBABILITY],
        combined_tos_ms=outputs[contract.COMBINED_TOS_MS],
        true_tos_ms=s.tos_ms,
        scar_fraction=s.scar_fraction,
        orientation_sector0=s.orientation_sector0,
        orientation_offset=s.orientation_offset,
        orientation_direction=s.orientation_direction,
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size <= 0:
        raise PredictUsageError(f"batch_size must be positive, got {batch_size}")


def servable(
    slices: Sequence[DenseSlice], report: Callable[[Reject], None]
) -> tuple[list[DenseSlice], list[Reject]]:
    """Splits validated slices into those the serving contract takes and rejects."""
    good, rejects = [], []
    for s in slices:
        try:
            contract.check_inputs_np(
                s.strain_matrix[None], np.array([s.frame_period_ms], np.float32)
            )
        except contract.InputError as e:
            r = Reject(s.source, s.slice_id, str(e))
            rejects.append(r)
            report(r)
            continue
        good.append(s)
    return good, rejects


def predict_slices(
    model: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    slices: Sequence[DenseSlice],
    batch_size: int = 64,
    progress: bool = True,
) -> list[PredictedSlice]:
    """Runs `model` (`load_model`'s) over validated slices, in their order."""
    _check_batch_size(batch_size)
    results: list[PredictedSlice | None] = [None] * len(slices)
    bar = None
    if progress:  # tqdm is imported only for a bar: it costs more than a patient
        import tqdm

        bar = tqdm.tqdm(total=len(slices), desc="predicting", unit="slice")
    try:
        for idx in _batches(slices, batch_size):
            strain = np.stack([slices[i].strain_matrix for i in idx]).astype(np.float32)
            period = np.array([slices[i].frame_period_ms for i in idx], np.float32)
            arrays = model(strain, period)
            for row, i in enumerate(idx):
                outputs = {k: arrays[k][row] for k in contract.OUTPUT_KEYS}
                results[i] = _predicted(slices[i], outputs)
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


def predict(
    export_path: str,
    inputs: Sequence[str],
    output: str,
    *,
    runtime: str = "auto",
    allow_pickle: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    report: Callable[[Reject], None] | None = None,
) -> dict:
    """End to end: read + validate inputs, predict, write the prediction CSV.

    Args:
      export_path: an export version dir (`E/<N>`), or `E` for its latest.
      inputs: files, directories or CSV manifests, as for the records tool.
      output: the CSV path.
      runtime: `auto` (ONNX Runtime when the version has model.onnx,
        else TensorFlow), `onnx` or `tensorflow` (`runtime.load_model`).
      allow_pickle: read pickled `.npy` lists (pickle runs code: trust them).
      batch_size: slices per call of the model.
      progress: show tqdm bars (tqdm is imported only then).
      report: called with each reject (default: one line on stderr).

    Returns:
      {"num_slices", "num_rejects", "num_rows", "output", "runtime", "model"}.

    Raises:
      runtime.ModelNotFoundError: no export at `export_path` (a usage error).
      runtime.ModelLoadError: a damaged export, or no onnxruntime.
      PredictUsageError: batch_size <= 0.
      PredictError: no valid slice at all.
    """
    report = report or collect.report_to_stderr
    _check_batch_size(batch_size)
    model = load_model(export_path, runtime)
    slices, rejects, _ = collect.collect_slices(inputs, allow_pickle, progress, report)
    slices, refused = servable(slices, report)
    rejects += refused
    if not slices:
        raise PredictError(
            f"no valid slice found in {list(inputs)} "
            f"({len(rejects)} rejected; see the REJECT lines above)"
        )
    predictions = predict_slices(model, slices, batch_size, progress)
    rows = prediction_csv.write(predictions, output)
    return {
        "num_slices": len(slices),
        "num_rejects": len(rejects),
        "num_rows": rows,
        "output": output,
        "runtime": model.runtime,
        "model": model.path,
    }
