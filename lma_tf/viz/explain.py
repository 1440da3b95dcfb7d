"""Grad-CAM explanations of trained runs: the same slices, every experiment.

  lma-tf explain --model_dir=M [--records_dir=D] --split=test --output_dir=G
      [--method=gradcam|gradcam++|scorecam] [--num_slices=N] [--slice_ids=a,b]
  lma-tf explain --compare=M1,M2 ...   (same slices, side by side)

Runs are read through `lma_tf.training.run_dir` (config and best weights,
never the training loop), slices through `inference.load_split` (the
evaluation pipeline: the same frames and sectors evaluation sees) and
predictions through `inference.network_predictor`, so the LMA calls that
pick what to explain are the decision rules of `lma_tf.rules`. The maps
themselves come from `lma_tf.viz.gradcam`; see docs/figures.md.

Output, in G (tag = gradcam, gradcampp or scorecam):
  {slice}_{tag}.png   the strain, then one overlay per head and experiment;
                      prefixed by the subject unless the slice id starts
                      with it, and made a safe file name inside G.
  gradcam_{tag}.npz   the maps cropped to the 126 real sectors and the
                      slice's real frames, keyed "{experiment}/{slice}/{head}".
  targets_{tag}.json  the explained sectors, layers and predictions per
                      experiment and slice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import keras
import ml_collections
import numpy as np

from lma_tf import atomic, constants, inference
from lma_tf.errors import UsageError
from lma_tf.inference import SliceBatch
from lma_tf.models import registry
from lma_tf.training import run_dir
from lma_tf.viz import figures, gradcam, gradcam_overlay

N = constants.NUM_SECTORS
CHUNK = 16  # slices per tf-keras-vis call (Score-CAM runs channels x chunk)
_HEAD_TITLES = {gradcam.TOS: "TOS head", gradcam.LMA: "LMA head"}


class GradcamError(UsageError):
    """Nothing to explain: a kind without a network, or no such slices."""


@dataclasses.dataclass
class Explanation:
    """One experiment's predictions, target and maps for one slice."""

    experiment: str
    slice_id: str
    pred_tos: np.ndarray | None  # (126,) ms
    lma_probability: np.ndarray | None  # (126,) (None: no LMA head)
    combined_tos: np.ndarray | None  # (126,) ms
    target: gradcam.Target
    layers: dict[str, str]  # head -> explained conv layer
    cams: dict[str, np.ndarray]  # head -> (126, num_frames) in [0, 1]


def _row(a: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if a is None else a[i]


def _explain_chunk(
    model: keras.Model,
    kind: registry.ModelKind,
    chunk: SliceBatch,
    method: str,
    experiment: str,
    layers: dict[str, str],
    explained: dict[str, keras.Model],
) -> list[Explanation]:
    pred = inference.network_predictor(model, kind)(chunk)
    tos = pred.tos_ms
    prob = pred.lma_probability if kind.has_lma else None
    combined = pred.combined_tos_ms if prob is not None else tos
    targets = [
        gradcam.find_target(_row(tos, i), _row(prob, i)) for i in range(len(chunk))
    ]
    strain = np.asarray(chunk.model_input, np.float32)
    cams = {}
    for h in layers:
        masks = gradcam.score_masks(targets, h, strain.shape[1])
        cams[h] = gradcam.compute_cams(
            model, strain, masks, h, method, layer=layers[h], explained=explained[h]
        )
    return [
        Explanation(
            experiment=experiment,
            slice_id=slice_id,
            pred_tos=_row(tos, i),
            lma_probability=_row(prob, i),
            combined_tos=_row(combined, i),
            target=targets[i],
            layers=dict(layers),
            cams={h: cams[h][i, :N, : chunk.num_frames[i]] for h in layers},
        )
        for i, slice_id in enumerate(chunk.slice_id)
    ]


def explain(
    model: keras.Model,
    batch: SliceBatch,
    kind: registry.ModelKind | str,
    method: str = "gradcam",
    experiment: str = "",
) -> list[Explanation]:
    """Predictions, targets and per-head maps of `model` (of `kind`) for `batch`.

    Every head of the kind is explained at the layer the registry names
    (`gradcam.target_layer`); maps are cropped to the 126 real sectors and
    each slice's real frames.
    """
    kind = registry.get(kind) if isinstance(kind, str) else kind
    if not len(batch):
        return []
    heads = [h for h in gradcam.HEADS if h in kind.heads]
    explained = {h: gradcam.explainable_model(model, h) for h in heads}
    layers = {h: gradcam.target_layer(model, h, kind) for h in heads}
    out: list[Explanation] = []
    for lo in range(0, len(batch), CHUNK):
        chunk = batch.take(np.arange(lo, min(lo + CHUNK, len(batch))))
        out += _explain_chunk(
            model, kind, chunk, method, experiment or model.name, layers, explained
        )
    return out


def panels(e: Explanation) -> list[gradcam_overlay.CamPanel]:
    """The overlay panels of one explanation, one per explained head."""
    has_lma = e.lma_probability is not None
    return [
        gradcam_overlay.CamPanel(
            title=f"{e.experiment}: {_HEAD_TITLES[head]}",
            cam=cam,
            pred_tos=e.pred_tos,
            combined_tos=e.combined_tos if has_lma else None,
            target_sector=e.target.centre if head == gradcam.TOS else None,
            run=e.target.run,
        )
        for head, cam in e.cams.items()
    ]


def figure_path(output_dir: str, subject_id: str, slice_id: str, tag: str) -> str:
    """Where a slice's figure goes: a safe name, checked to stay in `output_dir`.

    The stem is the slice id, prefixed by the subject unless it starts with
    it; ids come from data, so `../x` must not name a file elsewhere.
    """
    stem = slice_id if slice_id.startswith(subject_id) else f"{subject_id}_{slice_id}"
    return figures.output_path(output_dir, f"{stem}_{tag}")


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


def _load_configs(
    model_dirs: Sequence[str], records_dir: str
) -> list[ml_collections.ConfigDict]:
    """The runs' configs; GradcamError for a kind with no network to explain."""
    configs = [run_dir.load_config(d) for d in model_dirs]
    for c, d in zip(configs, model_dirs):
        if records_dir:
            c.data.records_dir = records_dir
        kind = registry.get(c.model.kind)
        if not kind.is_network:
            raise GradcamError(
                f"{d}: model.kind={kind.name!r} has no network to explain "
                f"(Grad-CAM needs a trained network: {kind.description})"
            )
    return configs


def _load_slices(
    config: ml_collections.ConfigDict,
    split: str,
    num_slices: int,
    slice_ids: Sequence[str],
) -> SliceBatch:
    """The first `num_slices` slices of the split, or those named (in order)."""
    if not slice_ids and num_slices < 1:
        raise GradcamError(f"num_slices must be at least 1, got {num_slices}")
    try:
        return inference.load_split(
            config,
            split,
            slice_ids=slice_ids,
            limit=None if slice_ids else num_slices,
        )
    except KeyError as e:  # a named slice is not in the split
        raise GradcamError(e.args[0]) from None
    except ValueError as e:  # the split is empty
        raise GradcamError(str(e)) from None


def _write_figures(
    batch: SliceBatch,
    per_experiment: list[list[Explanation]],
    output_dir: str,
    method: str,
    frame_period_ms: float,
) -> list[str]:
    tag = gradcam.METHOD_TAGS[method]
    paths = []
    for i in range(len(batch)):
        subject, slice_id = batch.subject_id[i], batch.slice_id[i]
        frames = batch.num_frames[i]
        paths.append(
            gradcam_overlay.plot_gradcam(
                batch.strain[i, :, :frames],
                [p for exps in per_experiment for p in panels(exps[i])],
                path=figure_path(output_dir, subject, slice_id, tag),
                true_tos=batch.true_tos[i] if batch.has_tos[i] else None,
                scar_fraction=batch.scar[i] if batch.has_scar[i] else None,
                title=f"{subject} / {slice_id} ({method})",
                frame_period_ms=frame_period_ms,
            )
        )
    return paths


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


def _write_results(
    per_experiment: list[list[Explanation]], output_dir: str, method: str, split: str
) -> tuple[str, str]:
    """The maps (npz) and the targets (json); returns their paths."""
    tag = gradcam.METHOD_TAGS[method]
    explanations = [e for exps in per_experiment for e in exps]
    maps = {
        f"{e.experiment}/{e.slice_id}/{head}": cam
        for e in explanations
        for head, cam in e.cams.items()
    }
    maps_path = atomic.write_npz(os.path.join(output_dir, f"gradcam_{tag}.npz"), maps)
    targets: dict[str, dict] = {e.experiment: {} for e in explanations}
    for e in explanations:
        targets[e.experiment][e.slice_id] = _target_record(e)
    targets_path = os.path.join(output_dir, f"targets_{tag}.json")
    atomic.write_json(
        targets_path, {"method": method, "split": split, "slices": targets}
    )
    return maps_path, targets_path


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
      GradcamError: a kind without a network (the classical detector), an
        unknown slice id, or no slices.
      UsageError: a directory that is not a trained run.
    """
    if method not in gradcam.METHODS:
        raise UsageError(
            f"method must be one of {list(gradcam.METHODS)}, got {method!r}"
        )
    if not model_dirs:
        raise UsageError("no model directory given")
    configs = _load_configs(model_dirs, records_dir)
    names = _experiment_names(configs, model_dirs)
    batch = _load_slices(configs[0], split, num_slices, slice_ids)
    per_experiment: list[list[Explanation]] = []
    for c, d, name in zip(configs, model_dirs, names):
        mine = batch
        if not _same_inputs(c, configs[0]):
            mine = _load_slices(c, split, 0, batch.slice_id)
        model = run_dir.restore_best(c, d)
        per_experiment.append(explain(model, mine, c.model.kind, method, name))

    os.makedirs(output_dir, exist_ok=True)
    period = float(configs[0].data.frame_period_ms)
    paths = _write_figures(batch, per_experiment, output_dir, method, period)
    maps_path, targets_path = _write_results(per_experiment, output_dir, method, split)
    return {
        "figures": paths,
        "maps": maps_path,
        "targets": targets_path,
        "experiments": names,
    }
