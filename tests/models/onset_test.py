"""The onset TOS output: expected onset time over a full-resolution frame map."""

from __future__ import annotations

import keras
import numpy as np
import onnxruntime as ort
import pytest

from lma_tf import config as lma_config
from lma_tf import constants, testing
from lma_tf.models import networks
from lma_tf.serving import export, layout, runtime

PERIOD = 17.0


def _layer(frames: int = 8) -> networks.OnsetExpectation:
    layer = networks.OnsetExpectation(PERIOD, init_mean_ms=40.0)
    layer.build((None, 2, frames))
    return layer


def test_tos_is_the_expected_time_of_the_frame_distribution():
    layer = _layer()
    layer.frame_bias.assign(np.zeros(8, np.float32))
    logits = np.zeros((3, 2, 8), np.float32)
    logits[0, :, 3] = 60.0  # all the mass on frame 3
    logits[1, :, 2:4] = 60.0  # split between frames 2 and 3: sub-frame
    tos = np.asarray(layer(logits))
    np.testing.assert_allclose(tos[0], 17.0 + 3 * PERIOD, atol=1e-3)
    np.testing.assert_allclose(tos[1], 17.0 + 2.5 * PERIOD, atol=1e-3)
    np.testing.assert_allclose(tos[2], 17.0 + 3.5 * PERIOD, atol=1e-3)  # uniform
    rand = np.random.default_rng(0).normal(0, 20, (4, 16, 8)).astype(np.float32)
    out = np.asarray(layer(rand))
    assert out.min() >= constants.TOS_FLOOR_MS - 1e-4
    assert out.max() <= 17.0 + 7 * PERIOD + 1e-3


def test_the_frame_prior_starts_at_the_mean_and_survives_its_config():
    layer = _layer(64)
    start = np.asarray(layer(np.zeros((1, 3, 64), np.float32)))
    np.testing.assert_allclose(start, 40.0, atol=0.2)
    again = networks.OnsetExpectation.from_config(layer.get_config())
    again.build((None, 3, 64))
    np.testing.assert_allclose(np.asarray(again(np.zeros((1, 3, 64)))), start)


def test_bad_onset_options_are_refused():
    c = lma_config.base_config()
    c.model.tos_output = "heatmap"
    with pytest.raises(ValueError, match="tos_output"):
        lma_config.validate_config(c)
    c = lma_config.base_config()
    c.model.onset_channels = 0
    with pytest.raises(ValueError, match="onset_channels"):
        lma_config.validate_config(c)


def test_onset_network_predicts_every_sector_from_the_onset_map():
    c = lma_config.base_config()
    c.model.tos_output = "onset"
    c.model.tos_mean_ms = 40.0
    lma_config.validate_config(c)
    keras.utils.set_random_seed(0)
    net = networks.build_model(c)
    names = {layer.name for layer in net.layers}
    assert {"onset0_conv", "onset1_conv", "onset_logits"} <= names
    assert "tos_linear" not in names
    x = np.random.default_rng(1).normal(0, 0.05, (2, 128, 64)).astype(np.float32)
    out = net(x, training=False)
    assert out["tos"].shape == (2, 128) and out["lma"].shape == (2, 128, 2)
    tos = np.asarray(out["tos"])
    assert tos.min() >= 17.0 and abs(tos.mean() - 40.0) < 15.0
    # A sector's TOS reads its own time course: delaying it moves the TOS.
    late = x[:1].copy()
    late[0, 40, 10:] = x[0, 40, :-10]
    moved = np.asarray(net(late, training=False)["tos"])[0]
    assert abs(moved[40] - tos[0, 40]) > 1e-3


def test_onset_network_exports_and_onnx_matches_tensorflow(tmp_path):
    cfg = testing.tiny_config(lma_config.base_config(), "unused")
    cfg.model.tos_output = "onset"
    cfg.model.strain_mean, cfg.model.strain_std = 0.0, 0.05
    cfg.model.tos_mean_ms = 40.0
    cfg.model.test_time_shifts, cfg.model.test_time_mirror = 1, False
    keras.utils.set_random_seed(3)
    net = networks.build_model(cfg)
    version = export.export_model(net, cfg, str(tmp_path), version=1)
    serve = runtime.load_model(version, "tensorflow")
    onnx = runtime.load_model(version, "onnx")
    assert ort.InferenceSession(
        f"{version}/{layout.ONNX_FILE}", providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(4).normal(0, 0.05, (3, 126, 40)).astype(np.float32)
    periods = np.full(3, 17.0, np.float32)
    got, want = onnx(x, periods), serve(x, periods)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-4, rtol=0)
