"""The CNN family's BatchNorm momentum option: built as configured, validated."""

from __future__ import annotations

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
    """A late bump far from sector 0 moves sector 0's output only with ring blocks."""

    def influence(dilations):
        c = _small_config()
        c.model.ring_dilations = dilations
        model = networks.build_model(c)
        x = np.zeros((1, c.data.num_sectors, c.data.num_frames), np.float32)
        far = x.copy()
        far[0, 40:44] = 0.5  # 40 sectors away: outside the trunk's view
        a, b = model(x, training=False), model(far, training=False)
        assert a["tos"].shape == (1, c.data.num_sectors)
        change = np.asarray(a["lma"])[0, 0] - np.asarray(b["lma"])[0, 0]
        return float(np.abs(change).max())

    # 40 sectors away is only felt through the slice-wide context without ring
    # blocks; with dilations 4, 8, 16, 32 sector 0 reads it directly.
    assert influence((4, 8, 16, 32)) > 10 * influence(())


@pytest.mark.parametrize("value", [(0,), (128,), (2.5,), (True,)])
def test_bad_ring_dilations_are_refused(value):
    c = lma_config.base_config()
    c.model.ring_dilations = value
    with pytest.raises(ValueError, match="ring_dilations"):
        lma_config.validate_config(c)
