"""The leaner multitask variants: options validated, ring restored, exportable."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lma_tf import config as lma_config
from lma_tf.evaluation import cost
from lma_tf.models import networks

VARIANTS = (
    "multitask_narrow",
    "multitask_separable",
    "multitask_lean",
)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sector_pools", 4, "sector_pools"),
        ("sector_pools", -1, "sector_pools"),
    ],
)
def test_bad_lean_options_are_refused(field, value, message):
    c = lma_config.base_config()
    c.model[field] = value
    with pytest.raises(ValueError, match=message):
        lma_config.validate_config(c)


def test_sector_pools_need_a_divisible_ring():
    c = lma_config.base_config()
    c.data.num_sectors = 130
    c.model.sector_pools = 2
    with pytest.raises(ValueError, match="num_sectors=130 not divisible"):
        lma_config.validate_config(c)


def test_sector_upsample_interpolates_around_the_ring():
    x = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1)
    circular = networks.SectorUpsample(1, circular=True)(x)
    np.testing.assert_allclose(
        np.asarray(circular)[0, :, 0, 0],
        [0.75, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 2.25],  # 0 and 3 neighbours
    )
    edge = networks.SectorUpsample(1, circular=False)(x)
    np.testing.assert_allclose(
        np.asarray(edge)[0, :, 0, 0], [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]
    )
    twice = networks.SectorUpsample(2)(np.ones((2, 8, 3, 5), np.float32))
    assert twice.shape == (2, 32, 3, 5)
    np.testing.assert_allclose(np.asarray(twice), 1.0)  # constants stay constant


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_predicts_every_sector_for_less(name):
    base = cost.static_cost(lma_config.load_experiment("multitask"))
    config = lma_config.load_experiment(name)
    keras.utils.set_random_seed(0)
    model = networks.build_model(config)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.0, (2, 128, 64)).astype(np.float32)  # unit-scale input
    out = model(x)
    assert out["tos"].shape == (2, 128) and out["lma"].shape == (2, 128, 2)
    # Restored, not repeated: what each head's MLP reads differs between
    # neighbouring sectors, pooled or not.
    head_in = keras.Model(model.input, model.get_layer("tos_head_context").output)
    feats = np.asarray(head_in(x))
    assert feats.shape[:2] == (2, 128)
    assert np.all(np.abs(feats[:, 0::2] - feats[:, 1::2]).max(axis=-1) > 0)
    assert cost.count_flops(model) < 0.6 * base["flops_per_example"]
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert ("SeparableConv2D" in layer_types) == bool(config.model.separable)
    pools = config.model.sector_pools
    trunk_out = model.get_layer(f"trunk{len(config.model.trunk_channels) - 1}_relu")
    assert trunk_out.output.shape[1] == 128 // 2**pools


def test_the_full_ring_variant_keeps_every_sector_in_the_trunk():
    config = lma_config.load_experiment("multitask_full_ring")
    model = networks.build_model(config)
    last = len(config.model.trunk_channels) - 1
    assert model.get_layer(f"trunk{last}_relu").output.shape[1] == 128
    assert not any(layer.name.startswith("ring") for layer in model.layers)
    default = networks.build_model(lma_config.load_experiment("multitask"))
    assert default.get_layer(f"trunk{last}_relu").output.shape[1] == 32
    assert default.get_layer("ring2_add").output.shape[1] == 32


def test_a_separable_sector_pooled_network_exports_to_both_runtimes(tmp_path):
    """SavedModel and ONNX give the Keras model's predictions (tiny network)."""
    from lma_tf import testing
    from lma_tf.serving import contract, export, runtime

    c = testing.tiny_config(lma_config.base_config(), "unused")
    c.model.separable = True
    c.model.sector_pools = 2
    c.model.strain_mean, c.model.strain_std, c.model.tos_mean_ms = 0.0, 0.05, 40.0
    lma_config.validate_config(c)
    keras.utils.set_random_seed(0)
    model = networks.build_model(c)
    path = export.export_model(model, c, str(tmp_path), version=1)
    rng = np.random.default_rng(1)
    strain = rng.normal(0, 0.05, (3, 126, c.data.num_frames)).astype(np.float32)
    period = np.full([3], c.data.frame_period_ms, np.float32)
    serve, _ = export.serving_functions(model, c)
    expected = {k: np.asarray(v) for k, v in serve(strain, period).items()}
    for name in ("tensorflow", "onnx"):
        got = runtime.load_model(path, name)(strain, period)
        for key in contract.OUTPUT_KEYS:
            np.testing.assert_allclose(got[key], expected[key], atol=1e-3, rtol=1e-4)
