"""Per-sector uncertainty: ensembles of prediction CSVs, MC dropout, confidence rules.

A pacing decision needs to know how sure the model is. Several predictions
of the same inputs (N seeds, k folds: several prediction CSVs; or repeated
MC-dropout passes of one network) become, per sector,

  - TOS: the median regressed TOS over the members,
  - P(LMA): the mean probability over the members,
  - combined TOS: `rules.combine_tos` of those two (the paper's rule applied
    to the ensemble),
  - a 90 % interval of the combined TOS: the 5th to 95th percentile of the
    members' own combined TOS, widened where needed to hold the point value.

A single CSV is an ensemble of one: its interval has no width and says
nothing. The low-confidence rules (`PROBABILITY_MARGIN`,
`WIDE_INTERVAL_MS`) are applied per segment by `lma_tf.decision.segments`.
Numpy only (MC dropout imports Keras when called). See docs/decision.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lma_tf import constants, rules
from lma_tf.decision.orientation import Orientation
from lma_tf.serving import prediction_csv
from lma_tf.serving.prediction_csv import PredictedSlice

INTERVAL = (5.0, 95.0)  # percentiles of the reported 90 % TOS interval
# A sector's call is uncertain when P(LMA) is this close to the threshold.
PROBABILITY_MARGIN = 0.15
# ... and a segment is low-confidence when at least this share of its
# sectors is uncertain,
UNCERTAIN_SHARE = 0.5
# ... or when the median width of its sectors' 90 % TOS intervals exceeds
# two frames.
WIDE_INTERVAL_MS = 2.0 * constants.DEFAULT_FRAME_PERIOD_MS


class EnsembleError(ValueError):
    """The members of an ensemble do not describe the same slices."""


@dataclasses.dataclass
class EnsembleSlice:
    """One slice's aggregated prediction: (126,) arrays, NaN where missing.

    `tos_lo_ms` / `tos_hi_ms` bound the 90 % interval of the combined TOS;
    `probability_std` is the spread of P(LMA) over the members (0 for one);
    `orientation` is the slice's own sector orientation when its data carry
    one (`slice_orientation`), else None.
    """

    subject_id: str
    slice_id: str
    slice_location: float | None
    tos_ms: np.ndarray
    lma_probability: np.ndarray
    combined_tos_ms: np.ndarray
    tos_lo_ms: np.ndarray
    tos_hi_ms: np.ndarray
    probability_std: np.ndarray
    num_members: int = 1
    true_tos_ms: np.ndarray | None = None
    scar_fraction: np.ndarray | None = None
    orientation: Orientation | None = None

    @property
    def location(self) -> float | None:
        """`slice_location`, under the name `lma_tf.viz.aha.ring_heights` reads."""
        return self.slice_location

    @property
    def interval_width_ms(self) -> np.ndarray:
        """(126,) width of the 90 % combined-TOS interval."""
        return self.tos_hi_ms - self.tos_lo_ms


def summarise_members(
    tos_ms: np.ndarray, probability: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-sector summary of M members' TOS and P(LMA), arrays (M, ...).

    Returns a dict of arrays shaped like one member: `tos_ms` (median),
    `lma_probability` (mean), `combined_tos_ms`, `tos_lo_ms`, `tos_hi_ms`,
    `probability_std`. NaN members of a sector are ignored; a sector NaN in
    every member stays NaN.
    """
    tos = np.asarray(tos_ms, np.float64)
    prob = np.asarray(probability, np.float64)
    if tos.shape != prob.shape or tos.ndim < 1:
        raise ValueError(f"TOS {tos.shape} and probability {prob.shape} differ")
    finite = np.isfinite(tos) & np.isfinite(prob)
    tos = np.where(finite, tos, np.nan)
    prob = np.where(finite, prob, np.nan)
    empty = ~finite.any(axis=0)
    members = np.where(finite, rules.combine_tos(tos, prob), np.nan)
    (median,) = _nan_quantiles(tos, (50.0,))
    lo, hi = _nan_quantiles(members, INTERVAL)
    count = np.maximum(finite.sum(axis=0), 1)
    mean_p = np.where(empty, np.nan, np.nansum(prob, axis=0) / count)
    var_p = np.nansum((prob - mean_p) ** 2, axis=0) / count
    std_p = np.where(empty, np.nan, np.sqrt(var_p))
    point = np.where(empty, np.nan, rules.combine_tos(median, mean_p))
    return {
        "tos_ms": median,
        "lma_probability": mean_p,
        "combined_tos_ms": point,
        "tos_lo_ms": np.fmin(lo, point),
        "tos_hi_ms": np.fmax(hi, point),
        "probability_std": std_p,
    }


# The per-slice orientation columns of a prediction CSV, when it has them.
ORIENTATION_FIELDS = (
    "orientation_sector0",
    "orientation_offset",
    "orientation_direction",
)


def slice_orientation(s) -> Orientation | None:
    """A predicted slice's own orientation, from its `orientation_*` fields.

    None when the slice does not carry them (today's prediction CSV), so the
    caller's orientation (the command's flags) applies.

    Raises:
      ValueError: the fields are there but do not make an orientation.
    """
    values = [getattr(s, f, None) for f in ORIENTATION_FIELDS]
    if all(v is None or v == "" for v in values):
        return None
    sector0, offset, direction = values
    try:
        return Orientation(sector0, float(offset), direction)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"slice {s.slice_id!r} of subject {s.subject_id!r}: bad orientation "
            f"{values}: {e}"
        ) from None


def _nan_quantiles(x: np.ndarray, percents) -> list[np.ndarray]:
    """Percentiles over axis 0 ignoring NaN (linear, as np.nanpercentile).

    Vectorised over the other axes: np.nanpercentile loops over sectors in
    Python, which made a cohort take seconds per subject.
    """
    s = np.sort(x, axis=0)  # NaN sorts last
    last = np.maximum(np.isfinite(x).sum(axis=0) - 1, 0)
    out = []
    for q in percents:
        pos = q / 100.0 * last
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        a = np.take_along_axis(s, lo[None], axis=0)[0]
        b = np.take_along_axis(s, hi[None], axis=0)[0]
        out.append(a + (b - a) * (pos - lo))
    return out


def _same_labels(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(a, b, equal_nan=True, atol=1e-3))


def aggregate(
    members: Sequence[Sequence[PredictedSlice]], names: Sequence[str] | None = None
) -> list[EnsembleSlice]:
    """Aggregates the predictions of several models for the same slices.

    `members[m]` is one model's slices (one prediction CSV); `names[m]` names
    it in errors. The slices come back in the first member's order.

    Raises:
      EnsembleError: a member lacks a slice another has, or the members
        disagree on a slice's location, labels or orientation (not the
        same inputs).
    """
    if not members:
        raise EnsembleError("no predictions to aggregate")
    names = list(names or [f"member {m}" for m in range(len(members))])
    keyed = [{(s.subject_id, s.slice_id): s for s in member} for member in members]
    first = keyed[0]
    for name, k in zip(names[1:], keyed[1:]):
        missing = [key for key in first if key not in k]
        extra = [key for key in k if key not in first]
        if missing or extra:
            key, where = (missing[0], name) if missing else (extra[0], names[0])
            raise EnsembleError(
                f"{where}: no slice {key[1]!r} of subject {key[0]!r} "
                f"({len(missing) + len(extra)} slice(s) differ): the ensemble's "
                "prediction CSVs must cover the same inputs"
            )
    out = []
    for key, s0 in first.items():
        group = [k[key] for k in keyed]
        for name, s in zip(names[1:], group[1:]):
            same = s.slice_location == s0.slice_location
            same = same and _same_labels(s.true_tos_ms, s0.true_tos_ms)
            same = same and _same_labels(s.scar_fraction, s0.scar_fraction)
            same = same and slice_orientation(s) == slice_orientation(s0)
            if not same:
                raise EnsembleError(
                    f"{name}: slice {key[1]!r} of subject {key[0]!r} has another "
                    f"location, labels or orientation than in {names[0]}: not the same "
                    "inputs"
                )
        summary = summarise_members(
            np.stack([s.tos_ms for s in group]),
            np.stack([s.lma_probability for s in group]),
        )
        out.append(
            EnsembleSlice(
                subject_id=s0.subject_id,
                slice_id=s0.slice_id,
                slice_location=s0.slice_location,
                num_members=len(group),
                true_tos_ms=s0.true_tos_ms,
                scar_fraction=s0.scar_fraction,
                orientation=slice_orientation(s0),
                **summary,
            )
        )
    return out


def as_ensemble(
    slices: Sequence[PredictedSlice | EnsembleSlice],
) -> list[EnsembleSlice]:
    """Slices of one prediction CSV as an ensemble of one (already aggregated: as is).

    A single CSV keeps its own combined TOS (the model's), not a recomputed one.
    """
    out = []
    for s in slices:
        if isinstance(s, EnsembleSlice):
            out.append(s)
            continue
        (e,) = aggregate([[s]])
        e.combined_tos_ms = np.asarray(s.combined_tos_ms, np.float64)
        e.tos_lo_ms = np.fmin(e.tos_lo_ms, e.combined_tos_ms)
        e.tos_hi_ms = np.fmax(e.tos_hi_ms, e.combined_tos_ms)
        out.append(e)
    return out


def read_ensemble(
    paths: Sequence[str],
    temperature: float = 1.0,
    calibrator=None,
    interval=None,
) -> list[EnsembleSlice]:
    """Reads one or more prediction CSVs of the same inputs and aggregates them.

    `temperature` rescales every member's P(LMA) first
    (`lma_tf.decision.calibration.apply_temperature`), or `calibrator` (a
    `calibration.Calibrator` fitted by `lma-tf evaluate`) maps it; the
    combined TOS is then recomputed from the new probability. `interval` (an
    `intervals.ConformalInterval`) gives a single CSV, whose own interval has
    no width, the constant-width 90 % interval fitted on the validation
    split; an ensemble keeps its members' spread.

    Raises:
      prediction_csv.PredictionCsvError: a file is not a prediction CSV.
      EnsembleError: the files do not hold the same slices.
    """
    from lma_tf.decision import calibration

    if calibrator is None and temperature != 1.0:
        calibrator = calibration.Calibrator("temperature", temperature)
    members = []
    for path in paths:
        slices = prediction_csv.read(path)
        if calibrator is not None and calibrator.method != "none":
            for s in slices:
                s.lma_probability = calibrator(s.lma_probability)
                s.combined_tos_ms = rules.combine_tos(s.tos_ms, s.lma_probability)
        members.append(slices)
    if len(members) > 1:
        return aggregate(members, list(paths))
    out = as_ensemble(members[0])
    if interval is not None:
        rule = interval.constant()
        for e in out:
            e.tos_lo_ms, e.tos_hi_ms = rule.bounds(e.combined_tos_ms)
    return out


def sector_uncertain(probability: np.ndarray) -> np.ndarray:
    """Whether each sector's P(LMA) lies within PROBABILITY_MARGIN of the threshold."""
    p = np.asarray(probability, np.float64)
    return np.abs(p - rules.LMA_THRESHOLD) < PROBABILITY_MARGIN


def mc_dropout(
    model, strain: np.ndarray, num_samples: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """MC dropout: `num_samples` stochastic passes of a Keras network.

    `strain` is a batch already shaped for the model's `strain` input
    (`lma_tf.data.preprocess.fit_to_model`, then `pad_sectors` to
    `data.num_sectors`). Every pass runs with `training=True`, so dropout
    stays on; batch normalisation is held in inference mode (its layers are
    made non-trainable for the passes, and their moving statistics are
    restored after), so only dropout varies. Returns (num_samples, batch,
    126) arrays, the sector padding dropped: TOS floored at 17 ms and P(LMA)
    (from the LMA head, or from TOS for a model without one). Feed them to
    `summarise_members` for the median, mean and 90 % interval.
    """
    import keras

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    norms = [
        layer
        for layer in _all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    saved = [(layer, layer.trainable) for layer in norms]
    stats = [np.array(v) for layer in norms for v in layer.non_trainable_weights]
    tos_samples, prob_samples = [], []
    try:
        for layer in norms:
            layer.trainable = False
        x = np.asarray(strain, np.float32)
        for _ in range(num_samples):
            out = model(x, training=True)
            n = constants.NUM_SECTORS  # padding sectors come last
            tos = rules.floor_tos(np.asarray(out["tos"], np.float64)[:, :n])
            if "lma" in out:
                prob = rules.lma_probability(np.asarray(out["lma"])[:, :n])
            else:
                prob = rules.lma_from_tos(tos).astype(np.float64)
            tos_samples.append(tos)
            prob_samples.append(prob)
    finally:
        for layer, trainable in saved:
            layer.trainable = trainable
        variables = [v for layer in norms for v in layer.non_trainable_weights]
        for v, value in zip(variables, stats):
            v.assign(value)
    return np.stack(tos_samples), np.stack(prob_samples)


def _all_layers(layer) -> list:
    """Every layer inside `layer`, nested models included (depth first)."""
    out = []
    for child in getattr(layer, "layers", []):
        out.append(child)
        out.extend(_all_layers(child))
    return out


def has_dropout(model) -> bool:
    """Whether a Keras network has a dropout layer with a rate above 0.

    Without one, `mc_dropout`'s passes are all the same and say nothing.
    """
    for layer in _all_layers(model):
        if (
            float(getattr(layer, "rate", 0.0) or 0.0) > 0
            and "dropout" in type(layer).__name__.lower()
        ):
            return True
    return False
