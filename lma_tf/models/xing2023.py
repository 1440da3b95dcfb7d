"""The authors' own networks (Xing et al., ISBI 2023), layer for layer, in Keras 3.

`build_xing2023` is their multitask `NetStrainMat2ClsReg` in the
configuration of their training script; `build_xing2023_regression_only` is
their regression-only `NetStrainMat2Reg` given the same convolutions and MLP
(its chosen size is not published). Unlike `networks.build_cnn`, both pool
2x2 over (sector, frame) with zero 'same' padding, as the authors do, so the
sector ring is reduced to 4 positions before the dense layers.

  input (128 sectors, 64 frames, 1)
  trunk     4 x [conv3x3 -> max-pool 2x2 -> BN -> ReLU], channels 4, 8, 16, 16
  TOS head  conv16 + pool, 3 x conv16 (BN, ReLU after each) -> flatten (128)
            -> Dense 128, ReLU, BN -> Dense 128 -> leaky_relu(x - 17) + 17
  LMA head  conv16 + pool, 2 x conv16 -> flatten (128) -> Dense 192, ReLU, BN
            -> Dense 256 -> (2 classes, 128 sectors) -> (128, 2) -> log-softmax

The LMA output is log-probabilities; the losses and rules treat it as logits,
which is exact because softmax(log_softmax(x)) = softmax(x). Deviations from
the authors' code, and why, are listed in docs/fidelity.md.
"""

from __future__ import annotations

import keras
import ml_collections
import numpy as np
from keras import layers

from lma_tf.models import networks, registry

TOS = registry.TOS
LMA = registry.LMA

TRUNK_CHANNELS = (4, 8, 16, 16)  # joint_init 4, doubling per pooled layer
HEAD_CHANNELS = 16
TOS_HEAD_CONVS = 4  # reg_conv_layer_num of their training script
LMA_HEAD_CONVS = 3  # their config-key bug: always 3 (cls_n_conv_layers default)
HEAD_POOLS = 1  # their pooling budget: log2(min(128, 64)) - 1 = 5, trunk uses 4
NUM_CLASSES = 2
# Conv and Linear weights are Xavier-uniform in their code (Keras' default).
_INIT = "glorot_uniform"
_SYNC_BN = networks._SYNC_BN


def _check_shape(config: ml_collections.ConfigDict) -> None:
    """Five 2x2 pools need sectors and frames divisible by 32."""
    d = config.data
    pools = len(TRUNK_CHANNELS) + HEAD_POOLS
    for name, size in (("num_sectors", d.num_sectors), ("num_frames", d.num_frames)):
        if size % 2**pools:
            raise ValueError(
                f"{config.model.kind}: data.{name}={size} must be divisible by "
                f"{2**pools} (the network pools both axes {pools} times)"
            )


def _block(x, channels: int, pool: bool, batch_norm: bool, name: str):
    """conv3x3 -> (max-pool 2x2) -> (BatchNorm) -> ReLU, the authors' order."""
    x = layers.Conv2D(
        channels, 3, padding="same", kernel_initializer=_INIT, name=f"{name}_conv"
    )(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    if batch_norm:
        x = layers.BatchNormalization(
            synchronized=_SYNC_BN, momentum=0.9, epsilon=1e-5, name=f"{name}_bn"
        )(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _mlp(x, out_dim: int, batch_norm: bool, name: str):
    """Flatten -> Dense(hidden), ReLU, (BN) -> Dense(out_dim), 2 linear layers.

    The hidden width follows their rule, linspace(in, out, 3)[1] as an int.
    """
    x = layers.Flatten(name=f"{name}_flatten")(x)
    hidden = int(np.linspace(x.shape[-1], out_dim, 3).astype(int)[1])
    x = layers.Dense(hidden, kernel_initializer=_INIT, name=f"{name}_dense0")(x)
    x = layers.ReLU(name=f"{name}_dense0_relu")(x)
    if batch_norm:
        x = layers.BatchNormalization(
            synchronized=_SYNC_BN, momentum=0.9, epsilon=1e-5, name=f"{name}_dense0_bn"
        )(x)
    return x


def _tos_output(x, config: ml_collections.ConfigDict):
    """Dense(sectors) with the bias at the train-split mean TOS, shifted leaky floor.

    The authors start the bias near 0, where leaky_relu(x - 17) has slope
    0.01: the head then barely learns (docs/fidelity.md). A
    `model.tos_bias_init_ms` >= 0 sets the start instead (0 = theirs).
    """
    bias = float(config.model.tos_bias_init_ms)
    if bias < 0:
        bias = float(config.model.tos_mean_ms) or 40.0
    x = layers.Dense(
        config.data.num_sectors,
        kernel_initializer=_INIT,
        bias_initializer=keras.initializers.Constant(bias),
        name="tos_linear",
    )(x)
    return networks.ShiftedLeakyReLU(name=TOS, dtype="float32")(x)


def _lma_output(x, num_sectors: int):
    """Dense(2 x sectors) -> (2, S) as theirs -> (S, 2) -> log-softmax."""
    x = layers.Dense(
        NUM_CLASSES * num_sectors, kernel_initializer=_INIT, name="lma_linear"
    )(x)
    x = layers.Reshape((NUM_CLASSES, num_sectors), name="lma_classes_first")(x)
    x = layers.Permute((2, 1), name="lma_sectors_first")(x)
    return layers.Activation("log_softmax", dtype="float32", name=LMA)(x)


def _trunk(x, first_only_bn: bool):
    for i, c in enumerate(TRUNK_CHANNELS):
        x = _block(x, c, True, i == 0 or not first_only_bn, f"trunk{i}")
    return x


def _tos_path(x, config: ml_collections.ConfigDict, batch_norm: bool):
    for i in range(TOS_HEAD_CONVS):
        x = _block(x, HEAD_CHANNELS, i < HEAD_POOLS, batch_norm, f"tos_head{i}")
    x = _mlp(x, config.data.num_sectors, batch_norm, "tos_mlp")
    return _tos_output(x, config)


def build_xing2023(config: ml_collections.ConfigDict) -> keras.Model:
    """Their `NetStrainMat2ClsReg`: shared trunk, TOS regression + LMA heads."""
    _check_shape(config)
    d = config.data
    strain = keras.Input((d.num_sectors, d.num_frames), name="strain")
    x = _trunk(networks._normalise(strain, config), first_only_bn=False)
    tos = _tos_path(x, config, batch_norm=True)
    y = x
    for i in range(LMA_HEAD_CONVS):
        y = _block(y, HEAD_CHANNELS, i < HEAD_POOLS, True, f"lma_head{i}")
    y = _mlp(y, NUM_CLASSES * d.num_sectors, True, "lma_mlp")
    lma = _lma_output(y, d.num_sectors)
    return keras.Model(strain, {TOS: tos, LMA: lma}, name="xing2023")


def build_xing2023_regression_only(config: ml_collections.ConfigDict) -> keras.Model:
    """Their `NetStrainMat2Reg` on the multitask net's regression path.

    Same convolutions, pools and MLP as the trunk + TOS head above, with
    their regression network's quirk: BatchNorm after the first conv only
    (none after the later convs, none in the MLP).
    """
    _check_shape(config)
    d = config.data
    strain = keras.Input((d.num_sectors, d.num_frames), name="strain")
    x = _trunk(networks._normalise(strain, config), first_only_bn=True)
    tos = _tos_path(x, config, batch_norm=False)
    return keras.Model(strain, {TOS: tos}, name="xing2023_regression_only")
