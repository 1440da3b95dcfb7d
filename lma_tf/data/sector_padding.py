"""Padding the 126-sector ring to the model's `data.num_sectors`, as configured.

`data.sector_padding` picks how the extra sectors are filled:
  circular  wrap around (sector 0, 1, ... after sector 125): the ring stays
            continuous for the convolutions (the default).
  edge      copies of the last sector, the authors' `copy_boundary` padding
            (used by the xing2023 experiments), applied to strain and labels
            alike, without the authors' 2-sector offset between the two.
The padded sectors are masked out of every loss and metric either way.
Training (`pipeline.to_model_inputs`) and serving must pad the same way.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from lma_tf import constants
from lma_tf.data import preprocess

MODES = ("circular", "edge")


def pad_edge(x: tf.Tensor, num_sectors: int, axis: int = -1) -> tf.Tensor:
    """Pads the ring to `num_sectors` along `axis` with copies of its last sector."""
    extra = num_sectors - constants.NUM_SECTORS
    if extra < 0:
        raise ValueError(f"num_sectors={num_sectors} < {constants.NUM_SECTORS}")
    if extra == 0:
        return x
    last = tf.fill([extra], constants.NUM_SECTORS - 1)
    return tf.concat([x, tf.gather(x, last, axis=axis)], axis=axis)


def pad(x: tf.Tensor, data: ml_collections.ConfigDict, axis: int = -1) -> tf.Tensor:
    """Pads the 126 real sectors along `axis` to `data.num_sectors`, per config.

    Raises:
      ValueError: an unknown `data.sector_padding`.
    """
    mode = data.get("sector_padding", "circular")
    if mode == "circular":
        return preprocess.pad_sectors(x, data.num_sectors, axis=axis)
    if mode == "edge":
        return pad_edge(x, data.num_sectors, axis=axis)
    raise ValueError(f"data.sector_padding={mode!r} not in {MODES}")
