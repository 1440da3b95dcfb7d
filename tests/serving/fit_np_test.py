"""The numpy twin of `preprocess.fit_to_model` equals the TensorFlow op."""

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf.data import preprocess
from lma_tf.serving import fit_np

FRAME_COUNTS = (16, 20, 37, 64, 100, 128)
PERIODS = (17.0, 34.0, 9.5, 25.0)


@pytest.mark.parametrize("drop_last", [0, 5])
@pytest.mark.parametrize("period", PERIODS)
def test_fit_to_model_equals_the_tensorflow_op(drop_last, period):
    data = lma_config.base_config().data
    data.drop_last_frames = drop_last
    rng = np.random.default_rng(int(period * 10) + drop_last)
    for frames in FRAME_COUNTS:
        x = rng.normal(0, 0.1, (126, frames)).astype(np.float32)
        want = preprocess.fit_to_model(tf.constant(x), period, data).numpy()
        got = fit_np.fit_to_model(x, period, data)
        assert got.shape == want.shape == (126, data.num_frames)
        assert got.dtype == np.float32
        np.testing.assert_allclose(
            got, want, atol=1e-5, rtol=0, err_msg=f"{frames} frames @ {period} ms"
        )
        if period == data.frame_period_ms:
            np.testing.assert_array_equal(got, want)  # no resampling: exact


def test_fit_batch_equals_the_tensorflow_op_and_takes_a_plain_dict():
    data = lma_config.base_config().data
    data.drop_last_frames = 5
    x = np.random.default_rng(3).normal(0, 0.1, (3, 126, 45)).astype(np.float32)
    periods = np.array([17.0, 34.0, 12.0], np.float32)
    want = preprocess.fit_batch_to_model(tf.constant(x), periods, data).numpy()
    got = fit_np.fit_batch_to_model(x, periods, data.to_dict())
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    empty = fit_np.fit_batch_to_model(np.zeros((0, 126, 40)), [], data)
    assert empty.shape == (0, 126, data.num_frames)


def test_the_twin_never_imports_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; import lma_tf.serving.fit_np; "
        "print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
