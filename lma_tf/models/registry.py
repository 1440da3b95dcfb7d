"""The one registry of model kinds: what each kind is, in one entry.

A kind says which heads its network has, how to build it, whether it can be
exported for serving and which layer Grad-CAM explains per head. Every stage
asks the registry instead of branching on `config.model.kind`, so adding a
kind is one `register(ModelKind(...))` here plus its builder.

Builders are named as "module:function" strings and imported on first use,
so that reading the registry (config validation, `--help`) needs no Keras.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

TOS = "tos"
LMA = "lma"
HEADS = (TOS, LMA)


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One kind of model.

    Attributes:
      name: the value of `config.model.kind`.
      heads: the outputs it predicts, a subset of ("tos", "lma").
      builder: "module:function" of `f(config) -> keras.Model` with outputs
        named by `heads`; None for a model with no network (fitted, not
        trained, like the classical onset detector).
      explain_layers: head -> name of the layer Grad-CAM explains; a name
        ending in "*" means the last conv layer whose name starts with the
        rest; absent heads fall back to the last conv shared by the heads.
      description: one line for `--help` and the docs.
      pools_frames: the trunk halves the frame axis `model.frame_pools`
        times, so `data.num_frames` must be divisible by 2**frame_pools.
    """

    name: str
    heads: tuple[str, ...]
    builder: str | None
    explain_layers: dict[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""
    pools_frames: bool = False

    @property
    def is_network(self) -> bool:
        return self.builder is not None

    @property
    def has_tos(self) -> bool:
        return TOS in self.heads

    @property
    def has_lma(self) -> bool:
        return LMA in self.heads

    @property
    def exportable(self) -> bool:
        """The serving outputs (TOS, LMA probability, combined) need a TOS head."""
        return self.is_network and self.has_tos

    def build(self, config: Any):
        """The Keras network of this kind for `config`."""
        if self.builder is None:
            raise ValueError(f"model.kind={self.name!r} has no network to build")
        module, function = self.builder.split(":")
        fn: Callable = getattr(importlib.import_module(module), function)
        return fn(config)


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Adds `kind` to the registry (a name may be registered once)."""
    if kind.name in _KINDS:
        raise ValueError(f"model kind {kind.name!r} is already registered")
    if not kind.heads or set(kind.heads) - set(HEADS):
        raise ValueError(f"model kind {kind.name!r}: heads must be within {HEADS}")
    _KINDS[kind.name] = kind
    return kind


def get(name: str) -> ModelKind:
    """The kind called `name`; ValueError listing the known kinds otherwise."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(
            f"unknown model.kind {name!r}; known kinds: {', '.join(names())}"
        ) from None


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


_CNN = "lma_tf.models.networks:build_cnn"

register(
    ModelKind(
        "multitask",
        (TOS, LMA),
        _CNN,
        {TOS: "tos_head_block*", LMA: "lma_head_block*"},
        "shared CNN trunk, TOS regression + LMA classification heads",
        pools_frames=True,
    )
)
register(
    ModelKind(
        "regression_only",
        (TOS,),
        _CNN,
        {TOS: "tos_head_block*"},
        "the multitask network without its LMA head",
        pools_frames=True,
    )
)
register(
    ModelKind(
        "classification_only",
        (LMA,),
        _CNN,
        {LMA: "lma_head_block*"},
        "the multitask network without its TOS head (cannot be exported)",
        pools_frames=True,
    )
)
register(
    ModelKind(
        "isbi2021",
        (TOS,),
        "lma_tf.models.networks:build_isbi2021",
        {TOS: "conv2"},
        "the ISBI 2021 regression network (3 convs of 8 channels, dense)",
    )
)
register(
    ModelKind(
        "classical",
        (TOS,),
        None,
        {},
        "non-learned onset-of-shortening detector (threshold fitted on val)",
    )
)

_XING = "lma_tf.models.xing2023"

register(
    ModelKind(
        "xing2023",
        (TOS, LMA),
        f"{_XING}:build_xing2023",
        {TOS: "tos_head*", LMA: "lma_head*"},
        "the authors' multitask network, layer for layer (2x2 pools, dense heads)",
    )
)
register(
    ModelKind(
        "xing2023_regression_only",
        (TOS,),
        f"{_XING}:build_xing2023_regression_only",
        {TOS: "tos_head*"},
        "the authors' regression-only network (BatchNorm after the first conv only)",
    )
)
