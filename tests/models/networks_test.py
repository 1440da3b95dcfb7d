"""The CNN family's BatchNorm momentum option: built as configured, validated."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lma_tf import config as lma_config
from lma_tf.models import networks


def _bn_momenta(model) -> set[float]:
    return {
        layer.momentum
        for layer in model.layers
        if layer.__class__.__name__ == "BatchNormalization"
    }


def _small_config():
    c = lma_config.base_config()
    c.model.trunk_channels = (4, 8)
    c.model.frame_pools = 2
    c.model.head_channels = (8,)
    c.model.head_units = (8,)
    return c


def test_every_batchnorm_takes_the_configured_momentum():
    c = _small_config()
    assert _bn_momenta(networks.build_model(c)) == {0.9}
    c.model.bn_momentum = 0.5
    assert _bn_momenta(networks.build_model(c)) == {0.5}


def test_a_config_saved_before_the_option_keeps_keras_default():
    c = _small_config()
    del c.model["bn_momentum"]
    assert _bn_momenta(networks.build_model(c)) == {0.99}


@pytest.mark.parametrize("value", [1.0, -0.1, True])
def test_bad_momentum_is_refused(value):
    c = lma_config.base_config()
    c.model.bn_momentum = value
    with pytest.raises(ValueError, match="bn_momentum"):
        lma_config.validate_config(c)


def test_ring_blocks_widen_the_sector_view_and_keep_the_ring():
    """A bump 40 sectors from sector 0 reaches its shared features only
    through the ring blocks (before the slice-wide summary is joined)."""

    def change_at_sector0(dilations):
        c = _small_config()
        c.model.ring_dilations = dilations
        lma_config.validate_config(c)
        keras.utils.set_random_seed(0)
        model = networks.build_model(c)
        last = f"ring{len(dilations) - 1}_add" if dilations else "trunk1_relu"
        shared = keras.Model(model.input, model.get_layer(last).output)
        x = np.zeros((1, c.data.num_sectors, c.data.num_frames), np.float32)
        far = x.copy()
        far[0, 40:44] = 0.5  # 10 positions away on the 32-position ring
        a, b = np.asarray(shared(x)), np.asarray(shared(far))
        assert a.shape[1] == c.data.num_sectors // 2**c.model.sector_pools
        assert model(x)["tos"].shape == (1, c.data.num_sectors)
        return float(np.abs(a[0, 0] - b[0, 0]).max())

    # The trunk alone sees about 5 sectors either side: nothing arrives.
    assert change_at_sector0(()) == 0.0
    # Dilations 2, 4, 8 on the pooled ring reach 14 positions either side.
    assert change_at_sector0((2, 4, 8)) > 1e-4


@pytest.mark.parametrize("value", [(0,), (128,), (2.5,), (True,)])
def test_bad_ring_dilations_are_refused(value):
    c = lma_config.base_config()
    c.model.ring_dilations = value
    with pytest.raises(ValueError, match="ring_dilations"):
        lma_config.validate_config(c)
