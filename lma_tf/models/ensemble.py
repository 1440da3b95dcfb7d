"""Several trained networks served as one: their outputs averaged.

Each member runs with its own test-time views (`test_time.wrap`); the TOS
outputs (ms) are averaged, and so are the LMA probabilities, as
`lma-tf crossval --members` scores an ensemble. The averaged probability is
returned as log-probabilities under the `lma` key, so every consumer that
takes a softmax of the LMA output (serving, evaluation) gets the mean
probability back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
import tensorflow as tf

from lma_tf.models import registry, test_time

# The data fields the shared serving preprocessing depends on.
SERVING_DATA_FIELDS = (
    "num_frames",
    "num_sectors",
    "drop_last_frames",
    "frame_period_ms",
    "sector_padding",
)


def check_compatible(configs: Sequence[ml_collections.ConfigDict]) -> None:
    """Raises ValueError unless the members share kind and preprocessing."""
    first = configs[0]
    for i, c in enumerate(configs[1:], start=1):
        if c.model.kind != first.model.kind:
            raise ValueError(
                f"member {i} is a {c.model.kind!r} network, member 0 a "
                f"{first.model.kind!r}: members must be of one kind"
            )
        for field in SERVING_DATA_FIELDS:
            default = "circular" if field == "sector_padding" else None
            a, b = first.data.get(field, default), c.data.get(field, default)
            if a != b:
                raise ValueError(
                    f"member {i} has data.{field}={b!r}, member 0 {a!r}: members "
                    "must see the same preprocessed input"
                )


class Ensemble:
    """Called like one model: (B, sectors, T) padded strain -> averaged outputs."""

    def __init__(self, models: Sequence, configs: Sequence[ml_collections.ConfigDict]):
        if len(models) != len(configs) or not models:
            raise ValueError("an ensemble needs one config per model, and a model")
        check_compatible(configs)
        self.models = list(models)
        self.configs = list(configs)
        self._nets = [test_time.wrap(m, c) for m, c in zip(models, configs)]

    def __call__(self, x, training: bool = False) -> dict:
        outs = [net(x, training=training) for net in self._nets]
        k = float(len(outs))
        merged = {registry.TOS: tf.add_n([o[registry.TOS] for o in outs]) / k}
        if registry.LMA in outs[0]:
            prob = tf.add_n([tf.nn.softmax(o[registry.LMA], axis=-1) for o in outs]) / k
            merged[registry.LMA] = tf.math.log(tf.maximum(prob, 1e-12))
        return merged
