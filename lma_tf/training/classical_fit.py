"""Fitting the classical (non-learned) detector: its threshold, on the val split.

The threshold is chosen on exactly what evaluation scores: the val split read
by `inference.load_split` (resampled to the model's frame period, frames
dropped, cropped or padded to its window) and detected over each slice's real
frames in that window, as `inference.classical_predictor` does. Fitting on the
raw records (their own frame count and period) would choose the threshold on
other frames than the ones it is then evaluated on.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from lma_tf import inference
from lma_tf.models import classical
from lma_tf.training import run_dir


def fit_params(config: ml_collections.ConfigDict, batch: inference.SliceBatch) -> dict:
    """The detector parameters with the threshold fitted on `batch`'s labelled rows.

    The other parameters come from `config.classical`; without a labelled
    slice the configured threshold is kept.
    """
    params = classical.params_from_config(config)
    keep = np.flatnonzero(batch.has_tos)
    if keep.size:
        params["threshold"] = classical.fit_threshold(
            list(batch.strain[keep]),
            list(batch.true_tos[keep]),
            [int(n) for n in batch.num_frames[keep]],
            **params,
        )
    return params


def fit_classical(config: ml_collections.ConfigDict, model_dir: str) -> dict:
    """Fits the detector on the val split and saves it in `model_dir`.

    Returns:
      {"classical_params": the saved parameters}.

    Raises:
      ValueError: the val split is empty.
    """
    params = fit_params(config, inference.load_split(config, "val"))
    run_dir.save_classical_params(params, model_dir)
    return {"classical_params": params}
