"""The Keras networks: the multitask model of Xing et al. and its baselines.

Input `strain` is (batch, sectors, frames) raw Ecc; the first layer
normalises it with the train-split statistics stored in the config, so the
same graph serves raw strain. Sectors are never pooled: every block keeps the
ring resolution (circularly padded), time is pooled, and the heads read each
sector's whole time course plus a global summary of the slice.

Outputs (a dict, by name):
  tos: (batch, sectors) TOS in ms through leaky_relu(x - 17) + 17: a leaky
    floor (values may dip a fraction of a ms below 17; serving floors it).
  lma: (batch, sectors, 2) logits, class 1 = scar-free late activation.
"""

from __future__ import annotations

import keras
import ml_collections
from keras import layers, ops

from lma_tf import constants
from lma_tf.models import registry

TOS = registry.TOS
LMA = registry.LMA
# Cross-replica BatchNorm is a TensorFlow-backend feature of Keras.
_SYNC_BN = keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="lma_tf")
class CircularPad2D(layers.Layer):
    """Pads the sector axis (1) circularly and the frame axis (2) with zeros."""

    def __init__(self, sector_pad: int, frame_pad: int, **kwargs):
        super().__init__(**kwargs)
        self.sector_pad = sector_pad
        self.frame_pad = frame_pad

    def call(self, x):
        p = self.sector_pad
        if p:
            x = ops.concatenate([x[:, -p:], x, x[:, :p]], axis=1)
        f = self.frame_pad
        if f:
            x = ops.pad(x, [[0, 0], [0, 0], [f, f], [0, 0]])
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "sector_pad": self.sector_pad,
            "frame_pad": self.frame_pad,
        }


@keras.saving.register_keras_serializable(package="lma_tf")
class ShiftedLeakyReLU(layers.Layer):
    """leaky_relu(x - floor) + floor: TOS never predicted below 17 ms."""

    def __init__(
        self, floor: float = constants.TOS_FLOOR_MS, slope: float = 0.01, **kw
    ):
        super().__init__(**kw)
        self.floor = floor
        self.slope = slope

    def call(self, x):
        return ops.leaky_relu(x - self.floor, negative_slope=self.slope) + self.floor

    def get_config(self):
        return {**super().get_config(), "floor": self.floor, "slope": self.slope}


def _conv_block(
    x, channels: int, kernel: int, pool_frames: bool, circular: bool, name: str
):
    """conv -> (max-pool over frames) -> BatchNorm -> ReLU, the authors' block order."""
    if circular:
        x = CircularPad2D(kernel // 2, kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = layers.Conv2D(
        channels, kernel, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    if pool_frames:
        x = layers.MaxPooling2D((1, 2), name=f"{name}_pool")(x)
    # Synchronised: under tf.distribute every replica normalises with, and
    # stores, the statistics of the global batch (identical moving stats).
    x = layers.BatchNormalization(synchronized=_SYNC_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _normalise(strain, config: ml_collections.ConfigDict):
    mean = float(config.model.strain_mean)
    std = float(config.model.strain_std) or 1.0
    x = layers.Rescaling(1.0 / std, offset=-mean / std, name="normalise")(strain)
    return layers.Reshape(
        (config.data.num_sectors, config.data.num_frames, 1), name="add_channel"
    )(x)


def _head(trunk, context, config: ml_collections.ConfigDict, name: str):
    """Conv blocks + a per-sector MLP over the sector's time course and context."""
    m = config.model
    x = trunk
    for i, c in enumerate(m.head_channels):
        x = _conv_block(
            x, c, m.kernel_size, False, m.circular_padding, f"{name}_block{i}"
        )
    s = config.data.num_sectors
    x = layers.Reshape((s, x.shape[2] * x.shape[3]), name=f"{name}_flatten")(x)
    x = layers.Concatenate(name=f"{name}_context")([x, context])
    for i, units in enumerate(m.head_units):
        x = layers.Dense(units, activation="relu", name=f"{name}_dense{i}")(x)
        if m.dropout:
            x = layers.Dropout(m.dropout, name=f"{name}_dropout{i}")(x)
    return x


def _tos_output(x, config: ml_collections.ConfigDict):
    bias = float(config.model.tos_bias_init_ms)
    if bias < 0:
        bias = float(config.model.tos_mean_ms) or 40.0
    # The bias starts at the mean TOS: from ~0 the shifted leaky ReLU sits in
    # its 0.01-slope region and the head barely learns (docs/model.md).
    x = layers.Dense(
        1, bias_initializer=keras.initializers.Constant(bias), name="tos_linear"
    )(x)
    x = layers.Reshape((config.data.num_sectors,), name="tos_squeeze")(x)
    return ShiftedLeakyReLU(name=TOS, dtype="float32")(x)


def _lma_output(x):
    x = layers.Dense(2, name="lma_linear")(x)
    return layers.Activation("linear", dtype="float32", name=LMA)(x)


def build_cnn(config: ml_collections.ConfigDict) -> keras.Model:
    """The shared trunk with the heads the experiment asks for."""
    m, d = config.model, config.data
    strain = keras.Input((d.num_sectors, d.num_frames), name="strain")
    x = _normalise(strain, config)
    for i, c in enumerate(m.trunk_channels):
        x = _conv_block(
            x, c, m.kernel_size, i < m.frame_pools, m.circular_padding, f"trunk{i}"
        )
    # Slice-level summary given to every sector: scar vs. late often hinges
    # on what the rest of the ring is doing.
    g = layers.GlobalAveragePooling2D(name="context_pool")(x)
    g = layers.Dense(16, activation="relu", name="context_dense")(g)
    context = layers.RepeatVector(d.num_sectors, name="context_repeat")(g)
    kind = registry.get(m.kind)
    outputs = {}
    if kind.has_tos:
        outputs[TOS] = _tos_output(_head(x, context, config, "tos_head"), config)
    if kind.has_lma:
        outputs[LMA] = _lma_output(_head(x, context, config, "lma_head"))
    return keras.Model(strain, outputs, name=m.kind)


def build_isbi2021(config: ml_collections.ConfigDict) -> keras.Model:
    """The ISBI 2021 regression network: 3 convs of 8 channels, flatten, dense."""
    d = config.data
    strain = keras.Input((d.num_sectors, d.num_frames), name="strain")
    x = _normalise(strain, config)
    for i in range(3):
        x = layers.Conv2D(8, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    bias = float(config.model.tos_mean_ms) or 40.0
    x = layers.Dense(
        d.num_sectors,
        bias_initializer=keras.initializers.Constant(bias),
        name="tos_linear",
    )(x)
    tos = ShiftedLeakyReLU(name=TOS, dtype="float32")(x)
    return keras.Model(strain, {TOS: tos}, name="isbi2021")


def build_model(config: ml_collections.ConfigDict) -> keras.Model:
    """The network of `config.model.kind`, built by its registry entry."""
    return registry.get(config.model.kind).build(config)
