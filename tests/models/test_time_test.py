"""Test-time views: rotated and mirrored copies averaged, mapped back to the sectors."""

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import constants
from lma_tf.models import networks, test_time

N = constants.NUM_SECTORS


def _config(shifts: int, mirror: bool, padding: str = "circular"):
    c = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict({"num_sectors": 128, "sector_padding": padding})
    c.model = ml_collections.ConfigDict(
        {"test_time_shifts": shifts, "test_time_mirror": mirror}
    )
    return c


class _PositionModel:
    """Not rotation invariant: adds each (padded) sector's index to the strain.

    TOS = strain[:, :, 0] + index; "logits" = (index, -index) per sector.
    """

    def __call__(self, x, training=False):
        idx = tf.range(128, dtype=tf.float32)[None, :]
        tos = x[:, :, 0] + idx
        logits = tf.stack([idx, -idx], axis=-1) + 0.0 * x[:, :, :2]
        return {"tos": tos, "lma": logits}


def test_views_listed_from_the_config():
    assert test_time.views(_config(1, False)) == [(0, False)]
    assert test_time.views(_config(2, True)) == [
        (0, False),
        (1, False),
        (0, True),
        (1, True),
    ]
    # A config saved before the keys existed gets no extra views.
    old = ml_collections.ConfigDict({"model": {}, "data": {}})
    assert test_time.views(old) == [(0, False)]


def test_average_maps_each_view_back_to_its_sectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 126, 4)).astype(np.float32)
    padded = np.concatenate([x, x[:, :2]], axis=1)
    model = _PositionModel()
    out = test_time.wrap(model, _config(3, True))(padded)
    # Every view sees the strain of sector i at some position p; mapped back,
    # sector i gets strain_i + p: the average of p over the six views.
    i = np.arange(N, dtype=np.float64)
    positions = [(i + k) % N for k in range(3)] + [
        (N - 1 - i + k) % N for k in range(3)
    ]
    want = x[:, :, 0] + np.mean(positions, axis=0)[None, :]
    np.testing.assert_allclose(out["tos"].numpy()[:, :N], want, atol=1e-4)
    np.testing.assert_allclose(
        out["lma"].numpy()[:, :N, 0],
        np.broadcast_to(np.mean(positions, 0), (2, N)),
        atol=1e-4,
    )
    # Outputs keep the model's padded layout (sectors 126, 127 = 0, 1).
    assert out["tos"].shape == (2, 128)
    np.testing.assert_allclose(out["tos"].numpy()[:, N:], out["tos"].numpy()[:, :2])


def test_no_views_returns_the_model_itself():
    model = _PositionModel()
    assert test_time.wrap(model, _config(1, False)) is model
    assert test_time.wrap(None, _config(4, True)) is None


def test_an_equivariant_model_is_unchanged_by_the_views():
    # A per-sector function of the strain commutes with rotation and mirror.
    def model(x, training=False):
        return {"tos": tf.reduce_sum(x, axis=-1) * 3.0}

    x = np.random.default_rng(1).normal(size=(3, 126, 5)).astype(np.float32)
    padded = np.concatenate([x, x[:, :2]], axis=1)
    out = test_time.wrap(model, _config(4, True))(padded)
    np.testing.assert_allclose(
        out["tos"].numpy(), model(padded)["tos"].numpy(), atol=1e-4
    )


def test_the_default_network_averages_its_views():
    c = lma_config.base_config()
    c.model.strain_std, c.model.tos_mean_ms = 0.05, 40.0
    keras.utils.set_random_seed(0)
    model = networks.build_model(c)
    x = np.random.default_rng(2).normal(0, 0.05, (2, 126, c.data.num_frames))
    padded = np.concatenate([x, x[:, :2]], axis=1).astype(np.float32)
    wrapped = test_time.wrap(model, c)
    assert len(wrapped.views) == 8  # the default: 4 rotations, each mirrored
    avg = wrapped(padded)["tos"].numpy()[:, :N]
    # The same average by hand: each view through the bare network, mapped back.
    want = []
    for k, flip in wrapped.views:
        v = x[:, ::-1] if flip else x
        v = np.roll(v, k, axis=1)
        v = np.concatenate([v, v[:, :2]], axis=1).astype(np.float32)
        t = np.roll(model(v, training=False)["tos"].numpy()[:, :N], -k, axis=1)
        want.append(t[:, ::-1] if flip else t)
    np.testing.assert_allclose(avg, np.mean(want, axis=0), atol=1e-3)
    # The ring is pooled 4-fold, so the views really differ.
    assert np.ptp(np.stack(want), axis=0).max() > 1e-4


@pytest.mark.parametrize(
    "field,value",
    [
        ("model.test_time_shifts", 0),
        ("model.test_time_shifts", -2),
        ("model.test_time_shifts", True),
    ],
)
def test_bad_values_are_refused(field, value):
    c = lma_config.base_config()
    block, key = field.split(".")
    c[block][key] = value
    with pytest.raises(ValueError, match=key):
        lma_config.validate_config(c)


def test_a_non_bool_mirror_flag_from_a_file_is_refused():
    # ConfigDict refuses the wrong type on assignment; a config rebuilt from
    # JSON or a dict is not typed, so validation checks it.
    c = ml_collections.ConfigDict(lma_config.base_config().to_dict())
    del c.model["test_time_mirror"]
    c.model.test_time_mirror = "yes"
    with pytest.raises(ValueError, match="test_time_mirror"):
        lma_config.validate_config(c)
