"""Grad-CAM: tf-keras-vis maps agree with a direct GradientTape Grad-CAM.

The reference below is written independently of `lma_tf.viz.gradcam`: it takes
the original (dict-output) model, a functional sub-model to the target conv
layer, `tf.GradientTape` on the unscaled score (TOS in ms at the run centre;
summed LMA logit margin over the run), Grad-CAM's channel weights (mean
gradient over sectors and frames), ReLU, linear corner-aligned upsampling
to the input size with numpy, and min-max normalisation per slice (no
epsilon: the library drops tf-keras-vis' absolute 1e-7, which made maps
depend on the score's units; the reference scores in ms, the library in
units of 100 ms, so agreement also shows that independence). tf-keras-vis
upsamples with `scipy.ndimage.zoom(order=1)`,
which is the same corner-aligned linear interpolation, so the maps must
agree to float32 round-off: max abs difference < 1e-3.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import inference
from lma_tf.data import preprocess
from lma_tf.models import networks as model
from lma_tf.models import registry
from lma_tf.training import run_dir
from lma_tf.viz import gradcam

N = 126


@pytest.fixture(scope="module")
def multitask(trained):
    _, dirs = trained
    config = run_dir.load_config(dirs["multitask"])
    net = run_dir.restore_best(config, dirs["multitask"])
    batch = inference.load_split(config, "train", limit=6)
    assert len(batch) == 6
    return config, net, batch.model_input.astype(np.float32)


def _upsample_linear(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Corner-aligned linear interpolation of (B, h, w) maps to (B, *shape)."""
    b, h, w = cam.shape
    ys = np.linspace(0, h - 1, shape[0])
    xs = np.linspace(0, w - 1, shape[1])
    rows = np.stack(
        [[np.interp(xs, np.arange(w), cam[i, r]) for r in range(h)] for i in range(b)]
    )
    return np.stack(
        [
            np.stack(
                [np.interp(ys, np.arange(h), rows[i, :, c]) for c in range(shape[1])], 1
            )
            for i in range(b)
        ]
    )


def _reference_gradcam(net, layer, strain, head, targets) -> np.ndarray:
    sub = keras.Model(net.input, [net.get_layer(layer).output, net.output[head]])
    x = tf.constant(strain, tf.float32)
    with tf.GradientTape() as tape:
        activation, out = sub(x, training=False)
        tape.watch(activation)
        scores = []
        for i, t in enumerate(targets):
            if head == "tos":
                scores.append(out[i, t.centre])  # ms, unscaled
            else:
                margin = out[i, :, 1] - out[i, :, 0]
                scores.append(tf.reduce_sum(tf.gather(margin, t.run)))
        total = tf.add_n(scores)
    grads = tape.gradient(total, activation).numpy()
    a = activation.numpy()
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((a * weights).sum(axis=-1), 0.0)
    cam = _upsample_linear(cam, strain.shape[1:])
    lo = cam.min(axis=(1, 2), keepdims=True)
    hi = cam.max(axis=(1, 2), keepdims=True)
    return (cam - lo) / (hi - lo)


@pytest.mark.parametrize("head", ["tos", "lma"])
def test_tf_keras_vis_matches_gradient_tape_reference(multitask, head):
    _, net, strain = multitask
    out = net(strain, training=False)
    tos = out["tos"].numpy()[:, :N]
    logits = out["lma"].numpy()[:, :N]
    prob = np.exp(logits[..., 1]) / np.exp(logits).sum(axis=-1)
    targets = [gradcam.find_target(tos[i], prob[i]) for i in range(len(strain))]
    layer = gradcam.target_layer(net, head, "multitask")
    assert layer == f"{head}_head_block0_conv"
    masks = gradcam.score_masks(targets, head, strain.shape[1])
    cams = gradcam.compute_cams(net, strain, masks, head, "gradcam", layer=layer)
    ref = _reference_gradcam(net, layer, strain, head, targets)
    assert cams.shape == ref.shape == strain.shape
    # Non-trivial maps: something to agree on.
    assert np.all(ref.max(axis=(1, 2)) > 0.5)
    np.testing.assert_array_less(np.abs(cams - ref).max(), 1e-3)


def test_explainable_model_shares_weights_and_predictions(multitask):
    _, net, strain = multitask
    strain = strain[:2]
    out = net(strain, training=False)
    tos_model = gradcam.explainable_model(net, "tos")
    lma_model = gradcam.explainable_model(net, "lma")
    tos_score = tos_model(strain[..., None]).numpy()
    lma_score = lma_model(strain[..., None]).numpy()
    assert tos_score.shape == (2, strain.shape[1] + 1)
    np.testing.assert_allclose(
        tos_score[:, :-1] * gradcam.SCORE_SCALE, out["tos"].numpy(), rtol=1e-5
    )
    margin = out["lma"].numpy()[..., 1] - out["lma"].numpy()[..., 0]
    np.testing.assert_allclose(
        lma_score[:, :-1] * gradcam.SCORE_SCALE, margin, rtol=1e-4, atol=1e-4
    )
    assert np.all(tos_score[:, -1] == 0)
    # Target conv layers keep their names in the copy.
    assert tos_model.get_layer("tos_head_block0_conv") is not None


def test_scorecam_score_undoes_the_softmax():
    raw = np.random.default_rng(0).normal(0, 1.5, (3, 129)).astype(np.float32)
    raw[:, -1] = 0.0  # the reference column
    masks = np.zeros((3, 128), np.float32)
    masks[0, 5] = 1
    masks[1, 10:20] = 1
    masks[2, [0, 127]] = 1
    got = gradcam.scorecam_score(tf.constant(masks))(tf.nn.softmax(raw))
    want = (raw[:, :-1] * masks).sum(axis=1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam++", "scorecam"])
def test_other_methods_give_normalised_maps(multitask, method):
    _, net, strain = multitask
    strain = strain[:2]
    targets = [gradcam.Target(60, np.arange(50, 71), False)] * 2
    for head in ("tos", "lma"):
        masks = gradcam.score_masks(targets, head, strain.shape[1])
        layer = gradcam.target_layer(net, head, "multitask")
        cams = gradcam.compute_cams(net, strain, masks, head, method, layer=layer)
        assert cams.shape == strain.shape
        assert np.isfinite(cams).all()
        assert cams.min() >= 0.0 and cams.max() <= 1.0 + 1e-6
        # Each map is min-max normalised (peak 1), or all zero where no
        # activation raises the score (Grad-CAM++ keeps positive gradients
        # only); not every map may be empty.
        peaks = cams.max(axis=(1, 2))
        assert np.all((np.abs(peaks - 1.0) < 1e-5) | (peaks == 0.0)), peaks
        assert peaks.max() > 0.5


def test_largest_circular_run_wraps_and_breaks_ties():
    mask = np.zeros(N, bool)
    assert gradcam.largest_circular_run(mask).size == 0
    mask[[0, 1, 2, 123, 124, 125]] = True  # one run of 6 through sector 0
    mask[50:55] = True  # a shorter one
    np.testing.assert_array_equal(
        gradcam.largest_circular_run(mask), [123, 124, 125, 0, 1, 2]
    )
    t = gradcam.find_target(np.full(N, 30.0), mask.astype(float))
    assert t.centre == 125 and not t.fallback  # lower middle of an even run
    tie = np.zeros(N, bool)
    tie[10:14] = tie[80:84] = True
    np.testing.assert_array_equal(gradcam.largest_circular_run(tie), range(10, 14))
    np.testing.assert_array_equal(
        gradcam.largest_circular_run(np.ones(N, bool)), np.arange(N)
    )


def test_find_target_from_tos_alone_and_fallback():
    tos = np.full(N, 17.0)
    tos[40:61] = 80.0
    tos[100:104] = 90.0
    t = gradcam.find_target(tos)  # regression only: late = TOS > 18 ms
    assert t.centre == 50 and list(t.run) == list(range(40, 61))
    none = gradcam.find_target(tos, np.zeros(N))  # the classifier sees no LMA
    assert none.fallback and none.centre == 100 and list(none.run) == [100]
    with pytest.raises(ValueError):
        gradcam.find_target(None, None)


def test_target_layer_for_every_network():
    cfg = lma_config.base_config()
    cfg.model.trunk_channels = (4, 4)
    cfg.model.frame_pools = 2
    cfg.model.head_channels = (4, 4)
    cfg.model.head_units = (4,)
    cfg.model.strain_std = 0.1
    cfg.model.tos_mean_ms = 40.0
    cfg.model.kind = "multitask"
    net = model.build_model(cfg)
    assert gradcam.target_layer(net, "tos", "multitask") == "tos_head_block1_conv"
    assert gradcam.target_layer(net, "lma", "multitask") == "lma_head_block1_conv"
    with pytest.raises(ValueError, match="head"):
        gradcam.target_layer(net, "scar", "multitask")
    # A plain name in the registry is that layer; a missing one is an error.
    with pytest.raises(ValueError, match="conv2"):
        gradcam.target_layer(net, "tos", "isbi2021")
    cfg.model.kind = "isbi2021"
    isbi = model.build_model(cfg)
    assert gradcam.target_layer(isbi, "tos", registry.get("isbi2021")) == "conv2"
    cfg.model.kind = "regression_only"
    cfg.model.head_channels = ()
    no_branch = model.build_model(cfg)  # no branch conv: the last shared one
    assert gradcam.target_layer(no_branch, "tos", "regression_only") == "ring2_conv"
    cfg.model.ring_dilations = ()
    no_ring = model.build_model(cfg)
    assert gradcam.target_layer(no_ring, "tos", "regression_only") == "trunk1_conv"


def test_real_frames_ignores_the_zero_padding():
    strain = np.zeros((N, 64), np.float32)
    strain[:, :37] = -0.1
    strain[5, 36] = 0.0  # a zero inside the real frames is not padding
    assert preprocess.real_frames(strain, 40) == 37
    assert preprocess.real_frames(np.zeros((N, 64)), 40) == 40
