"""The serving contract: what an exported model takes and what it returns.

Export writes it into the SavedModel (and the ONNX file) and predict calls
it, so both import every name from here; `docs/serving.md` documents it for
clients. Two signatures, each with all preprocessing in the graph:

  serving_default(strain: float32 (batch, 126, F), frame_period_ms: float32
      (batch,)). F may be any frame count in [16, 128]. `frame_period_ms` is a
      required input (a signature has no optional inputs): send 17.0, the
      DENSE convention, when in doubt. Other periods are resampled to the
      training grid, example by example.
  serve_examples(examples: string (batch,)): serialized `tf.train.Example`s
      holding at least `strain/matrix`, `strain/num_frames` and optionally
      `strain/frame_period_ms`, parsed with `features.SERVING_FEATURE_SPEC`
      (the training feature spec; examples of one batch may differ in F).

Both fit the strain to the model with `preprocess.fit_to_model`, the very op
the training pipeline maps over the records, after in-graph checks of the
input (frames in [16, 128], positive finite periods, finite strain), and
both return, each (batch, 126) float32:

  tos_ms: regressed time to onset of shortening, ms, floored at 17 ms
      (`rules.floor_tos_tf`: the network's leaky head may dip just below).
  lma_probability: P(scar-free late activation), `rules.lma_probability_tf`
      of the LMA logits; for networks without an LMA head, 0/1 from the TOS
      (`rules.lma_from_tos_tf`, the label rule of the records).
  combined_tos_ms: the paper's combined output, `rules.combine_tos_tf` of
      the served tos_ms and lma_probability.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from lma_tf import constants, rules
from lma_tf.data import features, preprocess
from lma_tf.models import registry

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
STRAIN_INPUT = "strain"
PERIOD_INPUT = "frame_period_ms"
EXAMPLES_INPUT = "examples"
# The output names are the prediction CSV's columns (`prediction_csv`).
TOS_MS = "tos_ms"
LMA_PROBABILITY = "lma_probability"
COMBINED_TOS_MS = "combined_tos_ms"
OUTPUT_KEYS = (TOS_MS, LMA_PROBABILITY, COMBINED_TOS_MS)
SIGNATURE_INPUTS = {
    SERVING_SIGNATURE: (STRAIN_INPUT, PERIOD_INPUT),
    EXAMPLES_SIGNATURE: (EXAMPLES_INPUT,),
}
FRAMES_RANGE = (constants.MIN_FRAMES, constants.MAX_FRAMES)


def strain_signature() -> list[tf.TensorSpec]:
    """Input specs of `serving_default`: raw strain and per-slice frame period."""
    return [
        tf.TensorSpec([None, constants.NUM_SECTORS, None], tf.float32, STRAIN_INPUT),
        tf.TensorSpec([None], tf.float32, PERIOD_INPUT),
    ]


def examples_signature() -> list[tf.TensorSpec]:
    """Input spec of `serve_examples`: a batch of serialized tf.Examples."""
    return [tf.TensorSpec([None], tf.string, EXAMPLES_INPUT)]


# Input checks: a request outside the data contract fails with a message
# naming the rule instead of a shape error deep in the network.


def check_frames(num_frames: tf.Tensor) -> list[tf.Operation]:
    """Asserts that every frame count is within [MIN_FRAMES, MAX_FRAMES]."""
    return [
        tf.debugging.assert_greater_equal(
            num_frames,
            tf.cast(constants.MIN_FRAMES, num_frames.dtype),
            message=f"strain needs at least {constants.MIN_FRAMES} frames",
        ),
        tf.debugging.assert_less_equal(
            num_frames,
            tf.cast(constants.MAX_FRAMES, num_frames.dtype),
            message=f"strain may have at most {constants.MAX_FRAMES} frames",
        ),
    ]


def check_periods(frame_period_ms: tf.Tensor) -> list[tf.Operation]:
    """Asserts that every frame period is a positive finite number."""
    return [
        tf.debugging.assert_positive(
            frame_period_ms, message="frame_period_ms must be positive"
        ),
        tf.debugging.assert_all_finite(
            frame_period_ms, message="frame_period_ms must be finite"
        ),
    ]


def check_strain(strain: tf.Tensor) -> tf.Tensor:
    """`strain` after asserting that it holds no NaN or inf."""
    return tf.debugging.assert_all_finite(strain, "strain has NaN or inf")


def fit_strain_batch(
    strain: tf.Tensor,
    frame_period_ms: tf.Tensor,
    data: ml_collections.ConfigDict,
) -> tf.Tensor:
    """`serving_default`'s input side: (B, 126, F) + (B,) -> checked (B, 126, T)."""
    strain = tf.convert_to_tensor(strain, tf.float32)
    period = tf.convert_to_tensor(frame_period_ms, tf.float32)
    checks = check_frames(tf.shape(strain)[-1]) + check_periods(period)
    checks.append(
        tf.debugging.assert_equal(
            tf.shape(period)[0],
            tf.shape(strain)[0],
            message="frame_period_ms needs one value per strain matrix",
        )
    )
    with tf.control_dependencies(checks):
        strain = check_strain(strain)
    return preprocess.fit_batch_to_model(strain, period, data)


def fit_examples(
    serialized: tf.Tensor, data: ml_collections.ConfigDict
) -> tuple[tf.Tensor, tf.Tensor]:
    """`serve_examples`' input side: (B,) tf.Examples -> ((B, 126, T), (B,) F).

    Parsed with the training feature spec and decoded like the training
    parser; each example may have its own frame count and period.
    """
    parsed = tf.io.parse_example(serialized, features.SERVING_FEATURE_SPEC)
    num_frames = parsed[features.NUM_FRAMES]
    periods = parsed[features.FRAME_PERIOD]
    with tf.control_dependencies(check_frames(num_frames) + check_periods(periods)):
        raw = tf.identity(parsed[features.STRAIN])
    spec = tf.TensorSpec(
        [constants.NUM_SECTORS, data.num_frames], tf.float32, name="strain"
    )

    def one(args: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tf.Tensor:
        strain = check_strain(features.decode_strain(args[0], args[1]))
        return preprocess.fit_to_model(strain, args[2], data)

    strain = tf.map_fn(one, (raw, num_frames, periods), fn_output_signature=spec)
    return strain, num_frames


def outputs_from_model(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Keras outputs on padded sectors -> the three (B, 126) serving outputs.

    Every decision is a `lma_tf.rules` function, the ones evaluation uses.

    Raises:
      ValueError: the outputs have no TOS head (export refuses such kinds).
    """
    if registry.TOS not in outputs:
        raise ValueError("the model has no TOS head: nothing to serve as tos_ms")
    raw_tos = preprocess.unpad_sectors(tf.cast(outputs[registry.TOS], tf.float32), 1)
    tos = rules.floor_tos_tf(raw_tos)
    if registry.LMA in outputs:
        logits = preprocess.unpad_sectors(outputs[registry.LMA], 1)
        probability = rules.lma_probability_tf(logits)
    else:
        probability = rules.lma_from_tos_tf(tos)
    combined = rules.combine_tos_tf(tos, probability)
    return {TOS_MS: tos, LMA_PROBABILITY: probability, COMBINED_TOS_MS: combined}
