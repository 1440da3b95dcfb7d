"""Serving input checks under arbitrary inputs (hypothesis).

Whatever arrays or scalars a client sends, both runtimes give either a valid
result (the right shapes, finite, TOS >= 17 ms, probabilities in [0, 1]) or
one of the documented `contract.InputError`s: never another exception, a
NaN/inf output, a hang (each example has a deadline) or a memory blow-up.
The SavedModel's in-graph checks refuse exactly what the numpy checks
refuse, with the same message. One tiny export serves the whole module.
"""

import resource

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lma_tf import constants, testing
from lma_tf.serving import contract, runtime

DOCUMENTED = (
    contract.TOO_FEW_FRAMES,
    contract.TOO_MANY_FRAMES,
    contract.PERIOD_COUNT,
    contract.EMPTY_BATCH,
    contract.BAD_PERIOD,
    contract.BAD_STRAIN,
    contract.STRAIN_RANGE,
    contract.BAD_OUTPUT,
    "strain must have shape",
    "must hold real numbers",
)
SETTINGS = settings(
    max_examples=40,
    deadline=5000,  # ms per example: a resampling blow-up would take longer
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

# Values a client might send: mostly sane, with edges and garbage mixed in
# (one_of picks its branches about evenly: sane ones are listed twice).
SANE = st.floats(-0.25, 0.25, width=32)
VALUES = st.one_of(
    SANE,
    SANE,
    st.sampled_from([-1.0, 1.0, 1.0001, -7.5, 1e30, np.nan, np.inf, -np.inf]),
    st.floats(width=32),
)
IN_RANGE = st.floats(*contract.PERIOD_RANGE_MS, width=32)
PERIODS = st.one_of(
    IN_RANGE,
    IN_RANGE,
    IN_RANGE,
    st.sampled_from([17.0, 0.0, -17.0, 4.999, 100.001, 1e30, np.nan, np.inf]),
    st.floats(width=32),
)


def _mostly(draw, sane, odd, odds_in_ten: int = 2):
    """A draw from `sane`, or from `odd` about `odds_in_ten` times in ten."""
    return draw(odd if draw(st.integers(0, 9)) < odds_in_ten else sane)


ODD_SECTORS = st.sampled_from([125, 1, 0])


@st.composite
def requests(draw, odd_sectors=ODD_SECTORS):
    """(strain, periods): mostly well-shaped, often out of the contract."""
    batch = draw(st.integers(0, 3))
    sectors = _mostly(draw, st.just(126), odd_sectors, 1)
    frames = _mostly(draw, st.integers(16, 128), st.sampled_from([0, 1, 15, 129]))
    fill = st.floats(-0.125, 0.125, width=32)
    # A few drawn elements over a sane fill: sparse enough to pass sometimes.
    elements = st.one_of(SANE, VALUES)
    shape = (batch, sectors, frames)
    strain = draw(hnp.arrays(np.float32, shape, elements=elements, fill=fill))
    count = _mostly(draw, st.just(batch), st.sampled_from([0, batch + 1]), 1)
    periods = draw(hnp.arrays(np.float32, (count,), elements=PERIODS))
    return strain, periods


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    version_dir = testing.tiny_export(str(tmp_path_factory.mktemp("tiny")))
    return {
        name: runtime.load_model(version_dir, name) for name in ("onnx", "tensorflow")
    }


def _valid_or_documented(model, strain, periods):
    """The outputs, or None after a documented refusal; fails otherwise."""
    try:
        out = model(strain, periods)
    except contract.InputError as e:
        assert any(m in str(e) for m in DOCUMENTED), str(e)
        assert "\n" not in str(e)
        event(f"refused: {next(m for m in DOCUMENTED if m in str(e))}")
        return None
    event("served")
    batch = np.asarray(strain).shape[0]
    for key in contract.OUTPUT_KEYS:
        assert out[key].shape == (batch, constants.NUM_SECTORS), key
        assert np.all(np.isfinite(out[key])), key
    assert np.all(out[contract.TOS_MS] >= constants.TOS_FLOOR_MS)
    prob = out[contract.LMA_PROBABILITY]
    assert np.all((prob >= 0) & (prob <= 1))
    return out


@SETTINGS
@given(request=requests())
def test_any_array_gives_a_result_or_a_documented_error(models, request):
    strain, periods = request
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outs = {n: _valid_or_documented(m, strain, periods) for n, m in models.items()}
    # Both runtimes take or refuse the same requests, and agree on values.
    assert (outs["onnx"] is None) == (outs["tensorflow"] is None)
    if outs["onnx"] is not None:
        a, b = outs["onnx"], outs["tensorflow"]
        for key in (contract.TOS_MS, contract.LMA_PROBABILITY):
            np.testing.assert_allclose(a[key], b[key], atol=1e-3, rtol=0)
        # combined_tos_ms jumps at P = 0.5: rounding may flip sectors there.
        prob = a[contract.LMA_PROBABILITY]
        clear = np.abs(prob - 0.5) > 1e-4
        key = contract.COMBINED_TOS_MS
        np.testing.assert_allclose(a[key][clear], b[key][clear], atol=1e-3, rtol=0)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB on one request"


ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.floats(-1, 1), max_size=4),
    hnp.arrays(
        hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)
    ),
)


@SETTINGS
@given(strain=ODD, periods=ODD)
def test_scalars_and_odd_objects_are_refused_cleanly(models, strain, periods):
    for model in models.values():
        with pytest.raises(contract.InputError) as e:
            model(strain, periods)
        assert any(m in str(e.value) for m in DOCUMENTED), str(e.value)


@SETTINGS
@given(request=requests(odd_sectors=st.just(constants.NUM_SECTORS)))
def test_in_graph_checks_refuse_what_the_numpy_checks_refuse(models, request):
    """The SavedModel signature itself (as TensorFlow Serving runs it)."""
    strain, periods = request
    signature = models["tensorflow"]._fn
    try:
        contract.check_inputs_np(strain, periods)
        # An empty batch passes numpy (the runtimes return empty outputs
        # without the graph); the signature itself refuses it by name.
        expected = contract.EMPTY_BATCH if not len(strain) else None
    except contract.InputError as e:
        expected = next(m for m in DOCUMENTED if m in str(e))
    try:
        signature(strain=tf.constant(strain), frame_period_ms=tf.constant(periods))
        got = None
    except tf.errors.InvalidArgumentError as e:
        got = next((m for m in DOCUMENTED if m in e.message), e.message)
    assert got == expected
