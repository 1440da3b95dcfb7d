"""Several networks exported as one: outputs averaged, in both runtimes."""

import json
import os

import keras
import numpy as np
import pytest

from lma_tf import config as lma_config
from lma_tf import constants, rules, testing
from lma_tf.models import ensemble, networks, test_time
from lma_tf.serving import contract, export, layout, runtime

N = constants.NUM_SECTORS


def _tiny(seed: int):
    c = testing.tiny_config(lma_config.base_config(), "unused")
    c.model.strain_mean, c.model.strain_std, c.model.tos_mean_ms = 0.0, 0.05, 40.0
    c.model.test_time_shifts = 2
    lma_config.validate_config(c)
    keras.utils.set_random_seed(seed)
    return networks.build_model(c), c


def test_an_ensemble_export_serves_the_members_average(tmp_path):
    (m0, c0), (m1, c1) = _tiny(0), _tiny(1)
    net = ensemble.Ensemble([m0, m1], [c0, c1])
    path = export.export_model(net, c0, str(tmp_path), version=1)
    rng = np.random.default_rng(4)
    f = c0.data.num_frames
    strain = rng.normal(0, 0.05, (3, 126, f)).astype(np.float32)
    period = np.full([3], c0.data.frame_period_ms, np.float32)
    # By hand: each member on its own views, TOS and P(LMA) averaged.
    x = np.concatenate([strain, strain[:, :2]], axis=1)
    tos, prob = [], []
    for m, c in ((m0, c0), (m1, c1)):
        out = test_time.wrap(m, c)(x)
        tos.append(out["tos"].numpy()[:, :N])
        prob.append(rules.lma_probability(out["lma"].numpy()[:, :N]))
    want_tos = rules.floor_tos(np.mean(tos, 0))
    want_prob = np.mean(prob, 0)
    assert np.abs(prob[0] - prob[1]).max() > 1e-3  # two different members
    for name in ("tensorflow", "onnx"):
        got = runtime.load_model(path, name)(strain, period)
        np.testing.assert_allclose(got[contract.TOS_MS], want_tos, atol=1e-3)
        np.testing.assert_allclose(got[contract.LMA_PROBABILITY], want_prob, atol=1e-5)
        combined = np.where(want_prob >= 0.5, want_tos, constants.TOS_FLOOR_MS)
        np.testing.assert_allclose(got[contract.COMBINED_TOS_MS], combined, atol=1e-3)


def test_members_must_share_kind_and_preprocessing():
    (m0, c0), (m1, c1) = _tiny(0), _tiny(1)
    c1.data.drop_last_frames = 5
    with pytest.raises(ValueError, match="drop_last_frames"):
        ensemble.Ensemble([m0, m1], [c0, c1])
    c1.data.drop_last_frames = c0.data.drop_last_frames
    c1.model.kind = "regression_only"
    with pytest.raises(ValueError, match="one kind"):
        ensemble.Ensemble([m0, m1], [c0, c1])


def test_exporting_one_run_twice_is_that_run(serving_run, tmp_path):
    """`--model_dir=A,A` averages two equal members: the single export's outputs."""
    both = export.export(
        f"{serving_run.model_dir},{serving_run.model_dir}", str(tmp_path), "saved_model"
    )
    with open(os.path.join(both, layout.EXPORT_INFO)) as f:
        info = json.load(f)
    assert info["ensemble_members"] == 2
    rng = np.random.default_rng(5)
    strain = rng.normal(0, 0.05, (2, 126, 40)).astype(np.float32)
    period = np.full([2], 17.0, np.float32)
    single = runtime.load_model(serving_run.version_dir, "tensorflow")(strain, period)
    pair = runtime.load_model(both, "tensorflow")(strain, period)
    for key in contract.OUTPUT_KEYS:
        np.testing.assert_allclose(pair[key], single[key], atol=1e-4)
