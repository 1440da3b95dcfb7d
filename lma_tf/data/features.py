"""The record schema: the single feature spec for writer, parser and serving.

One `tf.train.Example` per slice. The strain matrix is stored as raw
little-endian float32 bytes (row-major, 126 x num_frames): decoding is a
memcpy, an order of magnitude faster to parse than a 8,000-long float_list.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lma_tf import constants
from lma_tf.data import slices
from lma_tf.data.slices import DenseSlice
from lma_tf.decision import orientation as orientation_lib
from lma_tf.rules import lma_labels

SCHEMA_VERSION = 1

STRAIN = "strain/matrix"
NUM_FRAMES = "strain/num_frames"
FRAME_PERIOD = "strain/frame_period_ms"
TOS = "label/tos_ms"
HAS_TOS = "label/has_tos"
LMA = "label/lma"
SCAR = "scar/fraction"
HAS_SCAR = "scar/has_fraction"
SUBJECT_ID = "meta/subject_id"
SLICE_ID = "meta/slice_id"
SLICE_LOCATION = "meta/slice_location"
HAS_SLICE_LOCATION = "meta/has_slice_location"
# Where the sectors sit (DenseSlice.orientation_*), when the data say.
ORIENTATION_SECTOR0 = "orientation/sector0"
ORIENTATION_OFFSET = "orientation/offset"
ORIENTATION_DIRECTION = "orientation/direction"
HAS_ORIENTATION = "orientation/has_orientation"

_N = constants.NUM_SECTORS

FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    STRAIN: tf.io.FixedLenFeature([], tf.string),
    NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
    FRAME_PERIOD: tf.io.FixedLenFeature(
        [], tf.float32, default_value=constants.DEFAULT_FRAME_PERIOD_MS
    ),
    TOS: tf.io.FixedLenFeature([_N], tf.float32, default_value=[0.0] * _N),
    HAS_TOS: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    LMA: tf.io.FixedLenFeature([_N], tf.int64, default_value=[0] * _N),
    SCAR: tf.io.FixedLenFeature([_N], tf.float32, default_value=[0.0] * _N),
    HAS_SCAR: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    SUBJECT_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    SLICE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    SLICE_LOCATION: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    HAS_SLICE_LOCATION: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    ORIENTATION_SECTOR0: tf.io.FixedLenFeature([], tf.string, default_value=""),
    ORIENTATION_OFFSET: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    ORIENTATION_DIRECTION: tf.io.FixedLenFeature([], tf.string, default_value=""),
    HAS_ORIENTATION: tf.io.FixedLenFeature([], tf.int64, default_value=0),
}

# What a serving client must send in a tf.Example: strain only.
SERVING_FEATURE_SPEC = {k: FEATURE_SPEC[k] for k in (STRAIN, NUM_FRAMES, FRAME_PERIOD)}


def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def slice_to_example(s: DenseSlice) -> tf.train.Example:
    """Encodes a validated slice as a `tf.train.Example`."""
    strain = np.ascontiguousarray(s.strain_matrix, dtype="<f4")
    feats = {
        STRAIN: _bytes([strain.tobytes()]),
        NUM_FRAMES: _ints([strain.shape[1]]),
        FRAME_PERIOD: _floats([s.frame_period_ms]),
        SUBJECT_ID: _bytes([s.subject_id.encode("utf-8")]),
        SLICE_ID: _bytes([s.slice_id.encode("utf-8")]),
    }
    if s.tos_ms is not None:
        feats[TOS] = _floats(np.asarray(s.tos_ms, np.float32).tolist())
        feats[HAS_TOS] = _ints([1])
        feats[LMA] = _ints(lma_labels(s.tos_ms, s.scar_fraction).tolist())
    if s.scar_fraction is not None:
        feats[SCAR] = _floats(np.asarray(s.scar_fraction, np.float32).tolist())
        feats[HAS_SCAR] = _ints([1])
    if s.slice_location is not None:
        feats[SLICE_LOCATION] = _floats([s.slice_location])
        feats[HAS_SLICE_LOCATION] = _ints([1])
    if s.orientation_sector0 is not None:  # validated: all three are set
        feats[ORIENTATION_SECTOR0] = _bytes([s.orientation_sector0.encode("ascii")])
        feats[ORIENTATION_OFFSET] = _floats([s.orientation_offset])
        feats[ORIENTATION_DIRECTION] = _bytes([s.orientation_direction.encode("ascii")])
        feats[HAS_ORIENTATION] = _ints([1])
    return tf.train.Example(features=tf.train.Features(feature=feats))


def decode_strain(raw: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
    """Raw bytes -> (126, num_frames) float32 strain, for one example."""
    flat = tf.io.decode_raw(raw, tf.float32, little_endian=True)
    return tf.reshape(flat, [_N, tf.cast(num_frames, tf.int32)])


# The parser enforces the validator's ranges (slices.py) on every record,
# more loosely where float32 rounding could differ (TOS vs the sequence
# length): a tampered or corrupt record fails with InvalidArgumentError
# instead of reaching a model as inf, NaN or a shape that allocates gigabytes.
_PARSE_MAX_ABS_STRAIN = slices.MAX_ABS_STRAIN
_PARSE_PERIOD_RANGE_MS = slices.FRAME_PERIOD_RANGE_MS
_PARSE_MAX_ABS_LOCATION_MM = slices.MAX_ABS_SLICE_LOCATION_MM
_SECTOR0_VALUES = tuple(orientation_lib.LANDMARK_DEG)
_DIRECTION_VALUES = orientation_lib.DIRECTIONS


def _in_range(x: tf.Tensor, low: float, high: float, message: str) -> tf.Operation:
    """An assert that every value of `x` lies in [low, high] (NaN fails it)."""
    ok = tf.reduce_all(tf.logical_and(x >= low, x <= high))
    return tf.debugging.Assert(ok, [message], name="check_record")


def _orientation_ok(p: dict[str, tf.Tensor]) -> tf.Operation:
    """An assert: no orientation, or a known landmark and direction."""

    def one_of(x: tf.Tensor, allowed: tuple[str, ...]) -> tf.Tensor:
        return tf.reduce_any(tf.equal(x, tf.constant(allowed)))

    known = tf.logical_and(
        one_of(p[ORIENTATION_SECTOR0], _SECTOR0_VALUES),
        one_of(p[ORIENTATION_DIRECTION], _DIRECTION_VALUES),
    )
    ok = tf.logical_or(tf.equal(p[HAS_ORIENTATION], 0), known)
    return tf.debugging.Assert(
        ok, ["orientation/sector0 or orientation/direction unknown"]
    )


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialized example into a dict of dense tensors.

    The returned dict has `strain` (126, F) float32 besides every key of
    `FEATURE_SPEC` (strain bytes removed). Every value is checked against
    its range first (F in 16..128, the strain's byte length, finite values
    within the data contract's ranges).

    Raises:
      tf.errors.InvalidArgumentError: malformed or out-of-range record.
    """
    try:
        p = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    except UnicodeDecodeError:  # eager: TensorFlow's message quotes the bytes
        raise tf.errors.InvalidArgumentError(
            None, None, "the record is not a serialized tf.train.Example"
        ) from None
    frames = p[NUM_FRAMES]
    raw = p.pop(STRAIN)
    shape_ok = [
        _in_range(
            frames,
            constants.MIN_FRAMES,
            constants.MAX_FRAMES,
            f"strain/num_frames outside {constants.MIN_FRAMES}..{constants.MAX_FRAMES}",
        )
    ]
    with tf.control_dependencies(shape_ok):
        expected = tf.cast(4 * _N, tf.int64) * frames
        size_ok = tf.debugging.Assert(
            tf.equal(tf.cast(tf.strings.length(raw), tf.int64), expected),
            ["strain/matrix is not 126 x num_frames float32 values"],
        )
    with tf.control_dependencies([size_ok]):
        p["strain"] = decode_strain(raw, frames)
    period = p[FRAME_PERIOD]
    duration = tf.cast(frames, tf.float32) * period
    checks = [
        _in_range(
            p["strain"],
            -_PARSE_MAX_ABS_STRAIN,
            _PARSE_MAX_ABS_STRAIN,
            "strain/matrix not finite or |Ecc| > 1",
        ),
        _in_range(period, *_PARSE_PERIOD_RANGE_MS, "strain/frame_period_ms"),
        _in_range(p[TOS] - duration, -np.inf, 1.0, "label/tos_ms beyond the sequence"),
        _in_range(p[TOS], 0.0, np.inf, "label/tos_ms negative or NaN"),
        _in_range(p[LMA], 0, 1, "label/lma not 0 or 1"),
        _in_range(
            tf.stack(
                [p[HAS_TOS], p[HAS_SCAR], p[HAS_SLICE_LOCATION], p[HAS_ORIENTATION]]
            ),
            0,
            1,
            "a has_* flag not 0 or 1",
        ),
        _in_range(p[SCAR], 0.0, 1.0, "scar/fraction outside [0, 1]"),
        _in_range(
            p[SLICE_LOCATION],
            -_PARSE_MAX_ABS_LOCATION_MM,
            _PARSE_MAX_ABS_LOCATION_MM,
            "meta/slice_location",
        ),
        _in_range(
            p[ORIENTATION_OFFSET], 0.0, float(_N), "orientation/offset outside 0..126"
        ),
        _orientation_ok(p),
    ]
    with tf.control_dependencies(checks):
        return {k: tf.identity(v) for k, v in p.items()}


def example_to_slice(parsed: dict[str, np.ndarray]) -> DenseSlice:
    """Inverse of `slice_to_example` from a parsed dict of numpy values."""

    def text(v) -> str:
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)

    return DenseSlice(
        subject_id=text(parsed[SUBJECT_ID]),
        slice_id=text(parsed[SLICE_ID]),
        strain_matrix=np.asarray(parsed["strain"]),
        frame_period_ms=float(parsed[FRAME_PERIOD]),
        tos_ms=np.asarray(parsed[TOS]) if parsed[HAS_TOS] else None,
        scar_fraction=np.asarray(parsed[SCAR]) if parsed[HAS_SCAR] else None,
        slice_location=(
            float(parsed[SLICE_LOCATION]) if parsed[HAS_SLICE_LOCATION] else None
        ),
        **_orientation(parsed, text),
    )


def _orientation(parsed: dict[str, np.ndarray], text) -> dict[str, object]:
    """The slice's orientation fields from a parsed dict; None without one."""
    if not parsed.get(HAS_ORIENTATION, 0):  # records older than the features
        return slices.orientation_fields(None)
    return {
        "orientation_sector0": text(parsed[ORIENTATION_SECTOR0]),
        "orientation_offset": float(parsed[ORIENTATION_OFFSET]),
        "orientation_direction": text(parsed[ORIENTATION_DIRECTION]),
    }
