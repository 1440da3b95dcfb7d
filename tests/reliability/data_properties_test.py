"""The slice validator, the .npz reader and the record parser under arbitrary inputs.

Whatever arrays, scalars, ids or bytes they get, they give either a valid
result (float32, the right shapes, finite, every field in its documented
range) or their documented error (`SliceError` / a Reject for the reader,
`tf.errors.InvalidArgumentError` for the parser): never another exception,
inf/NaN in the output, a hang (each example has a deadline) or a memory
blow-up (the reader refuses declared shapes before allocating). A slice the
validator accepts always parses back from its record.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lma_tf import constants
from lma_tf.data import features, sources
from lma_tf.data.slices import (
    FRAME_PERIOD_RANGE_MS,
    MAX_ABS_SLICE_LOCATION_MM,
    MAX_ID_LENGTH,
    DenseSlice,
    Reject,
    SliceError,
    validate_slice,
)

N = constants.NUM_SECTORS
SETTINGS = settings(
    max_examples=60,
    deadline=5000,  # ms per example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

# Mostly plausible values with edges and garbage mixed in (sane ones twice,
# since one_of picks its branches about evenly).
SANE_STRAIN = st.floats(-0.25, 0.25, width=32)
STRAIN_VALUES = st.one_of(
    SANE_STRAIN,
    SANE_STRAIN,
    st.sampled_from([1.0, -1.0, 1.5, 15.0, -150.0, 1e30, 1e300, np.nan, np.inf]),
    st.floats(),
)
DTYPES = st.sampled_from(
    [np.float64, np.float64, np.float32, np.int16, np.complex128, np.bool_]
)


def _array(shapes, values):
    """Arrays of a drawn dtype and shape, filled from `values` (cast if needed)."""

    @st.composite
    def draw_array(draw):
        shape = draw(shapes)
        fill = draw(values)
        arr = np.full(shape, fill, dtype=np.float64)
        if arr.size:  # a few other values at random places
            for _ in range(draw(st.integers(0, 3))):
                arr.flat[draw(st.integers(0, arr.size - 1))] = draw(values)
        dtype = draw(DTYPES)
        with np.errstate(all="ignore"):
            if dtype is np.complex128 and draw(st.booleans()):
                return arr + 1j
            return arr.astype(dtype) if dtype is not np.float64 else arr

    return draw_array()


STRAINS = _array(
    st.one_of(
        st.tuples(st.just(N), st.integers(16, 128)),
        st.sampled_from([(N, 15), (N, 129), (N - 1, 30), (N,), (N, 30, 1), ()]),
    ),
    STRAIN_VALUES,
)
TOS_VALUES = st.one_of(
    st.floats(17.0, 300.0),
    st.floats(16.5, 17.0),
    st.sampled_from([0.0, 5.0, 16.4, -1.0, 1e9, np.nan, np.inf]),
)
VECTOR_SHAPES = st.sampled_from([(N,), (N,), (1, N), (N, 1), (N - 1,), (2, N)])
TOS = st.one_of(st.none(), _array(VECTOR_SHAPES, TOS_VALUES))
SCAR = st.one_of(
    st.none(),
    _array(VECTOR_SHAPES, st.one_of(st.floats(0, 1), st.sampled_from([-0.1, 1.1]))),
)
SCALARS = st.one_of(
    st.floats(5, 100),
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([17.0, 1e9, 1e300, complex(17, 1), "17", "x", None, [17.0, 3]]),
)
IDS = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["", "a\nREJECT file=x", "\udcff", "x" * (MAX_ID_LENGTH + 1)]),
)


def _check_valid(out: DenseSlice) -> None:
    """Every field of a validated slice within its documented range."""
    strain = out.strain_matrix
    assert strain.dtype == np.float32 and strain.ndim == 2
    assert strain.shape[0] == N
    assert constants.MIN_FRAMES <= strain.shape[1] <= constants.MAX_FRAMES
    assert np.all(np.isfinite(strain)) and np.max(np.abs(strain)) <= 1.0
    low, high = FRAME_PERIOD_RANGE_MS
    assert low <= out.frame_period_ms <= high
    if out.tos_ms is not None:
        duration = strain.shape[1] * out.frame_period_ms
        assert out.tos_ms.shape == (N,) and out.tos_ms.dtype == np.float32
        assert np.all(out.tos_ms >= constants.TOS_FLOOR_MS)
        assert np.all(out.tos_ms <= duration + 1e-3)
    if out.scar_fraction is not None:
        assert out.scar_fraction.shape == (N,)
        assert np.all((out.scar_fraction >= 0) & (out.scar_fraction <= 1))
    if out.slice_location is not None:
        assert abs(out.slice_location) <= MAX_ABS_SLICE_LOCATION_MM
    for text in (out.subject_id, out.slice_id):
        assert 0 < len(text) <= MAX_ID_LENGTH
        text.encode("utf-8")


@SETTINGS
@given(
    strain=STRAINS,
    period=st.one_of(st.just(17.0), SCALARS),
    tos=TOS,
    scar=SCAR,
    location=st.one_of(st.none(), SCALARS),
    subject=IDS,
    slice_id=IDS,
)
def test_validator_accepts_only_in_range_slices_that_parse_back(
    strain, period, tos, scar, location, subject, slice_id
):
    s = DenseSlice(subject, slice_id, strain, period, tos, scar, location)
    try:
        out = validate_slice(s)
    except SliceError as e:
        assert str(e)  # a reason, and nothing else raised
        return
    _check_valid(out)
    # What the validator accepts, the record parser accepts unchanged.
    example = features.slice_to_example(out).SerializeToString(deterministic=True)
    parsed = features.parse_example(tf.constant(example))
    np.testing.assert_array_equal(parsed["strain"].numpy(), out.strain_matrix)
    if out.tos_ms is not None:
        np.testing.assert_array_equal(parsed[features.TOS].numpy(), out.tos_ms)


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


F32 = st.one_of(st.floats(-0.25, 0.25, width=32), st.floats(width=32))


@st.composite
def examples(draw) -> bytes:
    """A serialized tf.train.Example with arbitrary values under the schema's keys."""
    frames = draw(st.one_of(st.integers(16, 128), st.integers(-(2**63), 2**63 - 1)))
    real = max(0, min(int(frames), 130))
    count = draw(st.sampled_from([N * real, N * real, N * real - 1, 3, 0]))
    strain = np.full(count, draw(F32), np.float32)
    if count:
        strain[draw(st.integers(0, count - 1))] = draw(F32)
    raw = strain.tobytes() + draw(st.sampled_from([b"", b"", b"\x00"]))
    feats = {
        features.STRAIN: tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw])),
        features.NUM_FRAMES: _ints([frames]),
    }
    optional = {
        features.FRAME_PERIOD: _floats([draw(st.one_of(st.floats(5, 100), F32))]),
        features.TOS: _floats(
            [draw(st.one_of(st.floats(17, 500, width=32), F32))]
            * draw(st.sampled_from([N, N, N - 1]))
        ),
        features.HAS_TOS: _ints([draw(st.sampled_from([0, 1, 7]))]),
        features.LMA: _ints([draw(st.sampled_from([0, 1, -1]))] * N),
        features.SCAR: _floats([draw(st.one_of(st.floats(0, 1, width=32), F32))] * N),
        features.SLICE_LOCATION: _floats([draw(F32)]),
    }
    for key, feature in optional.items():
        if draw(st.booleans()):
            feats[key] = feature
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString()


@SETTINGS
@given(serialized=st.one_of(examples(), st.binary(max_size=64)))
def test_parser_gives_finite_in_range_tensors_or_invalid_argument(serialized):
    try:
        p = features.parse_example(tf.constant(serialized))
    except tf.errors.InvalidArgumentError:
        return
    frames = int(p[features.NUM_FRAMES])
    assert constants.MIN_FRAMES <= frames <= constants.MAX_FRAMES
    strain = p["strain"].numpy()
    assert strain.shape == (N, frames)
    assert np.all(np.isfinite(strain)) and np.max(np.abs(strain)) <= 1.0
    period = float(p[features.FRAME_PERIOD])
    assert FRAME_PERIOD_RANGE_MS[0] <= period <= FRAME_PERIOD_RANGE_MS[1]
    for key in (features.TOS, features.SCAR, features.SLICE_LOCATION):
        assert np.all(np.isfinite(p[key].numpy())), key
    assert np.all((p[features.SCAR].numpy() >= 0) & (p[features.SCAR].numpy() <= 1))
    assert set(np.unique(p[features.LMA].numpy())) <= {0, 1}


def _declaring(shape, dtype: str) -> bytes:
    """An .npz whose strain_matrix header declares `shape`, with no data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("strain_matrix.npy", header.getvalue())
    return buf.getvalue()


@SETTINGS
@given(
    arrays=st.fixed_dictionaries(
        {"strain_matrix": STRAINS},
        optional={
            "tos_ms": _array(VECTOR_SHAPES, TOS_VALUES),
            "frame_period_ms": SCALARS.filter(lambda v: v is not None),
            "slice_id": st.sampled_from(["a", "", "b\nc"]),
            "subject_id": hnp.arrays(np.int8, st.sampled_from([(), (3,)])),
        },
    ),
    declared=st.tuples(
        st.lists(st.integers(0, 10**7), min_size=0, max_size=4).map(tuple),
        st.sampled_from(["<f8", "<f4", "<c16", "|O", "<U10"]),
    ),
)
def test_npz_reader_never_raises_and_refuses_large_declarations(arrays, declared):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "P", "s.npz")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:  # huge ints become (pickled) object arrays
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
        for item in sources.read_source(path):
            if isinstance(item, Reject):
                assert item.reason and "\n" not in item.line()
                continue
            try:
                _check_valid(validate_slice(item))
            except SliceError:
                pass
        with open(path, "wb") as f:
            f.write(_declaring(*declared))
        (item,) = sources.read_source(path)
        shape, dtype = declared
        size = int(np.prod(shape, dtype=np.float64))
        if dtype == "|O":
            assert "pickle" in item.reason
        elif dtype == "<c16":
            assert (
                item.reason == "strain_matrix is complex; only real values are accepted"
            )
        elif size > 16_128 or size * np.dtype(dtype).itemsize > 129_024:
            assert "strain_matrix declares shape" in item.reason
        elif isinstance(item, DenseSlice):  # an empty array: no data needed
            assert size == 0
        else:  # the declared data is missing from the file
            assert "unreadable" in item.reason
