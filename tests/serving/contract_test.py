"""The serving contract: one fit-to-model op for training and serving, checks, rules.

The parity tests feed the same raw slices through the training parser
(`pipeline.parse_and_fit`) and through both signatures' preprocessing, saved
in a SavedModel and loaded back, and require the same model frames.
"""

import inspect
import re

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import constants, rules, testing
from lma_tf.data import features, pipeline
from lma_tf.serving import contract, prediction_csv, signatures

# Both ends of the frame contract and lengths that crop, pad and resample.
FRAME_COUNTS = (16, 20, 37, 64, 100, 128)
PERIODS = (17.0, 34.0)


def _raw_slices(frames: int, count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [
        testing.random_slice(rng, "P", f"s{frames}_{i}", frames) for i in range(count)
    ]


def _serialized(strain: np.ndarray, period: float) -> bytes:
    s = testing.random_slice(np.random.default_rng(0), "P", "x", strain.shape[1])
    s.strain_matrix, s.frame_period_ms = strain, period
    return features.slice_to_example(s).SerializeToString()


def _pipeline_fit(strain: np.ndarray, period: float, data) -> np.ndarray:
    """The training parser's model frames of one raw slice."""
    parsed = pipeline.parse_and_fit(tf.constant(_serialized(strain, period)), data)
    return parsed["strain"].numpy()


def _saved_preprocessing(data, path: str):
    """Both signatures' preprocessing, saved as a SavedModel and loaded back."""
    module = tf.Module()
    module.strain = tf.function(
        lambda strain, frame_period_ms: signatures.fit_strain_batch(
            strain, frame_period_ms, data
        ),
        input_signature=signatures.strain_signature(),
    )
    module.examples = tf.function(
        lambda examples: signatures.fit_examples(examples, data)[0],
        input_signature=signatures.examples_signature(),
    )
    tf.saved_model.save(module, path)
    return tf.saved_model.load(path)


@pytest.fixture(scope="module", params=[0, 5], ids=["drop0", "drop5"])
def saved(request, tmp_path_factory):
    data = lma_config.base_config().data
    data.drop_last_frames = request.param
    path = str(tmp_path_factory.mktemp("preprocessing"))
    return data, _saved_preprocessing(data, path)


@pytest.mark.parametrize("frames", FRAME_COUNTS)
def test_serving_default_preprocessing_equals_the_training_parser(saved, frames):
    data, loaded = saved
    slices = _raw_slices(frames, 4, seed=frames)
    strain = np.stack([s.strain_matrix for s in slices]).astype(np.float32)
    # Uniform batches (one op on the whole batch) and a mixed one (per example).
    for periods in ([17.0] * 4, [34.0] * 4, [17.0, 34.0, 34.0, 17.0]):
        got = loaded.strain(tf.constant(strain), tf.constant(periods)).numpy()
        assert got.shape == (4, constants.NUM_SECTORS, data.num_frames)
        for i, period in enumerate(periods):
            want = _pipeline_fit(strain[i], period, data)
            np.testing.assert_allclose(
                got[i], want, atol=1e-6, rtol=0, err_msg=f"{frames}@{period}"
            )


def test_serve_examples_preprocessing_equals_the_training_parser(saved):
    data, loaded = saved
    raw = []
    for frames in FRAME_COUNTS:
        for period in PERIODS:
            raw.append((_raw_slices(frames, 1, seed=frames)[0].strain_matrix, period))
    batch = tf.constant([_serialized(x, p) for x, p in raw])
    got = loaded.examples(batch).numpy()
    for (x, period), fitted in zip(raw, got):
        want = _pipeline_fit(x, period, data)
        np.testing.assert_allclose(
            fitted, want, atol=1e-6, rtol=0, err_msg=f"{x.shape[1]}@{period}"
        )


# Requests outside the contract: strain shape, periods, a value put into the
# strain (or None), and the message both sides give.
NAN = float("nan")
BAD_REQUESTS = [
    ((1, 126, 15), [17.0], None, contract.TOO_FEW_FRAMES),
    ((1, 126, 129), [17.0], None, contract.TOO_MANY_FRAMES),
    ((2, 126, 40), [17.0], None, contract.PERIOD_COUNT),
    ((1, 126, 40), [0.0], None, contract.BAD_PERIOD),
    ((1, 126, 40), [-17.0], None, contract.BAD_PERIOD),
    ((1, 126, 40), [float("inf")], None, contract.BAD_PERIOD),
    ((1, 126, 40), [NAN], None, contract.BAD_PERIOD),
    ((1, 126, 40), [4.9], None, contract.BAD_PERIOD),
    ((1, 126, 40), [100.5], None, contract.BAD_PERIOD),
    ((1, 126, 40), [17.0], NAN, contract.BAD_STRAIN),
    ((1, 126, 40), [17.0], -1.5, contract.STRAIN_RANGE),
    # Two rules broken: both sides name the first one, in the same order.
    ((1, 126, 10), [NAN], None, contract.TOO_FEW_FRAMES),
    ((0, 126, 10), [], None, contract.TOO_FEW_FRAMES),
    ((1, 126, 40), [-1.0], NAN, contract.BAD_PERIOD),
    ((1, 126, 40), [17.0, 17.0], NAN, contract.PERIOD_COUNT),
]


@pytest.mark.parametrize("shape, periods, value, message", BAD_REQUESTS)
def test_numpy_and_in_graph_checks_refuse_alike(shape, periods, value, message):
    data = lma_config.base_config().data
    strain = np.zeros(shape, np.float32)
    if value is not None:
        strain[0, 3, -1] = value
    period = np.array(periods, np.float32)
    with pytest.raises(contract.InputError, match=re.escape(message)):
        contract.check_inputs_np(strain, period)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        signatures.fit_strain_batch(tf.constant(strain), tf.constant(period), data)


def test_an_empty_batch_passes_numpy_and_is_refused_in_graph():
    """The runtimes answer it with empty outputs; the signature, as TensorFlow
    Serving runs it, refuses it by name instead of failing in the network."""
    data = lma_config.base_config().data
    strain, period = np.zeros((0, 126, 40), np.float32), np.zeros(0, np.float32)
    x, p = contract.check_inputs_np(strain, period)
    assert x.shape == (0, 126, 40) and p.shape == (0,)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=re.escape(contract.EMPTY_BATCH)
    ):
        signatures.fit_strain_batch(tf.constant(strain), tf.constant(period), data)


def test_numpy_checks_pass_the_contract_and_give_float32():
    strain = np.full((2, 126, 16), -1.0, np.float64)  # the edges are inside
    x, p = contract.check_inputs_np(strain, [5, 100])
    assert x.dtype == p.dtype == np.float32 and x.shape == (2, 126, 16)
    for bad in ("text", np.zeros((1, 126, 40), complex), [[[True] * 40] * 126]):
        with pytest.raises(contract.InputError):
            contract.check_inputs_np(bad, [17.0])
    with pytest.raises(contract.InputError, match="shape"):
        contract.check_inputs_np(np.zeros((126, 40)), [17.0])
    # float64 beyond float32 becomes inf: refused as non-finite, not overflowed.
    big = np.zeros((1, 126, 40))
    big[0, 0, 0] = 1e300
    with pytest.raises(contract.InputError, match=re.escape(contract.BAD_STRAIN)):
        contract.check_inputs_np(big, [17.0])


def test_nan_and_out_of_range_strain_are_refused_by_serve_examples():
    data = lma_config.base_config().data
    for value, message in ((np.nan, contract.BAD_STRAIN), (2.0, contract.STRAIN_RANGE)):
        strain = np.zeros([constants.NUM_SECTORS, 40], np.float32)
        strain[3, 39] = value  # in a frame that survives the fit or not: refused
        examples = tf.constant([_serialized(strain, 17.0)])
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            signatures.fit_examples(examples, data)
    examples = tf.constant([_serialized(np.zeros([126, 40], np.float32), 1000.0)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="frame_period_ms"):
        signatures.fit_examples(examples, data)


def test_non_finite_outputs_are_refused_on_both_sides():
    tos = np.full((1, 128), 40.0, np.float32)
    tos[0, 9] = np.inf
    with pytest.raises(tf.errors.InvalidArgumentError, match=contract.BAD_OUTPUT):
        signatures.outputs_from_model({"tos": tf.constant(tos)})
    arrays = {k: np.zeros((1, 126), np.float32) for k in contract.OUTPUT_KEYS}
    assert contract.check_outputs_np(arrays) is arrays
    arrays[contract.LMA_PROBABILITY][0, 2] = np.nan
    with pytest.raises(contract.InputError, match="lma_probability"):
        contract.check_outputs_np(arrays)


def test_outputs_follow_the_rules_with_a_hard_tos_floor():
    rng = np.random.default_rng(4)
    tos = rng.uniform(16.5, 80.0, (2, 128)).astype(np.float32)
    tos[0, :3] = [16.7, 16.99, 17.0]  # the leaky head dips below 17 ms
    logits = rng.normal(0, 2, (2, 128, 2)).astype(np.float32)
    logits[0, 0] = [0.3, 0.3]  # P = 0.5 exactly: called LMA (>= threshold)
    out = signatures.outputs_from_model(
        {"tos": tf.constant(tos), "lma": tf.constant(logits)}
    )
    n = constants.NUM_SECTORS
    want_tos = rules.floor_tos(tos[:, :n])
    want_prob = rules.lma_probability(logits[:, :n])
    want_combined = rules.combine_tos(want_tos, want_prob)
    got = {k: v.numpy() for k, v in out.items()}
    assert set(got) == set(contract.OUTPUT_KEYS)
    np.testing.assert_allclose(got["tos_ms"], want_tos, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got["lma_probability"], want_prob, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got["combined_tos_ms"], want_combined, atol=1e-6)
    assert got["tos_ms"].min() >= constants.TOS_FLOOR_MS
    np.testing.assert_array_equal(got["tos_ms"][0, :3], [17.0, 17.0, 17.0])
    assert got["combined_tos_ms"][0, 0] == constants.TOS_FLOOR_MS  # floored TOS


def test_regression_only_outputs_derive_lma_from_tos():
    tos = np.full((1, 128), 17.0, np.float32)
    tos[0, :5] = [17.5, 18.5, 60.0, 17.0, 16.8]
    out = signatures.outputs_from_model({"tos": tf.constant(tos)})
    np.testing.assert_array_equal(
        out["lma_probability"].numpy()[0, :5], [0, 1, 1, 0, 0]
    )
    np.testing.assert_array_equal(
        out["combined_tos_ms"].numpy()[0, :5], [17.0, 18.5, 60.0, 17.0, 17.0]
    )
    np.testing.assert_array_equal(
        out["tos_ms"].numpy()[0, :5], [17.5, 18.5, 60.0, 17.0, 17.0]
    )
    assert out["tos_ms"].shape == (1, 126)


def test_no_head_without_tos():
    with pytest.raises(ValueError, match="no TOS head"):
        signatures.outputs_from_model({"lma": tf.zeros([1, 128, 2])})


def test_decisions_come_from_the_rules_only():
    """No threshold literal and no own softmax: `lma_tf.rules` decides."""
    source = inspect.getsource(signatures.outputs_from_model)
    assert "0.5" not in source and "softmax" not in source
    assert "rules." in source


def test_output_names_are_the_prediction_csv_columns():
    assert contract.OUTPUT_KEYS == (
        prediction_csv.TOS_MS,
        prediction_csv.LMA_PROBABILITY,
        prediction_csv.COMBINED_TOS_MS,
    )
