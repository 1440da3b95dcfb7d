"""Calibration of P(LMA): temperature scaling, isotonic regression, ECE, coverage.

A probability is useful to a clinician only if 0.8 means "right 8 times in
10". Functions take flat or shaped arrays; `weight` (same shape, optional)
is 0 where a sector does not count (missing, padded), and NaN probabilities
or labels never count.

  - Temperature scaling: P = sigmoid(z / T) for the binary logit z = z1 - z0
    of the two-class LMA head (or logit(p) of a stored probability); T is
    fitted by minimising the negative log-likelihood on the validation split
    (`fit_temperature`). T > 1 softens an over-confident model.
  - Isotonic regression: a monotone map p -> frequency (`fit_isotonic`),
    more flexible, needs more data.
  - ECE: the weighted mean over 15 equal-width bins of P(LMA) of
    |mean P - observed LMA frequency| (`ece`; `reliability` gives the bins
    for the diagram).
  - `select_calibrator`: temperature or isotonic, chosen by cross-fitted ECE
    on the validation split; a `Calibrator` carries the choice to the report.
  - Interval coverage: the share of true TOS inside the reported 90 %
    interval (`interval_coverage`); about 0.9 when the interval is honest.

Numpy and scipy only. See docs/decision.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_BINS = 15
_P_CLIP = 1e-6  # a stored probability of exactly 0 or 1 has no finite logit
TEMPERATURE_BOUNDS = (0.05, 20.0)


def binary_logit(logits) -> np.ndarray:
    """z1 - z0 of two-class logits (N..., 2); any other array is taken as z already.

    Two-class logits need at least two axes, so a flat array of two binary
    logits is not mistaken for one pair.
    """
    z = np.asarray(logits, np.float64)
    return z[..., 1] - z[..., 0] if z.ndim >= 2 and z.shape[-1] == 2 else z


def logits_from_probability(probability) -> np.ndarray:
    """log(p / (1 - p)), p clipped to [1e-6, 1 - 1e-6]; NaN stays NaN."""
    p = np.clip(np.asarray(probability, np.float64), _P_CLIP, 1.0 - _P_CLIP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """P(LMA) = sigmoid(z / T) from two-class logits (..., 2) or binary logits."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return _sigmoid(binary_logit(logits) / temperature)


def rescale_probability(probability, temperature: float) -> np.ndarray:
    """A stored P(LMA) with temperature `temperature` applied to its logit."""
    return apply_temperature(logits_from_probability(probability), temperature)


def _flat(values, labels, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened (values, labels, weights) of the samples that count."""
    v = np.asarray(values, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    if weight is None:
        w = np.ones_like(v)
    else:
        w = np.asarray(weight, np.float64)
        w = np.broadcast_to(w, np.shape(values)).reshape(-1)
    if y.shape != v.shape:
        raise ValueError(f"labels {y.shape} and values {v.shape} differ in size")
    ok = np.isfinite(v) & np.isfinite(y) & np.isfinite(w) & (w > 0)
    if np.any((y[ok] != 0) & (y[ok] != 1)):
        raise ValueError("labels must be 0 or 1")
    return v[ok], y[ok], w[ok]


def nll(logits, labels, temperature: float = 1.0, weight=None) -> float:
    """Weighted mean negative log-likelihood of sigmoid(z / T) for 0/1 labels."""
    z, y, w = _flat(binary_logit(logits), labels, weight)
    if not w.size:
        return float("nan")
    s = z / temperature
    # -log sigmoid(s) = logaddexp(0, -s); -log(1 - sigmoid(s)) = logaddexp(0, s)
    loss = np.where(y == 1, np.logaddexp(0.0, -s), np.logaddexp(0.0, s))
    return float(np.sum(w * loss) / np.sum(w))


def fit_temperature(logits, labels, weight=None) -> float:
    """The temperature minimising the NLL of the labels (validation split).

    Searched on log T within TEMPERATURE_BOUNDS (bounded Brent).

    Raises:
      ValueError: no sample counts, or the labels hold only one class (any
        temperature towards 0 would then do).
    """
    from scipy import optimize

    z, y, w = _flat(binary_logit(logits), labels, weight)
    if not w.size:
        raise ValueError("no labelled sample to fit a temperature on")
    if y.min() == y.max():
        raise ValueError("the labels hold one class only: no temperature to fit")
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    res = optimize.minimize_scalar(
        lambda t: nll(z, y, float(np.exp(t)), w),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(res.x))


@dataclasses.dataclass(frozen=True)
class IsotonicCalibrator:
    """A monotone map of P(LMA): flat within fitted blocks, linear between."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, probability) -> np.ndarray:
        p = np.asarray(probability, np.float64)
        out = np.interp(p, self.x, self.y)
        return np.where(np.isfinite(p), out, np.nan)


def fit_isotonic(probability, labels, weight=None) -> IsotonicCalibrator:
    """Pool-adjacent-violators fit of the observed frequency against P(LMA).

    Raises:
      ValueError: no sample counts.
    """
    p, y, w = _flat(probability, labels, weight)
    if not w.size:
        raise ValueError("no labelled sample to fit an isotonic map on")
    xs, inverse = np.unique(p, return_inverse=True)
    sw = np.bincount(inverse, weights=w)
    swy = np.bincount(inverse, weights=w * y)
    blocks: list[list[float]] = []  # [sum w*y, sum w, first x, last x]
    for i in range(xs.size):
        blocks.append([swy[i], sw[i], xs[i], xs[i]])
        while len(blocks) > 1 and (
            blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]
        ):
            b = blocks.pop()
            blocks[-1][0] += b[0]
            blocks[-1][1] += b[1]
            blocks[-1][3] = b[3]
    x = np.array([v for b in blocks for v in (b[2], b[3])])
    y_fit = np.array([b[0] / b[1] for b in blocks for _ in (0, 1)])
    return IsotonicCalibrator(x, y_fit)


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Per-bin calibration: (num_bins,) arrays; NaN where a bin is empty.

    Attributes:
      edges: (num_bins + 1,) bin edges on [0, 1].
      weight: total weight (sector count when unweighted) per bin.
      mean_probability: mean P(LMA) in the bin.
      frequency: observed share of LMA labels in the bin.
    """

    edges: np.ndarray
    weight: np.ndarray
    mean_probability: np.ndarray
    frequency: np.ndarray

    @property
    def ece(self) -> float:
        total = float(self.weight.sum())
        if total <= 0:
            return float("nan")
        gap = np.abs(self.mean_probability - self.frequency)
        return float(np.nansum(self.weight * gap) / total)


def reliability(
    probability, labels, weight=None, num_bins: int = NUM_BINS
) -> Reliability:
    """Equal-width bins of P(LMA) with their mean probability and frequency."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    p, y, w = _flat(probability, labels, weight)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    idx = np.minimum((p * num_bins).astype(np.int64), num_bins - 1)
    sw = np.bincount(idx, weights=w, minlength=num_bins)
    swp = np.bincount(idx, weights=w * p, minlength=num_bins)
    swy = np.bincount(idx, weights=w * y, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(sw > 0, swp / sw, np.nan)
        freq = np.where(sw > 0, swy / sw, np.nan)
    return Reliability(np.linspace(0.0, 1.0, num_bins + 1), sw, mean_p, freq)


def ece(probability, labels, weight=None, num_bins: int = NUM_BINS) -> float:
    """Expected calibration error of P(LMA) over `num_bins` equal-width bins.

    NaN when no sample counts.
    """
    return reliability(probability, labels, weight, num_bins).ece


def interval_coverage(true_values, lo, hi, weight=None) -> float:
    """Weighted share of `true_values` inside [lo, hi]; NaN when none counts."""
    t = np.asarray(true_values, np.float64)
    inside = (t >= np.asarray(lo, np.float64)) & (t <= np.asarray(hi, np.float64))
    ok = np.isfinite(t) & np.isfinite(lo) & np.isfinite(hi)
    w = np.ones_like(t) if weight is None else np.broadcast_to(weight, t.shape)
    w = np.where(ok, w, 0.0)
    total = float(np.sum(w))
    return float(np.sum(w * inside) / total) if total > 0 else float("nan")


CALIBRATION_METHODS = ("temperature", "isotonic", "none")


@dataclasses.dataclass(frozen=True)
class Calibrator:
    """A fitted map of P(LMA): temperature scaling, isotonic, or none (identity).

    What `lma-tf evaluate` fits on the validation split and writes into
    metrics.json (`to_dict`), and what `lma-tf report --calibration` reads
    back (`from_dict`).
    """

    method: str = "none"
    temperature: float = 1.0
    isotonic: IsotonicCalibrator | None = None

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(
                f"method must be one of {CALIBRATION_METHODS}, got {self.method!r}"
            )
        if self.method == "isotonic" and self.isotonic is None:
            raise ValueError("an isotonic calibrator needs its map")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def __call__(self, probability) -> np.ndarray:
        p = np.asarray(probability, np.float64)
        if self.method == "temperature":
            return np.where(np.isfinite(p), rescale_probability(p, self.temperature), p)
        if self.method == "isotonic":
            return self.isotonic(p)
        return p

    def to_dict(self) -> dict:
        """JSON-ready: {"method", "temperature"} or {"method", "isotonic_x/y"}."""
        out: dict = {"method": self.method}
        if self.method == "temperature":
            out["temperature"] = float(self.temperature)
        if self.method == "isotonic":
            out["isotonic_x"] = [round(float(v), 6) for v in self.isotonic.x]
            out["isotonic_y"] = [round(float(v), 6) for v in self.isotonic.y]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        """The inverse of `to_dict` (other keys ignored).

        Raises:
          ValueError: an unknown method or a bad parameter.
        """
        method = d.get("method", "none")
        if method == "isotonic":
            x = np.asarray(d.get("isotonic_x", []), np.float64)
            y = np.asarray(d.get("isotonic_y", []), np.float64)
            if x.ndim != 1 or x.shape != y.shape or not x.size:
                raise ValueError("isotonic_x and isotonic_y must be equal-length lists")
            return cls("isotonic", isotonic=IsotonicCalibrator(x, y))
        return cls(method, float(d.get("temperature", 1.0)))


def _folds(groups, shape: tuple[int, ...], num_folds: int) -> np.ndarray:
    """Fold index per sample: whole groups (subjects) per fold, in sorted order."""
    g = np.asarray(groups)
    names, inverse = np.unique(g.reshape(-1), return_inverse=True)
    fold = (inverse % num_folds).reshape(g.shape)
    while fold.ndim < len(shape):
        fold = fold[..., None]
    return np.broadcast_to(fold, shape)


def select_calibrator(
    probability, labels, weight=None, groups=None, num_folds: int = 2
) -> tuple[Calibrator, dict]:
    """Fits temperature scaling, or isotonic regression where it does better.

    The choice is made on these data only (the validation split): each
    method is fitted on all folds but one and scored by the ECE of its
    out-of-fold probabilities; isotonic wins only with a lower score, and
    the winner is refitted on everything. `groups` (a subject id per slice,
    the leading axis of `probability`) keeps a subject's sectors in one
    fold; without them, or with fewer than `num_folds` groups, temperature
    scaling is used unscored. Returns (calibrator, information: the scores,
    the sector count).

    Raises:
      ValueError: no labelled sample, or the labels hold one class only.
    """
    p = np.asarray(probability, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.ones_like(p) if weight is None else np.broadcast_to(weight, p.shape)
    w = np.where(np.isfinite(p) & np.isfinite(y), np.asarray(w, np.float64), 0.0)
    z = logits_from_probability(p)
    info: dict = {"num_sectors": int(np.sum(w > 0))}
    final = Calibrator("temperature", fit_temperature(z, y, w))
    if groups is None or len(np.unique(np.asarray(groups))) < num_folds:
        info["selection"] = "temperature (too few subjects to compare methods)"
        return final, info
    fold = _folds(groups, p.shape, num_folds)
    oof = {
        "temperature": np.full(p.shape, np.nan),
        "isotonic": np.full(p.shape, np.nan),
    }
    try:
        for f in range(num_folds):
            fit_w = np.where(fold != f, w, 0.0)
            held = fold == f
            t = fit_temperature(z, y, fit_w)
            oof["temperature"][held] = apply_temperature(z, t)[held]
            oof["isotonic"][held] = fit_isotonic(p, y, fit_w)(p)[held]
    except ValueError as e:  # a fold with one class: keep temperature
        info["selection"] = f"temperature (methods not compared: {e})"
        return final, info
    scores = {name: ece(q, y, w) for name, q in oof.items()}
    info["cross_fitted_ece"] = scores
    if scores["isotonic"] < scores["temperature"]:
        final = Calibrator("isotonic", isotonic=fit_isotonic(p, y, w))
    info["selection"] = f"{final.method} (lower {num_folds}-fold ECE on these data)"
    return final, info
