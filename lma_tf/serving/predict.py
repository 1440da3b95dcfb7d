"""Batch prediction with an exported SavedModel over any input the records tool reads.

  lma-tf predict --saved_model=E/<version> --input=PATH [--input=...] \
      --output=P.csv [--allow_pickle] [--batch_size=64]

Inputs are read and validated exactly as the records tool reads them
(`records.collect_slices`: files, directories, CSV manifests); every rejected
slice gets one `REJECT file=... slice=...: reason` line on stderr and the good
ones are still predicted. The CSV is the prediction CSV of `prediction_csv`
(one row per slice and sector, ordered by subject, slice, sector, with the
input's known labels when it has them), written atomically.

Slices are batched by frame count (the `serving_default` signature of
`contract` takes one (batch, 126, F) array), each with its own frame period.
Only the export is used: this module never imports the training code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tqdm

from lma_tf.data import records
from lma_tf.data.slices import DenseSlice, Reject
from lma_tf.errors import LmaError, UsageError
from lma_tf.serving import contract, layout, prediction_csv
from lma_tf.serving.prediction_csv import PredictedSlice

# What goes wrong reading a damaged SavedModel: a truncated variables file
# gives IndexError, a damaged index an OpError, a damaged graph an OSError.
_LOAD_ERRORS = (LookupError, ValueError, OSError, tf.errors.OpError)


class PredictError(LmaError):
    """Nothing could be predicted (no valid slice, or an unreadable SavedModel)."""


class PredictUsageError(PredictError, UsageError):
    """A user mistake: no export at the path given, or a bad batch size."""


class ServingModel:
    """The `serving_default` signature of an export, as numpy in, numpy out.

    Holds the loaded SavedModel too: its variables live only as long as it.

    Raises (constructor):
      PredictUsageError: `saved_model` holds no SavedModel (with a hint when
        it is a training run dir).
      PredictError: the SavedModel is damaged or lacks the signature.
    """

    def __init__(self, saved_model: str) -> None:
        try:
            self.path = layout.latest_version_dir(saved_model)
        except FileNotFoundError as e:
            raise PredictUsageError(str(e)) from None
        try:
            self._loaded = tf.saved_model.load(self.path)
        except _LOAD_ERRORS as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise PredictError(
                f"cannot load the SavedModel {self.path} "
                f"({type(e).__name__}: {reason}): it is damaged or incomplete; "
                "export it again"
            ) from None
        signature = contract.SERVING_SIGNATURE
        if signature not in self._loaded.signatures:
            raise PredictError(f"{self.path} has no {signature!r} signature")
        self._fn = self._loaded.signatures[signature]

    def __call__(
        self, strain: np.ndarray, frame_period_ms: np.ndarray
    ) -> dict[str, np.ndarray]:
        """(B, 126, F) strain + (B,) periods -> the three (B, 126) outputs."""
        out = self._fn(
            **{
                contract.STRAIN_INPUT: tf.constant(strain, tf.float32),
                contract.PERIOD_INPUT: tf.constant(frame_period_ms, tf.float32),
            }
        )
        return {k: out[k].numpy() for k in contract.OUTPUT_KEYS}


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
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size <= 0:
        raise PredictUsageError(f"batch_size must be positive, got {batch_size}")


def predict_slices(
    model: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    slices: Sequence[DenseSlice],
    batch_size: int = 64,
    progress: bool = True,
) -> list[PredictedSlice]:
    """Runs `model` (e.g. a `ServingModel`) over validated slices, in their order."""
    _check_batch_size(batch_size)
    results: list[PredictedSlice | None] = [None] * len(slices)
    bar = tqdm.tqdm(
        total=len(slices), desc="predicting", unit="slice", disable=not progress
    )
    with bar:
        for idx in _batches(slices, batch_size):
            strain = np.stack([slices[i].strain_matrix for i in idx]).astype(np.float32)
            period = np.array([slices[i].frame_period_ms for i in idx], np.float32)
            arrays = model(strain, period)
            for row, i in enumerate(idx):
                outputs = {k: arrays[k][row] for k in contract.OUTPUT_KEYS}
                results[i] = _predicted(slices[i], outputs)
            bar.update(len(idx))
    return results  # type: ignore[return-value]


def predict(
    saved_model: str,
    inputs: Sequence[str],
    output: str,
    *,
    allow_pickle: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    report: Callable[[Reject], None] | None = None,
) -> dict:
    """End to end: read + validate inputs, predict, write the prediction CSV.

    Args:
      saved_model: an export version dir (`E/<N>`), or `E` for its latest.
      inputs: files, directories or CSV manifests, as for the records tool.
      output: the CSV path.
      allow_pickle: read pickled `.npy` lists (pickle runs code: trust them).
      batch_size: slices per call of the serving signature.
      progress: show tqdm bars.
      report: called with each reject (default: one line on stderr).

    Returns:
      {"num_slices", "num_rejects", "num_rows", "output"}.

    Raises:
      PredictUsageError: no SavedModel at `saved_model`, or batch_size <= 0.
      PredictError: a damaged SavedModel, or no valid slice at all.
    """
    report = report or records.report_to_stderr
    _check_batch_size(batch_size)
    model = ServingModel(saved_model)
    slices, rejects, _ = records.collect_slices(inputs, allow_pickle, progress, report)
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
    }
