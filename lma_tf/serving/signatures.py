"""The TensorFlow side of the serving contract: signatures, in-graph checks, outputs.

Export builds both SavedModel signatures (and the ONNX graph) from these
functions; `contract` holds the names, ranges and messages they share with
the numpy checks of the TensorFlow-free path. Both signatures fit the strain
to the model with `preprocess.fit_to_model`, the very op the training
pipeline maps over the records, after in-graph checks that refuse what
`contract.check_inputs_np` refuses, with the same messages and in the same
order (frame count, one period per slice, period range, finite strain,
strain range).

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
from lma_tf.serving import contract


def strain_signature() -> list[tf.TensorSpec]:
    """Input specs of `serving_default`: raw strain and per-slice frame period."""
    return [
        tf.TensorSpec(
            [None, constants.NUM_SECTORS, None], tf.float32, contract.STRAIN_INPUT
        ),
        tf.TensorSpec([None], tf.float32, contract.PERIOD_INPUT),
    ]


def examples_signature() -> list[tf.TensorSpec]:
    """Input spec of `serve_examples`: a batch of serialized tf.Examples."""
    return [tf.TensorSpec([None], tf.string, contract.EXAMPLES_INPUT)]


# Input checks: a request outside the data contract fails with a message
# naming the rule instead of a shape error deep in the network. Each group
# runs after the previous one, so an input breaking two rules always gets
# the message of the first, as from `contract.check_inputs_np`.


def check_frames(num_frames: tf.Tensor) -> list[tf.Operation]:
    """Asserts that every frame count is within [MIN_FRAMES, MAX_FRAMES]."""
    return [
        tf.debugging.assert_greater_equal(
            num_frames,
            tf.cast(constants.MIN_FRAMES, num_frames.dtype),
            message=contract.TOO_FEW_FRAMES,
        ),
        tf.debugging.assert_less_equal(
            num_frames,
            tf.cast(constants.MAX_FRAMES, num_frames.dtype),
            message=contract.TOO_MANY_FRAMES,
        ),
    ]


def check_not_empty(batch_size: tf.Tensor) -> tf.Operation:
    """Asserts that the request holds at least one slice (an empty batch would
    fail deep in the network instead)."""
    return tf.debugging.assert_greater(
        batch_size, tf.cast(0, batch_size.dtype), message=contract.EMPTY_BATCH
    )


def check_periods(frame_period_ms: tf.Tensor) -> list[tf.Operation]:
    """Asserts that every period is finite and within the acquisition range."""
    lo, hi = contract.PERIOD_RANGE_MS
    p = tf.convert_to_tensor(frame_period_ms, tf.float32)
    # NaN fails every comparison, so this is False for NaN and inf too.
    ok = tf.reduce_all((p >= lo) & (p <= hi))
    return [tf.debugging.assert_equal(ok, True, message=contract.BAD_PERIOD)]


def check_strain(strain: tf.Tensor) -> tf.Tensor:
    """`strain` after asserting that it is finite, then within [-1, 1]."""
    strain = tf.debugging.assert_all_finite(strain, contract.BAD_STRAIN)
    within = tf.reduce_all(tf.abs(strain) <= contract.MAX_ABS_STRAIN)
    check = tf.debugging.assert_equal(within, True, message=contract.STRAIN_RANGE)
    with tf.control_dependencies([check]):
        return tf.identity(strain)


def fit_strain_batch(
    strain: tf.Tensor,
    frame_period_ms: tf.Tensor,
    data: ml_collections.ConfigDict,
) -> tf.Tensor:
    """`serving_default`'s input side: (B, 126, F) + (B,) -> checked (B, 126, T)."""
    strain = tf.convert_to_tensor(strain, tf.float32)
    period = tf.convert_to_tensor(frame_period_ms, tf.float32)
    with tf.control_dependencies(check_frames(tf.shape(strain)[-1])):
        nonempty = check_not_empty(tf.shape(strain)[0])
    with tf.control_dependencies([nonempty]):
        count = tf.debugging.assert_equal(
            tf.shape(period)[0], tf.shape(strain)[0], message=contract.PERIOD_COUNT
        )
    with tf.control_dependencies([count]):
        periods_ok = check_periods(period)
    with tf.control_dependencies(periods_ok):
        strain = check_strain(strain)
        period = tf.identity(period)
    return preprocess.fit_batch_to_model(strain, period, data)


def fit_examples(
    serialized: tf.Tensor, data: ml_collections.ConfigDict
) -> tuple[tf.Tensor, tf.Tensor]:
    """`serve_examples`' input side: (B,) tf.Examples -> ((B, 126, T), (B,) F).

    Parsed with the training feature spec and decoded like the training
    parser; each example may have its own frame count and period.
    """
    with tf.control_dependencies([check_not_empty(tf.shape(serialized)[0])]):
        serialized = tf.identity(serialized)
    parsed = tf.io.parse_example(serialized, features.SERVING_FEATURE_SPEC)
    num_frames = parsed[features.NUM_FRAMES]
    periods = parsed[features.FRAME_PERIOD]
    with tf.control_dependencies(check_frames(num_frames)):
        periods_ok = check_periods(periods)
    with tf.control_dependencies(periods_ok):
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
    Non-finite outputs (strain far outside its range overflows the network)
    fail with `contract.BAD_OUTPUT`, as `contract.check_outputs_np` does.

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
    served = {
        contract.TOS_MS: tos,
        contract.LMA_PROBABILITY: probability,
        contract.COMBINED_TOS_MS: combined,
    }
    return {
        k: tf.debugging.assert_all_finite(v, f"{contract.BAD_OUTPUT} ({k})")
        for k, v in served.items()
    }
