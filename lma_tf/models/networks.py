"""The Keras networks: the multitask model of Xing et al. and its baselines.

Input `strain` is (batch, sectors, frames) raw Ecc; the first layer
normalises it with the train-split statistics stored in the config, so the
same graph serves raw strain. Time is pooled; the ring is pooled twice in
the trunk (128 -> 32, circularly padded), widened by dilated ring blocks,
and restored to every sector in each head, which reads that sector's
features over time, its own strain and a global summary of the slice.

Network-shape options (docs/model.md, "The network", "Leaner variants"):
  model.separable     depthwise-separable convolutions (depthwise 3x3, then
                      a 1x1 pointwise) in every block after the first.
  model.sector_pools  the first k trunk blocks also halve the sector axis; each
                      head restores the ring (`SectorUpsample`, interpolating
                      around the circle) and reads the sector's own normalised
                      strain beside it, so every one of the 128 sectors gets
                      its own prediction and the padded ones stay masked by
                      the loss weights as before.
  model.ring_dilations  residual 3x1 convolutions along the ring after the
                      trunk, one per listed dilation: a wider sector view.
  model.tos_output    "dense": one linear unit per sector on the head's
                      features; "onset": a full-resolution per-frame onset
                      map whose expected time is the TOS (`OnsetExpectation`).

Outputs (a dict, by name):
  tos: (batch, sectors) TOS in ms. "dense": through leaky_relu(x - 17) + 17,
    a leaky floor (values may dip a fraction of a ms below 17; serving floors
    it); "onset": an expected time, never below 17 ms.
  lma: (batch, sectors, 2) logits, class 1 = scar-free late activation.
"""

from __future__ import annotations

import keras
import ml_collections
import numpy as np
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
class SectorUpsample(layers.Layer):
    """Doubles the sector axis (1) `times` times by linear interpolation.

    Each coarse sector i becomes 2i and 2i + 1 at 3/4 itself and 1/4 its
    neighbour on that side (the half-pixel rule of bilinear resizing); the
    neighbour of the first and last sector wraps around the ring when
    `circular`, else is the sector itself (edge).
    """

    def __init__(self, times: int, circular: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.times = times
        self.circular = circular

    def call(self, x):
        for _ in range(self.times):
            if self.circular:
                before = ops.concatenate([x[:, -1:], x[:, :-1]], axis=1)
                after = ops.concatenate([x[:, 1:], x[:, :1]], axis=1)
            else:
                before = ops.concatenate([x[:, :1], x[:, :-1]], axis=1)
                after = ops.concatenate([x[:, 1:], x[:, -1:]], axis=1)
            even = 0.75 * x + 0.25 * before
            odd = 0.75 * x + 0.25 * after
            # (B, S, 2, ...) -> (B, 2S, ...): interleave even and odd.
            both = ops.stack([even, odd], axis=2)
            x = ops.reshape(both, (-1, 2 * x.shape[1], *x.shape[2:]))
        return x

    def compute_output_shape(self, input_shape):
        s = input_shape[1]
        return (
            input_shape[0],
            None if s is None else s * 2**self.times,
            *input_shape[2:],
        )

    def get_config(self):
        return {**super().get_config(), "times": self.times, "circular": self.circular}


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


@keras.saving.register_keras_serializable(package="lma_tf")
class OnsetExpectation(layers.Layer):
    """TOS as the expected onset time over per-frame logits (a soft argmax).

    (B, S, F) logits -> (B, S) ms: softmax over the frames, frame f standing
    for `floor + f * period_ms`, so the TOS is sub-frame precise and never
    below the floor. A learned per-frame bias starts as a geometric prior
    whose mean is `init_mean_ms`, so training starts near the mean TOS.
    """

    def __init__(
        self,
        period_ms: float,
        init_mean_ms: float = 40.0,
        floor: float = constants.TOS_FLOOR_MS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.period_ms = float(period_ms)
        self.init_mean_ms = float(init_mean_ms)
        self.floor = float(floor)

    def build(self, input_shape):
        frames = int(input_shape[-1])
        mean_frames = max(self.init_mean_ms - self.floor, 1.0) / self.period_ms
        ratio = mean_frames / (1.0 + mean_frames)  # geometric: mean r / (1 - r)
        prior = np.arange(frames, dtype=np.float32) * np.log(ratio)
        self.frame_bias = self.add_weight(
            name="frame_bias",
            shape=(frames,),
            initializer=keras.initializers.Constant(prior),
        )
        self.grid = (
            self.floor + self.period_ms * np.arange(frames, dtype=np.float32)
        ).astype(np.float32)

    def call(self, logits):
        logits = ops.cast(logits, "float32") + self.frame_bias
        return ops.sum(ops.softmax(logits, axis=-1) * self.grid, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        return {
            **super().get_config(),
            "period_ms": self.period_ms,
            "init_mean_ms": self.init_mean_ms,
            "floor": self.floor,
        }


def _conv_block(
    x,
    channels: int,
    kernel: int | tuple[int, int],
    pool_frames: bool,
    circular: bool,
    name: str,
    separable: bool = False,
    pool_sectors: bool = False,
    bn_momentum: float = 0.99,
):
    """conv -> (max-pool) -> BatchNorm -> ReLU, the authors' block order.

    `separable` uses a depthwise-separable convolution (not on a 1-channel
    input, where it saves nothing); `pool_frames` / `pool_sectors` halve the
    frame / sector axis. `kernel`: an int, or (sectors, frames).
    """
    if circular:
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        x = CircularPad2D(k[0] // 2, k[1] // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    if separable and x.shape[-1] > 1:
        x = layers.SeparableConv2D(
            channels, kernel, padding=padding, use_bias=False, name=f"{name}_conv"
        )(x)
    else:
        x = layers.Conv2D(
            channels, kernel, padding=padding, use_bias=False, name=f"{name}_conv"
        )(x)
    if pool_frames or pool_sectors:
        pool = (2 if pool_sectors else 1, 2 if pool_frames else 1)
        x = layers.MaxPooling2D(pool, name=f"{name}_pool")(x)
    # Synchronised: under tf.distribute every replica normalises with, and
    # stores, the statistics of the global batch (identical moving stats).
    x = layers.BatchNormalization(
        synchronized=_SYNC_BN, momentum=bn_momentum, name=f"{name}_bn"
    )(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _ring_block(x, dilation: int, circular: bool, momentum: float, name: str):
    """Residual conv along the ring only (kernel 3x1, dilated): wider sector view.

    A stack with dilations 2, 4, 8, ... lets every position of the (possibly
    pooled) ring see most of it, so a head can tell a late region from a
    tethered scar by what lies around it.
    """
    y = x
    if circular:
        y = CircularPad2D(dilation, 0, name=f"{name}_pad")(y)
    y = layers.Conv2D(
        x.shape[-1],
        (3, 1),
        dilation_rate=(dilation, 1),
        padding="valid" if circular else "same",
        use_bias=False,
        name=f"{name}_conv",
    )(y)
    y = layers.BatchNormalization(
        synchronized=_SYNC_BN, momentum=momentum, name=f"{name}_bn"
    )(y)
    y = layers.ReLU(name=f"{name}_relu")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def _normalise(strain, config: ml_collections.ConfigDict):
    mean = float(config.model.strain_mean)
    std = float(config.model.strain_std) or 1.0
    x = layers.Rescaling(1.0 / std, offset=-mean / std, name="normalise")(strain)
    return layers.Reshape(
        (config.data.num_sectors, config.data.num_frames, 1), name="add_channel"
    )(x)


def _head(trunk, context, config: ml_collections.ConfigDict, name: str, skip=None):
    """Conv blocks + a per-sector MLP over the sector's time course and context.

    With pooled sectors the blocks run on the coarse ring, which is then
    interpolated back to every sector and joined by `skip`, each sector's own
    normalised strain (B, sectors, frames).
    """
    m = config.model
    x = trunk
    for i, c in enumerate(m.head_channels):
        x = _conv_block(
            x,
            c,
            m.kernel_size,
            False,
            m.circular_padding,
            f"{name}_block{i}",
            separable=m.get("separable", False),
            bn_momentum=m.get("bn_momentum", 0.99),
        )
    s = config.data.num_sectors
    pools = int(m.get("sector_pools", 0))
    if pools:
        x = SectorUpsample(pools, m.circular_padding, name=f"{name}_upsample")(x)
    x = layers.Reshape((s, x.shape[2] * x.shape[3]), name=f"{name}_flatten")(x)
    parts = [x, context] if skip is None else [x, skip, context]
    x = layers.Concatenate(name=f"{name}_context")(parts)
    for i, units in enumerate(m.head_units):
        x = layers.Dense(units, activation="relu", name=f"{name}_dense{i}")(x)
        if m.dropout:
            x = layers.Dropout(m.dropout, name=f"{name}_dropout{i}")(x)
    return x


def _tos_start_ms(config: ml_collections.ConfigDict) -> float:
    """Where the TOS output starts: `model.tos_bias_init_ms`, or (< 0) the
    train-split mean TOS (40 ms when unknown)."""
    start = float(config.model.tos_bias_init_ms)
    if start < 0:
        start = float(config.model.tos_mean_ms) or 40.0
    return start


def _tos_output(x, config: ml_collections.ConfigDict):
    bias = _tos_start_ms(config)
    # The bias starts at the mean TOS: from ~0 the shifted leaky ReLU sits in
    # its 0.01-slope region and the head barely learns (docs/model.md).
    x = layers.Dense(
        1, bias_initializer=keras.initializers.Constant(bias), name="tos_linear"
    )(x)
    x = layers.Reshape((config.data.num_sectors,), name="tos_squeeze")(x)
    return ShiftedLeakyReLU(name=TOS, dtype="float32")(x)


def _onset_output(strain_map, head, config: ml_collections.ConfigDict):
    """TOS from a full-resolution onset map (`model.tos_output="onset"`).

    Two convolutions over each sector's normalised strain at every frame
    (3x5 across neighbours and time, then 1x5 along time) find where
    shortening starts wherever it falls in time; the TOS head's per-sector
    features (what the slice around it does) are added to every frame; a 1x1
    convolution gives per-frame logits, and `OnsetExpectation` their expected
    time. Keeps the frame resolution the trunk pools away.
    """
    m, d = config.model, config.data
    ch = int(m.get("onset_channels", 16))
    y = strain_map
    for i, kernel in enumerate(((3, 5), (1, 5))):
        y = _conv_block(
            y,
            ch,
            kernel,
            False,
            m.circular_padding,
            f"onset{i}",
            bn_momentum=m.get("bn_momentum", 0.99),
        )
    c = layers.Dense(ch, name="onset_context")(head)
    c = layers.Reshape((d.num_sectors, 1, ch), name="onset_context_frames")(c)
    y = layers.ReLU(name="onset_join_relu")(layers.Add(name="onset_join")([y, c]))
    y = layers.Conv2D(1, 1, name="onset_logits")(y)
    y = layers.Reshape((d.num_sectors, d.num_frames), name="onset_squeeze")(y)
    start = _tos_start_ms(config)
    onset = OnsetExpectation(float(d.frame_period_ms), start, name=TOS, dtype="float32")
    return onset(y)


def _lma_output(x):
    x = layers.Dense(2, name="lma_linear")(x)
    return layers.Activation("linear", dtype="float32", name=LMA)(x)


def build_cnn(config: ml_collections.ConfigDict) -> keras.Model:
    """The shared trunk with the heads the experiment asks for."""
    m, d = config.model, config.data
    strain = keras.Input((d.num_sectors, d.num_frames), name="strain")
    x = strain_map = _normalise(strain, config)
    pools = int(m.get("sector_pools", 0))
    skip = None
    if pools:
        skip = layers.Reshape((d.num_sectors, d.num_frames), name="sector_skip")(x)
    for i, c in enumerate(m.trunk_channels):
        x = _conv_block(
            x,
            c,
            m.kernel_size,
            i < m.frame_pools,
            m.circular_padding,
            f"trunk{i}",
            separable=m.get("separable", False),
            pool_sectors=i < pools,
            bn_momentum=m.get("bn_momentum", 0.99),
        )
    for i, dilation in enumerate(m.get("ring_dilations", ())):
        x = _ring_block(
            x,
            int(dilation),
            m.circular_padding,
            m.get("bn_momentum", 0.99),
            f"ring{i}",
        )
    # Slice-level summary given to every sector: scar vs. late often hinges
    # on what the rest of the ring is doing.
    g = layers.GlobalAveragePooling2D(name="context_pool")(x)
    g = layers.Dense(16, activation="relu", name="context_dense")(g)
    context = layers.RepeatVector(d.num_sectors, name="context_repeat")(g)
    kind = registry.get(m.kind)
    outputs = {}
    if kind.has_tos:
        head = _head(x, context, config, "tos_head", skip)
        if m.get("tos_output", "dense") == "onset":
            outputs[TOS] = _onset_output(strain_map, head, config)
        else:
            outputs[TOS] = _tos_output(head, config)
    if kind.has_lma:
        outputs[LMA] = _lma_output(_head(x, context, config, "lma_head", skip))
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
