"""Test-time views: the network's outputs averaged over rotations and mirrors.

A slice's ring can be analysed from any starting sector and in either
direction; the network is trained on random rotations (`data.augment_shift`;
mirrors too with `data.augment_mirror`) but is not exactly invariant to
them, because its trunk pools the ring. Averaging its outputs over a few
rotated and mirrored copies of the input, each mapped back to the original
sectors, removes that dependence and steadies the late-region edges
(docs/model.md gives the figures).

  model.test_time_shifts  rotations by 0 .. k-1 sectors (1: none); with the
                          ring pooled 2^p-fold, 2^p covers every pooling phase
  model.test_time_mirror  also the mirrored ring (each rotation, mirrored)

TOS is averaged in ms, the LMA head's logits as logits. Training never sees
the wrapper: it is applied when a trained model is loaded for inference,
evaluation or export (`wrap`), so checkpoints are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
import tensorflow as tf

from lma_tf import constants
from lma_tf.data import sector_padding

N = constants.NUM_SECTORS


def views(config: ml_collections.ConfigDict) -> list[tuple[int, bool]]:
    """The (rotation, mirrored) views of `config`; [(0, False)] means none.

    Configs saved before these keys existed get no extra views.
    """
    m = config.model
    shifts = int(m.get("test_time_shifts", 1))
    if shifts < 1:
        raise ValueError(f"model.test_time_shifts={shifts} must be >= 1")
    mirrors = (False, True) if m.get("test_time_mirror", False) else (False,)
    return [(k, flip) for flip in mirrors for k in range(shifts)]


def _forward(x: tf.Tensor, shift: int, flip: bool) -> tf.Tensor:
    """The view of the 126 real sectors (axis 1): mirror, then rotate."""
    if flip:
        x = tf.reverse(x, axis=[1])
    return tf.roll(x, shift, axis=1) if shift else x


def _backward(y: tf.Tensor, shift: int, flip: bool) -> tf.Tensor:
    """Maps a view's per-sector output back to the original sectors."""
    if shift:
        y = tf.roll(y, -shift, axis=1)
    return tf.reverse(y, axis=[1]) if flip else y


class ViewAveraged:
    """Calls a trained model on every view of its input and averages the outputs.

    Called like the model (`(B, data.num_sectors, T)` padded strain, returns
    the same dict of outputs on `data.num_sectors` sectors). `model` is the
    bare network, e.g. for Grad-CAM.
    """

    def __init__(self, model: Callable, config: ml_collections.ConfigDict):
        self.model = model
        self.data = config.data
        self.views = views(config)

    def __call__(self, x, training: bool = False) -> dict:
        x = tf.convert_to_tensor(x, tf.float32)
        ring = x[:, :N]
        sums: dict[str, tf.Tensor] = {}
        for shift, flip in self.views:
            view = sector_padding.pad(_forward(ring, shift, flip), self.data, axis=1)
            out = self.model(view, training=training)
            for key, value in out.items():
                back = _backward(value[:, :N], shift, flip)
                sums[key] = back if key not in sums else sums[key] + back
        k = float(len(self.views))
        return {
            key: sector_padding.pad(value / k, self.data, axis=1)
            for key, value in sums.items()
        }


def wrap(model: Callable | None, config: ml_collections.ConfigDict) -> Callable | None:
    """`model` averaged over the views of `config`, or `model` itself if none."""
    if model is None or len(views(config)) == 1:
        return model
    return ViewAveraged(model, config)
