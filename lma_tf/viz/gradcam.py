"""Grad-CAM explanations of the TOS and LMA heads, built on tf-keras-vis.

  python -m lma_tf.viz.gradcam --model_dir=M [--records_dir=D] --split=test \
      --output_dir=G [--method=gradcam|gradcam++|scorecam] [--num_slices=N] \
      [--slice_ids=a,b]
  python -m lma_tf.viz.gradcam --compare=M1,M2 ...   (same slices, side by side)

What is explained (as in Xing et al.): for the regression head, the last
conv layer of the TOS branch (`tos_head_block{i}_conv`; `conv2` for the
ISBI 2021 network), scoring the predicted TOS at the centre of the largest
predicted LMA run (a circular run over the 126 sectors; with no run, the
sector of maximum predicted TOS); for the classification head, the last conv
of the LMA branch scoring the summed LMA logit margin (class 1 - class 0)
over that run. A model without an LMA head (regression only) calls a sector
LMA when its TOS is above 17 ms + epsilon.

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
corner-aligned, by tf-keras-vis), are min-max normalised per slice
(`normalise_maps`: unlike tf-keras-vis' own normalisation, independent of
the score's units) and cropped to the 126 real sectors and the slice's real
frames.

G/{slice}_{tag}.png (prefixed by the subject unless the slice id starts
with it; tag = gradcam, gradcampp or scorecam): the strain, then one overlay
per head and experiment; G/gradcam_{tag}.npz: the cropped maps, keyed
"{experiment}/{slice}/{head}"; G/targets_{tag}.json: the explained sectors
and predictions per experiment and slice.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.scorecam import Scorecam

from lma_tf import atomic, constants
from lma_tf.data import pipeline, preprocess
from lma_tf.evaluation import metrics
from lma_tf.training import train_lib as train
from lma_tf.viz import plots

N = constants.NUM_SECTORS
TOS = "tos"
LMA = "lma"
HEADS = (TOS, LMA)
METHODS = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam}
# File-name tags of the methods ("+" is not safe everywhere).
METHOD_TAGS = {"gradcam": "gradcam", "gradcam++": "gradcampp", "scorecam": "scorecam"}
SCORE_SCALE = 100.0  # scores in units of 100 ms (TOS) / 100 logits (LMA)
CHUNK = 16  # slices per tf-keras-vis call (Score-CAM runs channels x chunk)


class GradcamError(RuntimeError):
    """Nothing to explain (e.g. the classical baseline, or no such slices)."""


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
    threshold: float = 0.5,
) -> Target:
    """The centre of the largest predicted LMA run of one slice (126 sectors).

    LMA is `lma_probability >= threshold` when given, else TOS > 17 ms + eps.
    The centre of an even run is its lower middle sector.
    """
    if pred_tos is None and lma_probability is None:
        raise ValueError("need the predicted TOS or the LMA probability")
    if lma_probability is not None:
        mask = np.asarray(lma_probability)[:N] >= threshold
    else:
        mask = metrics.lma_from_tos(np.asarray(pred_tos)[:N]).astype(bool)
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


def target_layer(model: keras.Model, head: str = TOS) -> str:
    """Name of the last conv layer of `head`'s branch.

    `{head}_head_block{i}_conv` with the largest i; for a network without
    branch convs (ISBI 2021: conv0..conv2; or `model.head_channels=()`), the
    last conv before the heads.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    convs = [
        layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    ]
    branch = re.compile(rf"{head}_head_block(\d+)_conv")
    mine = [(int(m.group(1)), n) for n in convs if (m := branch.fullmatch(n))]
    if mine:
        return max(mine)[1]
    shared = [n for n in convs if not re.match(r"(tos|lma)_head_", n)]
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
    layer: str | None = None,
    explained: keras.Model | None = None,
) -> np.ndarray:
    """(B, sectors, frames) tf-keras-vis maps in [0, 1], one per slice.

    Args:
      model: the trained network (dict outputs `tos` / `lma`).
      strain: (B, sectors, frames) model input (padded, raw Ecc).
      masks: (B, sectors) weights of the scored sectors (`score_masks`).
      head: "tos" or "lma".
      method: "gradcam", "gradcam++" or "scorecam".
      layer: conv layer to explain; default `target_layer(model, head)`.
      explained: a cached `explainable_model(model, head)`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    layer = layer or target_layer(model, head)
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


# --------------------------------------------------------------------------
# Slices, explanations and figures.
# --------------------------------------------------------------------------


@dataclasses.dataclass
class SliceInput:
    """One slice from the records, as the model and the figures need it."""

    subject_id: str
    slice_id: str
    strain: np.ndarray  # (sectors padded, frames) model input
    num_frames: int  # real frames of the fitted strain (before zero padding)
    true_tos: np.ndarray | None  # (126,)
    scar_fraction: np.ndarray | None  # (126,)


@dataclasses.dataclass
class Explanation:
    """One experiment's predictions, target and maps for one slice."""

    experiment: str
    slice_id: str
    pred_tos: np.ndarray | None  # (126,) ms
    lma_probability: np.ndarray | None  # (126,) (None: regression only)
    combined_tos: np.ndarray | None  # (126,) ms
    target: Target
    layers: dict[str, str]  # head -> explained conv layer
    cams: dict[str, np.ndarray]  # head -> (126, num_frames) in [0, 1]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_slices(
    config: ml_collections.ConfigDict,
    split: str,
    num_slices: int,
    slice_ids: Sequence[str] = (),
) -> list[SliceInput]:
    """The first `num_slices` slices of a split, or those named in `slice_ids`.

    The evaluation pipeline's order (deterministic); named slices come back
    in the order given.

    Raises:
      GradcamError: a named slice is not in the split.
    """
    wanted = list(slice_ids)
    found: dict[str, SliceInput] = {}
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.cache = False  # we may stop early: nothing to cache
    ds = pipeline.make_dataset(config, split, training=False, include_metadata=True)
    for feats, labels, _ in ds:
        strain = feats["strain"].numpy()
        for i in range(strain.shape[0]):
            sid = _text(feats["slice_id"].numpy()[i])
            if wanted and sid not in wanted:
                continue
            has_tos = feats["has_tos"].numpy()[i] > 0
            has_scar = feats["has_scar"].numpy()[i] > 0
            found[sid] = SliceInput(
                subject_id=_text(feats["subject_id"].numpy()[i]),
                slice_id=sid,
                strain=strain[i],
                num_frames=preprocess.real_frames(
                    strain[i, :N], int(feats["num_frames"].numpy()[i])
                ),
                true_tos=labels["tos"].numpy()[i, :N] if has_tos else None,
                scar_fraction=feats["scar"].numpy()[i, :N] if has_scar else None,
            )
            if not wanted and len(found) >= num_slices:
                return list(found.values())
        if wanted and len(found) == len(set(wanted)):
            break
    if wanted:
        missing = [s for s in wanted if s not in found]
        if missing:
            raise GradcamError(f"slices {missing} not in the {split!r} split")
        return [found[s] for s in dict.fromkeys(wanted)]
    return list(found.values())


def explain(
    model: keras.Model,
    slices: Sequence[SliceInput],
    method: str = "gradcam",
    experiment: str = "",
) -> list[Explanation]:
    """Predictions, targets and per-head maps of `model` for `slices`."""
    if not slices:
        return []
    heads = [h for h in HEADS if h in model.output]
    explained = {h: explainable_model(model, h) for h in heads}
    layers = {h: target_layer(model, h) for h in heads}
    out: list[Explanation] = []
    for lo in range(0, len(slices), CHUNK):
        chunk = slices[lo : lo + CHUNK]
        strain = np.stack([s.strain for s in chunk]).astype(np.float32)
        pred = model(strain, training=False)
        tos = pred[TOS].numpy()[:, :N] if TOS in pred else None
        prob = (
            metrics.lma_probability(pred[LMA].numpy()[:, :N]) if LMA in pred else None
        )
        combined = (
            metrics.combine_tos(tos, prob)
            if tos is not None and prob is not None
            else tos
        )
        targets = [
            find_target(
                None if tos is None else tos[i], None if prob is None else prob[i]
            )
            for i in range(len(chunk))
        ]
        cams = {}
        for h in heads:
            masks = score_masks(targets, h, strain.shape[1])
            cams[h] = compute_cams(
                model, strain, masks, h, method, layers[h], explained[h]
            )
        for i, s in enumerate(chunk):
            out.append(
                Explanation(
                    experiment=experiment or model.name,
                    slice_id=s.slice_id,
                    pred_tos=None if tos is None else tos[i],
                    lma_probability=None if prob is None else prob[i],
                    combined_tos=None if combined is None else combined[i],
                    target=targets[i],
                    layers=dict(layers),
                    cams={h: cams[h][i, :N, : s.num_frames] for h in heads},
                )
            )
    return out


def _panels(e: Explanation) -> list[plots.CamPanel]:
    names = {TOS: "TOS head", LMA: "LMA head"}
    panels = []
    for head, cam in e.cams.items():
        panels.append(
            plots.CamPanel(
                title=f"{e.experiment}: {names[head]}",
                cam=cam,
                pred_tos=e.pred_tos,
                combined_tos=e.combined_tos if e.lma_probability is not None else None,
                target_sector=e.target.centre if head == TOS else None,
                run=e.target.run,
            )
        )
    return panels


def _experiment_names(configs: Sequence[ml_collections.ConfigDict], dirs) -> list:
    names = [str(c.name) for c in configs]
    if len(set(names)) < len(names):
        names = [
            f"{n} ({os.path.basename(os.path.normpath(d))})"
            for n, d in zip(names, dirs)
        ]
    return names


def _same_inputs(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> bool:
    keys = ("records_dir", "num_frames", "num_sectors", "frame_period_ms")
    keys += ("drop_last_frames",)
    return all(a.data.get(k) == b.data.get(k) for k in keys)


def run_gradcam(
    model_dirs: Sequence[str],
    output_dir: str,
    split: str = "test",
    method: str = "gradcam",
    num_slices: int = 4,
    records_dir: str = "",
    slice_ids: Sequence[str] = (),
) -> dict:
    """Explains the same slices with every experiment; writes the figures.

    Slices are the first `num_slices` of the split (or `slice_ids`), as read
    with the first experiment's config; one figure per slice holds every
    experiment's maps side by side.

    Returns:
      {"figures": [paths], "maps": npz path, "targets": json path,
       "experiments": [names]}.

    Raises:
      GradcamError: a classical (non-network) experiment, or no slices.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not model_dirs:
        raise ValueError("no model directory given")
    configs = [train.load_config(d) for d in model_dirs]
    for c, d in zip(configs, model_dirs):
        if records_dir:
            c.data.records_dir = records_dir
        if c.model.kind == "classical":
            raise GradcamError(f"{d}: the classical detector has no network to explain")
    names = _experiment_names(configs, model_dirs)
    slices = load_slices(configs[0], split, num_slices, slice_ids)
    if not slices:
        raise GradcamError(f"no slices in the {split!r} split")
    ids = [s.slice_id for s in slices]
    per_experiment: list[list[Explanation]] = []
    for c, d, name in zip(configs, model_dirs, names):
        mine = slices if _same_inputs(c, configs[0]) else load_slices(c, split, 0, ids)
        model = train.restore_best(c, d)
        per_experiment.append(explain(model, mine, method, name))

    os.makedirs(output_dir, exist_ok=True)
    tag = METHOD_TAGS[method]
    figures = []
    for i, s in enumerate(slices):
        panels = [p for exps in per_experiment for p in _panels(exps[i])]
        stem = s.slice_id
        if not stem.startswith(s.subject_id):
            stem = f"{s.subject_id}_{stem}"
        name = plots.safe_filename(f"{stem}_{tag}")
        figures.append(
            plots.plot_gradcam(
                s.strain[:N, : s.num_frames],
                panels,
                path=os.path.join(output_dir, f"{name}.png"),
                true_tos=s.true_tos,
                scar_fraction=s.scar_fraction,
                title=f"{s.subject_id} / {s.slice_id} ({method})",
                frame_period_ms=float(configs[0].data.frame_period_ms),
            )
        )
    maps = {
        f"{e.experiment}/{e.slice_id}/{head}": cam
        for exps in per_experiment
        for e in exps
        for head, cam in e.cams.items()
    }
    maps_path = atomic.write_npz(os.path.join(output_dir, f"gradcam_{tag}.npz"), maps)
    targets = {e.experiment: {} for exps in per_experiment for e in exps}
    for exps in per_experiment:
        for e in exps:
            targets[e.experiment][e.slice_id] = _target_record(e)
    targets_path = os.path.join(output_dir, f"targets_{tag}.json")
    atomic.write_json(
        targets_path, {"method": method, "split": split, "slices": targets}
    )
    return {
        "figures": figures,
        "maps": maps_path,
        "targets": targets_path,
        "experiments": names,
    }


def _target_record(e: Explanation) -> dict:
    t = e.target
    return {
        "centre_sector": t.centre,
        "lma_run": [int(k) for k in t.run],
        "fallback_max_tos": t.fallback,
        "pred_tos_at_centre_ms": None
        if e.pred_tos is None
        else float(e.pred_tos[t.centre]),
        "layers": e.layers,
    }


def main(argv: list[str]) -> None:
    """absl entry point: flags -> `run_gradcam`."""
    from lma_tf.cli import quiet_logs

    quiet_logs()
    del argv
    from absl import flags

    f = flags.FLAGS
    dirs = list(f.compare) or ([f.model_dir] if f.model_dir else [])
    if not dirs:
        sys.exit("gradcam: error: --model_dir or --compare is required")
    try:
        result = run_gradcam(
            dirs,
            f.output_dir,
            f.split,
            f.method,
            f.num_slices,
            f.records_dir,
            f.slice_ids,
        )
    except (GradcamError, FileNotFoundError, ValueError) as e:
        sys.exit(f"gradcam: error: {e}")
    print(
        f"[gradcam] {f.method}: {len(result['figures'])} figures "
        f"({', '.join(result['experiments'])}) in {f.output_dir}"
    )


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("model_dir", "", "A trained model directory.")
    flags.DEFINE_list("compare", [], "Several model directories, side by side.")
    flags.DEFINE_string("records_dir", "", "Records (default: the one trained on).")
    flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to explain.")
    flags.DEFINE_string("output_dir", "gradcam", "Where figures and maps go.")
    flags.DEFINE_enum("method", "gradcam", list(METHODS), "tf-keras-vis method.")
    flags.DEFINE_integer("num_slices", 4, "Slices to explain (the split's first).")
    flags.DEFINE_list("slice_ids", [], "Explain these slices instead.")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
