"""Batch prediction with an exported SavedModel over any input the records tool reads.

  python -m lma_tf.serving.predict --saved_model=E/<version> --input=PATH [--input=...] \
      --output=P.csv [--allow_pickle] [--batch_size=64]

Inputs are read and validated exactly as `tools/make_records.py` reads them
(`records.collect_slices`: files, directories, CSV manifests); every rejected
slice gets one `REJECT file=... slice=...: reason` line on stderr and the good
ones are still predicted. The CSV has one row per slice and sector:

  subject_id, slice_id, slice_location, sector, tos_ms, lma_probability,
  combined_tos_ms

with `sector` the 0-based index 0..125 into the strain matrix rows
(DENSEanalysis order) and `slice_location` empty when the input has none.
Rows are ordered by subject, slice, sector. The CSV is written under a
temporary name and renamed, so a crash never leaves a truncated file.

Slices are batched by frame count (the `serving_default` signature takes one
(batch, 126, F) array), each with its own frame period.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tqdm

from lma_tf import atomic, constants
from lma_tf.data import records
from lma_tf.data.slices import DenseSlice, Reject
from lma_tf.serving import export

CSV_COLUMNS = (
    "subject_id",
    "slice_id",
    "slice_location",
    "sector",
    export.TOS_MS,
    export.LMA_PROBABILITY,
    export.COMBINED_TOS_MS,
    # Known labels of the input, empty when it has none: the activation maps
    # draw true TOS and outline scar from them.
    "true_tos_ms",
    "scar_fraction",
)


class PredictError(RuntimeError):
    """Nothing could be predicted (no valid slice, or no usable SavedModel)."""


@dataclasses.dataclass
class SlicePrediction:
    """The three (126,) serving outputs of one slice."""

    slice: DenseSlice
    tos_ms: np.ndarray
    lma_probability: np.ndarray
    combined_tos_ms: np.ndarray


class ServingModel:
    """The `serving_default` signature of an export, as numpy in, numpy out.

    Holds the loaded SavedModel too: its variables live only as long as it.
    """

    def __init__(self, saved_model: str) -> None:
        try:
            self.path = export.latest_version_dir(saved_model)
        except FileNotFoundError as e:
            raise PredictError(str(e)) from None
        self._loaded = tf.saved_model.load(self.path)
        if export.SERVING_SIGNATURE not in self._loaded.signatures:
            raise PredictError(
                f"{self.path} has no {export.SERVING_SIGNATURE!r} signature"
            )
        self._fn = self._loaded.signatures[export.SERVING_SIGNATURE]

    def __call__(
        self, strain: np.ndarray, frame_period_ms: np.ndarray
    ) -> dict[str, np.ndarray]:
        """(B, 126, F) strain + (B,) periods -> the three (B, 126) outputs."""
        out = self._fn(
            **{
                export.STRAIN_INPUT: tf.constant(strain, tf.float32),
                export.PERIOD_INPUT: tf.constant(frame_period_ms, tf.float32),
            }
        )
        return {k: out[k].numpy() for k in export.OUTPUT_KEYS}


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


def predict_slices(
    model: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    slices: Sequence[DenseSlice],
    batch_size: int = 64,
    progress: bool = True,
) -> list[SlicePrediction]:
    """Runs `model` (e.g. a `ServingModel`) over validated slices, in their order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    results: list[SlicePrediction | None] = [None] * len(slices)
    bar = tqdm.tqdm(
        total=len(slices), desc="predicting", unit="slice", disable=not progress
    )
    with bar:
        for idx in _batches(slices, batch_size):
            strain = np.stack([slices[i].strain_matrix for i in idx]).astype(np.float32)
            period = np.array([slices[i].frame_period_ms for i in idx], np.float32)
            arrays = model(strain, period)
            for row, i in enumerate(idx):
                results[i] = SlicePrediction(
                    slices[i], *(arrays[k][row] for k in export.OUTPUT_KEYS)
                )
            bar.update(len(idx))
    return results  # type: ignore[return-value]


def _cells(values: np.ndarray | None, fmt: str) -> list[str]:
    """Formatted per-sector values, or empty cells when the input lacks them."""
    if values is None:
        return [""] * constants.NUM_SECTORS
    return [format(float(v), fmt) for v in values]


def write_csv(predictions: Sequence[SlicePrediction], path: str) -> int:
    """Writes one row per slice and sector atomically; returns the row count."""
    rows = 0
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            for p in predictions:
                s = p.slice
                loc = "" if s.slice_location is None else f"{s.slice_location:g}"
                true_tos = _cells(s.tos_ms, ".4f")
                scar = _cells(s.scar_fraction, ".4f")
                for k in range(constants.NUM_SECTORS):
                    w.writerow(
                        (
                            s.subject_id,
                            s.slice_id,
                            loc,
                            k,
                            f"{p.tos_ms[k]:.4f}",
                            f"{p.lma_probability[k]:.6f}",
                            f"{p.combined_tos_ms[k]:.4f}",
                            true_tos[k],
                            scar[k],
                        )
                    )
                    rows += 1
            f.flush()
            os.fsync(f.fileno())
    return rows


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
    """End to end: read + validate inputs, predict, write the CSV.

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
      PredictError: no usable SavedModel, or no valid slice at all.
    """
    report = report or records.report_to_stderr
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model = ServingModel(saved_model)
    slices, rejects, _ = records.collect_slices(inputs, allow_pickle, progress, report)
    if not slices:
        raise PredictError(
            f"no valid slice found in {list(inputs)} "
            f"({len(rejects)} rejected; see the REJECT lines above)"
        )
    predictions = predict_slices(model, slices, batch_size, progress)
    rows = write_csv(predictions, output)
    return {
        "num_slices": len(slices),
        "num_rejects": len(rejects),
        "num_rows": rows,
        "output": output,
    }


def main(argv: list[str]) -> None:
    """absl entry point: flags -> `predict`."""
    from lma_tf.cli import quiet_logs

    quiet_logs()
    del argv
    from absl import flags

    f = flags.FLAGS
    try:
        result = predict(
            f.saved_model,
            f.input,
            f.output,
            allow_pickle=f.allow_pickle,
            batch_size=f.batch_size,
        )
    except (PredictError, OSError, ValueError) as e:
        sys.exit(f"predict: error: {e}")
    print(
        f"[predict] {result['num_slices']} slices -> {result['num_rows']} rows in "
        f"{result['output']}; {result['num_rejects']} rejected"
    )


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("saved_model", None, "Export version dir E/<N> (or E).")
    flags.DEFINE_multi_string(
        "input", None, "File, directory (recursive) or CSV manifest; repeatable."
    )
    flags.DEFINE_string("output", None, "CSV to write (one row per slice x sector).")
    flags.DEFINE_bool(
        "allow_pickle", False, "Read pickled .npy lists (pickle runs code: trust them)."
    )
    flags.DEFINE_integer("batch_size", 64, "Slices per call of the SavedModel.")
    flags.mark_flags_as_required(["saved_model", "input", "output"])


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
