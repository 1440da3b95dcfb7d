"""The classical detector is fitted on the frames evaluation scores it on.

Regression test: the threshold used to be fitted on the raw records (their
own frame count and period) while evaluation runs on the frames of the
model's window after resampling. Slices longer than `data.num_frames`
crashed the fit, and a cohort recorded at another frame period was fitted on
another stretch of time than it was evaluated on.
"""

import numpy as np
import pytest

from lma_tf import config as lma_config
from lma_tf import constants, inference, testing
from lma_tf.data import records
from lma_tf.data.slices import DenseSlice
from lma_tf.models import classical
from lma_tf.training import classical_fit, run_dir
from lma_tf.training import train_lib as train

N = constants.NUM_SECTORS


def _long_slices() -> list[DenseSlice]:
    """Random labelled slices of 40-60 frames: longer than a 32-frame window."""
    rng = np.random.default_rng(0)
    return [
        testing.random_slice(rng, f"S{i}", f"S{i}_{j}", int(rng.integers(40, 61)))
        for i in range(4)
        for j in range(2)
    ]


def _slow_slices() -> list[DenseSlice]:
    """24 frames at 34 ms (48 at the model's 17 ms), the events in the second half.

    On the 17 ms grid: flat up to frame 25, a 0.012 dip on frames 26-31,
    shortening from frame 36 on (labelled TOS (36 + 1) x 17 ms). Thresholds
    of -0.005 and -0.01 fire on the dip, deeper ones at the real onset.
    """
    k = np.arange(24)
    dip = np.where((k >= 13) & (k <= 15), -0.012, 0.0)
    curve = dip - 0.01 * np.clip(k - 18, 0, None)
    return [
        DenseSlice(
            subject_id=f"S{i}",
            slice_id=f"S{i}_0",
            strain_matrix=np.tile(curve, (N, 1)).astype(np.float32),
            frame_period_ms=34.0,
            tos_ms=np.full(N, 37 * 17.0, np.float32),
        )
        for i in range(4)
    ]


def _config(tmp_path, slices: list[DenseSlice], num_frames: int):
    """The classical experiment on records of `slices`, all in the val split."""
    records_dir = str(tmp_path / "records")
    records.write_records(
        slices,
        [],
        records.RecordsOptions(
            output_dir=records_dir, split=(0.0, 1.0, 0.0), progress=False
        ),
    )
    cfg = lma_config.load_experiment("classical")
    cfg.data.records_dir = records_dir
    cfg.data.num_frames = num_frames
    return cfg


def _fit_on_evaluated_frames(cfg) -> dict:
    """The reference: `fit_threshold` on exactly what evaluation reads."""
    batch = inference.load_split(cfg, "val")
    keep = batch.has_tos
    params = classical.params_from_config(cfg)
    params["threshold"] = classical.fit_threshold(
        list(batch.strain[keep]),
        list(batch.true_tos[keep]),
        list(batch.num_frames[keep]),
        **params,
    )
    return params


@pytest.mark.parametrize(
    "slices, num_frames, threshold",
    [
        (_long_slices(), 32, None),
        # Fitted on the first 24 resampled frames (the raw count), the
        # window would miss both events and pick -0.005.
        (_slow_slices(), 64, -0.015),
    ],
    ids=["longer_than_the_window", "recorded_at_34ms"],
)
def test_fit_uses_the_frames_evaluation_scores(tmp_path, slices, num_frames, threshold):
    cfg = _config(tmp_path, slices, num_frames)
    expected = _fit_on_evaluated_frames(cfg)
    if threshold is not None:
        assert expected["threshold"] == threshold

    model_dir = str(tmp_path / "run")
    result = train.train(cfg, model_dir, progress=False)

    assert result == {"classical_params": expected}
    assert run_dir.load_classical_params(cfg, model_dir) == expected
    # What evaluation then predicts is the best the grid offers on this split.
    batch = inference.load_split(cfg, "val")
    predict = inference.load_predictor(run_dir.load_config(model_dir), model_dir)
    mae = np.mean(np.abs(predict(batch).tos_ms - batch.true_tos))
    for candidate in classical.THRESHOLD_CANDIDATES:
        other = dict(expected, threshold=candidate)
        pred = inference.classical_predictor(other)(batch).tos_ms
        assert mae <= np.mean(np.abs(pred - batch.true_tos)) + 1e-4


def test_without_labelled_slices_the_configured_threshold_is_kept(tmp_path):
    slices = [
        testing.random_slice(np.random.default_rng(i), f"S{i}", f"S{i}_0", 30, False)
        for i in range(2)
    ]
    cfg = _config(tmp_path, slices, 64)
    cfg.classical.threshold = -0.03
    result = classical_fit.fit_classical(cfg, str(tmp_path / "run"))
    assert result["classical_params"] == classical.params_from_config(cfg)
    assert result["classical_params"]["threshold"] == -0.03
