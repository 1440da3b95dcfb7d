"""Grad-CAM maps of the TOS and LMA heads of a network, built on tf-keras-vis.

This module computes maps for a model and a batch of strain matrices;
`lma_tf.viz.explain` runs it over trained runs and writes the figures, and
`lma-tf explain` (`lma_tf.cli.explain`) is the command. See docs/figures.md.

What is explained (as in Xing et al.): for the regression head, the last
conv layer of the TOS branch, scoring the predicted TOS at the centre of the
largest predicted LMA run (a circular run over the 126 sectors; with no run,
the sector of maximum predicted TOS); for the classification head, the last
conv of the LMA branch scoring the summed LMA logit margin (class 1 - class
0) over that run. Which layer that is comes from the model registry
(`registry.get(kind).explain_layers`), never from the layer names here. A
model without an LMA head (regression only) calls a sector LMA by
`rules.lma_from_tos`.

How tf-keras-vis 0.8.7 is driven under Keras 3 (each point checked here):
- It wants one model output per score: `explainable_model` clones the
  network onto an input with a trailing channel axis (Score-CAM assumes
  channels-last inputs; the first reshape of our graph accepts it) and ends
  it in one `(batch, sectors + 1)` output: the head's target divided by
  SCORE_SCALE, plus a constant-zero reference column.
- Score-CAM feeds `softmax(outputs)` to the score function: the zero column
  undoes it exactly (log p_k - log p_ref = output_k), and the scale keeps the
  softmax away from float32 overflow. Grad-CAM++ exponentiates the score:
  the scale keeps that finite too. Grad-CAM is invariant to it.
- `model_modifier=None`: the heads end in linear layers (the TOS floor is a
  leaky ReLU that tf-keras-vis' ReplaceToLinear cannot see and need not).

Maps come back upsampled to the input (sectors x frames, linear,
corner-aligned, by tf-keras-vis) and are min-max normalised per slice
(`normalise_maps`: unlike tf-keras-vis' own normalisation, independent of
the score's units).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.scorecam import Scorecam

from lma_tf import constants, rules
from lma_tf.models import registry

N = constants.NUM_SECTORS
TOS = registry.TOS
LMA = registry.LMA
HEADS = registry.HEADS
METHODS = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam}
# File-name tags of the methods ("+" is not safe everywhere).
METHOD_TAGS = {"gradcam": "gradcam", "gradcam++": "gradcampp", "scorecam": "scorecam"}
SCORE_SCALE = 100.0  # scores in units of 100 ms (TOS) / 100 logits (LMA)


# --------------------------------------------------------------------------
# What to explain: the largest predicted LMA run and its centre.
# --------------------------------------------------------------------------


def largest_circular_run(mask: np.ndarray) -> np.ndarray:
    """Sectors of the longest run of True on the ring, in ring order.

    Runs wrap around (sector n-1 is next to sector 0). Ties go to the run
    met first walking up from the first False sector. Empty if no True.
    """
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    n = mask.size
    if not mask.any():
        return np.zeros(0, dtype=np.int64)
    if mask.all():
        return np.arange(n, dtype=np.int64)
    shift = int(np.argmin(mask))  # a False sector: no run crosses it
    rolled = np.roll(mask, -shift)
    padded = np.concatenate([[False], rolled, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, stops = edges[::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return (np.arange(starts[best], stops[best]) + shift) % n


@dataclasses.dataclass
class Target:
    """The sectors a slice's explanation scores.

    Attributes:
      centre: the sector whose predicted TOS the TOS-head map explains.
      run: the largest predicted LMA run (the LMA-head map sums over it);
        `[centre]` when there is none.
      fallback: True when there was no LMA run (centre = max predicted TOS).
    """

    centre: int
    run: np.ndarray
    fallback: bool


def find_target(
    pred_tos: np.ndarray | None,
    lma_probability: np.ndarray | None = None,
    threshold: float = rules.LMA_THRESHOLD,
) -> Target:
    """The centre of the largest predicted LMA run of one slice (126 sectors).

    LMA is `rules.lma_call(lma_probability, threshold)` when given, else
    `rules.lma_from_tos(pred_tos)` (TOS > 17 ms + eps). The centre of an
    even run is its lower middle sector.
    """
    if pred_tos is None and lma_probability is None:
        raise ValueError("need the predicted TOS or the LMA probability")
    if lma_probability is not None:
        mask = rules.lma_call(np.asarray(lma_probability)[:N], threshold)
    else:
        mask = rules.lma_from_tos(np.asarray(pred_tos)[:N]).astype(bool)
    run = largest_circular_run(mask)
    if run.size:
        return Target(int(run[(run.size - 1) // 2]), run, False)
    ranking = pred_tos if pred_tos is not None else lma_probability
    centre = int(np.argmax(np.asarray(ranking)[:N]))
    return Target(centre, np.array([centre], dtype=np.int64), True)


def score_masks(targets: Sequence[Target], head: str, num_sectors: int) -> np.ndarray:
    """(B, num_sectors) weights of the scored sectors: the centre or the run."""
    masks = np.zeros((len(targets), num_sectors), np.float32)
    for i, t in enumerate(targets):
        if head == TOS:
            masks[i, t.centre] = 1.0
        else:
            masks[i, t.run] = 1.0
    return masks


# --------------------------------------------------------------------------
# The model tf-keras-vis sees.
# --------------------------------------------------------------------------


def _conv_names(model: keras.Model) -> list[str]:
    return [
        layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    ]


def target_layer(model: keras.Model, head: str, kind: registry.ModelKind | str) -> str:
    """Name of the conv layer whose activations explain `head` of `model`.

    The kind's `explain_layers[head]` names it: a plain name is that layer;
    a name ending in "*" is the last conv layer whose name starts with the
    rest. When the kind names none for `head`, or the pattern matches no
    conv (e.g. a network built with `model.head_channels=()`), the last conv
    that no head pattern claims (the shared trunk) is explained.

    Raises:
      ValueError: an unknown head, a named layer missing from `model`, or a
        model with no conv layer to explain.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    kind = registry.get(kind) if isinstance(kind, str) else kind
    convs = _conv_names(model)
    pattern = kind.explain_layers.get(head)
    if pattern is not None and not pattern.endswith("*"):
        if pattern not in convs:
            raise ValueError(
                f"{model.name} has no conv layer {pattern!r} (registry entry "
                f"{kind.name!r}, head {head!r})"
            )
        return pattern
    if pattern is not None:
        mine = [n for n in convs if n.startswith(pattern[:-1])]
        if mine:
            return mine[-1]
    claimed = tuple(p[:-1] for p in kind.explain_layers.values() if p.endswith("*"))
    shared = [n for n in convs if not (claimed and n.startswith(claimed))]
    if not shared:
        raise ValueError(f"{model.name} has no conv layer to explain")
    return shared[-1]


class _ScoreTarget(keras.layers.Layer):
    """Head output -> (batch, sectors + 1): target / scale, then a zero column."""

    def __init__(self, head: str, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.scale = scale

    def call(self, x):
        if self.head == LMA:
            x = x[..., 1] - x[..., 0]  # the logit of P(LMA)
        x = x / self.scale
        return keras.ops.concatenate([x, keras.ops.zeros_like(x[:, :1])], axis=1)


class _QuietModel(keras.Model):
    """A functional model whose `predict` is silent by default.

    Score-CAM calls `predict` once per chunk without `verbose`: no bars.
    """

    def predict(self, x, batch_size=None, verbose=0, **kwargs):
        return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)


def explainable_model(model: keras.Model, head: str) -> keras.Model:
    """A weight-sharing copy of `model` for tf-keras-vis (see module docstring).

    Input: strain (batch, sectors, frames, 1), raw Ecc as the model takes it;
    output: (batch, sectors + 1), `head`'s target / SCORE_SCALE then 0.
    Layers keep their names, so `target_layer` names work on it.

    Raises:
      ValueError: `model` has no `head` output.
    """
    outputs = model.output if isinstance(model.output, dict) else {}
    if head not in outputs:
        raise ValueError(f"{model.name} has no {head!r} output")
    sectors, frames = model.input.shape[1:]
    inp = keras.Input((sectors, frames, 1), name="strain_with_channel")
    clone = keras.models.clone_model(model, input_tensors=inp)
    for layer in model.layers:
        if layer.weights:
            clone.get_layer(layer.name).set_weights(layer.get_weights())
    out = _ScoreTarget(head, SCORE_SCALE, name=f"{head}_score")(clone.output[head])
    return _QuietModel(inp, out, name=f"{model.name}_{head}_explained")


def _gradient_score(masks: tf.Tensor) -> Callable:
    def score(output):
        return tf.reduce_sum(output[:, :-1] * masks, axis=1)

    return score


def scorecam_score(masks: tf.Tensor) -> Callable:
    """Score for Score-CAM, which hands the score `softmax(outputs)`.

    log p_k - log p_ref recovers output_k exactly (the reference column is
    0), so the weights are the same score as for Grad-CAM.
    """

    def score(probabilities):
        logp = tf.math.log(tf.cast(probabilities, tf.float32))
        return tf.reduce_sum((logp[:, :-1] - logp[:, -1:]) * masks, axis=1)

    return score


def compute_cams(
    model: keras.Model,
    strain: np.ndarray,
    masks: np.ndarray,
    head: str = TOS,
    method: str = "gradcam",
    *,
    layer: str,
    explained: keras.Model | None = None,
) -> np.ndarray:
    """(B, sectors, frames) tf-keras-vis maps in [0, 1], one per slice.

    Args:
      model: the trained network (dict outputs `tos` / `lma`).
      strain: (B, sectors, frames) model input (padded, raw Ecc).
      masks: (B, sectors) weights of the scored sectors (`score_masks`).
      head: "tos" or "lma".
      method: "gradcam", "gradcam++" or "scorecam".
      layer: conv layer to explain (`target_layer(model, head, kind)`).
      explained: a cached `explainable_model(model, head)`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    explained = explained or explainable_model(model, head)
    masks_t = tf.constant(masks, tf.float32)
    seed = np.asarray(strain, np.float32)[..., None]
    vis = METHODS[method](explained, model_modifier=None, clone=False)
    kwargs = {
        "penultimate_layer": layer,
        "seek_penultimate_conv_layer": False,
        "normalize_cam": False,  # see `normalise_maps`
    }
    if method == "scorecam":
        score = scorecam_score(masks_t)
        kwargs["batch_size"] = 64
    else:
        score = _gradient_score(masks_t)
    with warnings.catch_warnings():
        # Score-CAM predicts on a one-element list of inputs: harmless.
        warnings.filterwarnings(
            "ignore", "The structure of `inputs`", category=UserWarning
        )
        cams = vis(score, seed, **kwargs)
    return normalise_maps(np.asarray(cams, dtype=np.float32).reshape(seed.shape[:-1]))


def normalise_maps(cams: np.ndarray) -> np.ndarray:
    """Min-max normalises each map of (B, ...) to [0, 1]; a flat map becomes 0.

    Not tf-keras-vis' `normalize`: its absolute epsilon (1e-7) in the
    denominator shrinks maps whose raw values are small, so the result would
    depend on the units of the score (ms vs. 100 ms); here it does not.
    """
    cams = np.asarray(cams, dtype=np.float64)
    axes = tuple(range(1, cams.ndim))
    lo = cams.min(axis=axes, keepdims=True)
    span = cams.max(axis=axes, keepdims=True) - lo
    flat = span <= 1e-12 * np.maximum(np.abs(lo) + span, np.finfo(np.float64).tiny)
    out = (cams - lo) / np.where(flat, 1.0, span)
    return np.where(flat, 0.0, out).astype(np.float32)
