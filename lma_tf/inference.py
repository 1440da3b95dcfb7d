"""One way to run a trained experiment over a split of the records.

Evaluation, Grad-CAM and the classical detector's fit all read a split
through `iterate_split` / `load_split` (the evaluation pipeline: resampled to
the model's frame period, cropped or padded to its window, sectors padded)
and predict through a `Predictor`, so they see the same slices, the same
frames and the same decision rules (`lma_tf.rules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np

from lma_tf import constants, rules
from lma_tf.models import registry

N = constants.NUM_SECTORS


@dataclasses.dataclass
class SliceBatch:
    """Slices of a split as the model sees them, with their labels.

    `model_input` is what the network consumes (sectors padded to
    `data.num_sectors`, frames fitted to `data.num_frames`); the other arrays
    are on the 126 real sectors. `num_frames` counts the real frames of the
    fitted strain, before its zero padding. Rows without a label have
    `has_tos` / `has_scar` False and zeros in the label arrays.
    """

    subject_id: list[str]
    slice_id: list[str]
    slice_location: np.ndarray  # (N,) mm; NaN where unknown
    model_input: np.ndarray  # (N, S, T)
    num_frames: np.ndarray  # (N,) int
    true_tos: np.ndarray  # (N, 126) ms
    true_lma: np.ndarray  # (N, 126) 0/1
    scar: np.ndarray  # (N, 126) fraction
    has_tos: np.ndarray  # (N,) bool
    has_scar: np.ndarray  # (N,) bool
    weight: np.ndarray  # (N, 126): 1 where a sector counts in a metric

    @property
    def strain(self) -> np.ndarray:
        """(N, 126, T) fitted strain on the real sectors."""
        return self.model_input[:, :N]

    def __len__(self) -> int:
        return len(self.slice_id)

    def predicted_slices(self, tos_ms: np.ndarray, lma_probability: np.ndarray) -> list:
        """These rows with a prediction, as the decision report reads them
        (`lma_tf.decision.report.predicted_slices`, labels included)."""
        from lma_tf.decision import report

        return report.predicted_slices(
            self.subject_id,
            self.slice_id,
            self.slice_location,
            tos_ms,
            lma_probability,
            self.true_tos,
            self.scar,
            self.has_tos,
            self.has_scar,
        )

    def take(self, index: np.ndarray | Sequence[int]) -> SliceBatch:
        """The rows at `index`, in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return SliceBatch(
            **{
                f.name: (
                    [getattr(self, f.name)[i] for i in idx]
                    if isinstance(getattr(self, f.name), list)
                    else getattr(self, f.name)[idx]
                )
                for f in dataclasses.fields(self)
            }
        )

    @staticmethod
    def concatenate(batches: Sequence[SliceBatch]) -> SliceBatch:
        if not batches:
            raise ValueError("no batch to concatenate")
        out = {}
        for f in dataclasses.fields(SliceBatch):
            parts = [getattr(b, f.name) for b in batches]
            if isinstance(parts[0], list):
                out[f.name] = [x for p in parts for x in p]
            else:
                out[f.name] = np.concatenate(parts)
        return SliceBatch(**out)


@dataclasses.dataclass
class Predictions:
    """What an experiment says about a batch, on the 126 real sectors."""

    tos_ms: np.ndarray | None  # (N, 126); None without a TOS head
    lma_probability: np.ndarray  # (N, 126); 0/1 when derived from TOS

    @property
    def combined_tos_ms(self) -> np.ndarray | None:
        """The paper's combined TOS (`rules.combine_tos`)."""
        if self.tos_ms is None:
            return None
        return rules.combine_tos(self.tos_ms, self.lma_probability)

    @staticmethod
    def concatenate(parts: Sequence[Predictions]) -> Predictions:
        tos = [p.tos_ms for p in parts]
        return Predictions(
            None if any(t is None for t in tos) else np.concatenate(tos),
            np.concatenate([p.lma_probability for p in parts]),
        )


Predictor = Callable[[SliceBatch], Predictions]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _to_batch(feats: dict, labels: dict, weights: dict) -> SliceBatch:
    from lma_tf.data import preprocess

    model_input = feats["strain"].numpy()
    raw_frames = feats["num_frames"].numpy()
    location = feats["slice_location"].numpy().astype(np.float64)
    location[feats["has_slice_location"].numpy() <= 0] = np.nan
    return SliceBatch(
        subject_id=[_text(x) for x in feats["subject_id"].numpy()],
        slice_id=[_text(x) for x in feats["slice_id"].numpy()],
        slice_location=location,
        model_input=model_input,
        num_frames=np.array(
            [
                preprocess.real_frames(x[:N], int(n))
                for x, n in zip(model_input, raw_frames)
            ],
            dtype=np.int64,
        ),
        true_tos=labels["tos"].numpy()[:, :N],
        true_lma=labels["lma"].numpy()[:, :N],
        scar=feats["scar"].numpy()[:, :N],
        has_tos=feats["has_tos"].numpy() > 0,
        has_scar=feats["has_scar"].numpy() > 0,
        weight=weights["tos"].numpy()[:, :N],
    )


def iterate_split(
    config: ml_collections.ConfigDict,
    split: str,
    *,
    progress: bool = False,
) -> Iterator[SliceBatch]:
    """The split's slices in batches, in the evaluation pipeline's fixed order."""
    from lma_tf.data import pipeline

    ds = pipeline.make_dataset(config, split, training=False, include_metadata=True)
    if progress:
        import tqdm

        ds = tqdm.tqdm(ds, desc=f"{config.name} {split}", unit="batch")
    for feats, labels, weights in ds:
        yield _to_batch(feats, labels, weights)


def load_split(
    config: ml_collections.ConfigDict,
    split: str,
    *,
    slice_ids: Sequence[str] = (),
    limit: int | None = None,
    progress: bool = False,
) -> SliceBatch:
    """The whole split (or the first `limit` slices, or those named) as one batch.

    Named slices come back in the order given (duplicates once).

    Raises:
      KeyError: a named slice is not in the split.
      ValueError: the split is empty.
    """
    wanted = list(dict.fromkeys(slice_ids))
    if limit is not None or wanted:
        config = ml_collections.ConfigDict(config.to_dict())
        config.data.cache = False  # we may stop early: nothing to cache
    parts, count = [], 0
    for batch in iterate_split(config, split, progress=progress):
        if wanted:
            keep = [i for i, s in enumerate(batch.slice_id) if s in wanted]
            batch = batch.take(keep)
        parts.append(batch)
        count += len(batch)
        if limit is not None and count >= limit and not wanted:
            break
        if wanted and count >= len(wanted):
            break
    if not parts or count == 0:
        if wanted:
            raise KeyError(f"slices {wanted} not in the {split!r} split")
        raise ValueError(f"the {split!r} split of {config.data.records_dir} is empty")
    out = SliceBatch.concatenate(parts)
    if wanted:
        where = {s: i for i, s in enumerate(out.slice_id)}
        missing = [s for s in wanted if s not in where]
        if missing:
            raise KeyError(f"slices {missing} not in the {split!r} split")
        return out.take([where[s] for s in wanted])
    if limit is not None:
        out = out.take(np.arange(min(limit, len(out))))
    return out


def network_predictor(model, kind: registry.ModelKind) -> Predictor:
    """Runs a Keras network of `kind`; LMA from TOS when it has no LMA head."""

    def predict(batch: SliceBatch) -> Predictions:
        out = model(batch.model_input, training=False)
        tos = np.asarray(out["tos"])[:, :N] if "tos" in out else None
        if "lma" in out:
            prob = rules.lma_probability(np.asarray(out["lma"])[:, :N])
        else:
            prob = rules.lma_from_tos(tos).astype(np.float64)
        return Predictions(tos, prob)

    return predict


def classical_predictor(params: dict) -> Predictor:
    """The onset detector on the fitted strain, over each slice's real frames."""
    from lma_tf.models import classical

    def predict(batch: SliceBatch) -> Predictions:
        tos = classical.detect_batch(batch.strain, batch.num_frames, **params)
        return Predictions(tos, rules.lma_from_tos(tos).astype(np.float64))

    return predict


def load_predictor(config: ml_collections.ConfigDict, model_dir: str) -> Predictor:
    """The predictor of the experiment trained (or fitted) in `model_dir`."""
    from lma_tf.training import run_dir

    kind = registry.get(config.model.kind)
    if not kind.is_network:
        return classical_predictor(run_dir.load_classical_params(config, model_dir))
    from lma_tf.models import test_time

    model = run_dir.restore_best(config, model_dir)
    return network_predictor(test_time.wrap(model, config), kind)


def predict_split(
    config: ml_collections.ConfigDict,
    predictor: Predictor,
    split: str,
    *,
    progress: bool = True,
) -> tuple[SliceBatch, Predictions]:
    """Every slice of `split` and the predictor's output on it."""
    batches, preds = [], []
    for batch in iterate_split(config, split, progress=progress):
        batches.append(batch)
        preds.append(predictor(batch))
    if not batches:
        raise ValueError(f"the {split!r} split of {config.data.records_dir} is empty")
    return SliceBatch.concatenate(batches), Predictions.concatenate(preds)
