"""The record schema: the single feature spec for writer, parser and serving.

One `tf.train.Example` per slice. The strain matrix is stored as raw
little-endian float32 bytes (row-major, 126 x num_frames): decoding is a
memcpy, an order of magnitude faster to parse than a 8,000-long float_list.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lma_tf import constants
from lma_tf.data.slices import DenseSlice
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
    return tf.train.Example(features=tf.train.Features(feature=feats))


def decode_strain(raw: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
    """Raw bytes -> (126, num_frames) float32 strain, for one example."""
    flat = tf.io.decode_raw(raw, tf.float32, little_endian=True)
    return tf.reshape(flat, [_N, tf.cast(num_frames, tf.int32)])


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialized example into a dict of dense tensors.

    The returned dict has `strain` (126, F) float32 besides every key of
    `FEATURE_SPEC` (strain bytes removed).
    """
    parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    parsed["strain"] = decode_strain(parsed.pop(STRAIN), parsed[NUM_FRAMES])
    return parsed


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
    )
