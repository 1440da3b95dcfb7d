"""Honest 90 % TOS intervals: split-conformal scaling fitted on the validation split.

A raw spread (MC-dropout passes, ensemble members) tells where the model is
less sure but not how wide a 90 % interval must be: dropout spreads are
usually far too narrow. Split-conformal calibration fixes the width on
held-out data:

  score_i = |true_i - point_i| / max(spread_i, floor)     (validation sectors)
  scale   = the ceil((n + 1) * 0.9)-th smallest score
  interval = point +- scale * max(spread, floor)

so that, for new data exchangeable with the validation split, about 90 %
of true TOS fall inside. `point` is the reported combined TOS; `spread` is
half the 5-95 % range of the MC-dropout passes' regressed TOS
(`mc_spread`), and the floor is the median validation spread (so a sector
the passes agree on is not given a zero-width interval). Without a spread
(a network without dropout, the classical detector, a single prediction
CSV) every sector gets the same half-width, the residual quantile itself
(method "residual"). Numpy only. See docs/decision.md.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lma_tf import constants

LEVEL = 0.9
METHODS = ("mc_dropout_conformal", "residual_conformal")
MIN_FLOOR_MS = 0.5  # the spread floor is never below this


@dataclasses.dataclass(frozen=True)
class ConformalInterval:
    """A fitted interval rule: half-width = scale * max(spread, floor_ms).

    For "residual_conformal" the spread is 1 and the floor 1, so the
    half-width is `scale` ms everywhere. `residual_quantile_ms` is the
    constant half-width fitted on the same data, kept so that a prediction
    CSV without passes (`lma-tf report --calibration`) can still be given
    an honest interval.
    """

    method: str
    scale: float
    floor_ms: float = 1.0
    level: float = LEVEL
    residual_quantile_ms: float | None = None
    num_sectors: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"scale must be a finite number >= 0, got {self.scale}")
        if not self.floor_ms > 0:
            raise ValueError(f"floor_ms must be > 0, got {self.floor_ms}")

    def half_width(self, spread=None) -> np.ndarray | float:
        """Half-width (ms) per sector; `spread` is ignored for "residual_conformal"."""
        if self.method == "residual_conformal":
            return self.scale
        if spread is None:
            raise ValueError("an MC-dropout interval needs the passes' spread")
        s = np.asarray(spread, np.float64)
        return self.scale * np.fmax(s, self.floor_ms)

    def bounds(self, point, spread=None) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) around `point`; lo never below the 17 ms TOS floor."""
        p = np.asarray(point, np.float64)
        h = self.half_width(spread)
        return np.fmax(p - h, constants.TOS_FLOOR_MS), p + h

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "scale": float(self.scale),
            "floor_ms": float(self.floor_ms),
            "level": float(self.level),
            "residual_quantile_ms": self.residual_quantile_ms,
            "num_sectors": int(self.num_sectors),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ConformalInterval:
        """The inverse of `to_dict` (other keys ignored)."""
        q = d.get("residual_quantile_ms")
        return cls(
            d["method"],
            float(d["scale"]),
            float(d.get("floor_ms", 1.0)),
            float(d.get("level", LEVEL)),
            None if q is None else float(q),
            int(d.get("num_sectors", 0)),
        )

    def constant(self) -> ConformalInterval:
        """The constant-width rule of the same fit (for data without a spread)."""
        if self.method == "residual_conformal":
            return self
        if self.residual_quantile_ms is None:
            raise ValueError("this interval has no constant-width fallback")
        return ConformalInterval(
            "residual_conformal",
            self.residual_quantile_ms,
            1.0,
            self.level,
            self.residual_quantile_ms,
            self.num_sectors,
        )


def conformal_quantile(scores, level: float = LEVEL) -> float:
    """The ceil((n + 1) * level)-th smallest finite score (the largest if beyond n).

    Raises:
      ValueError: no finite score, or `level` outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.sort(np.asarray(scores, np.float64).reshape(-1))
    s = s[np.isfinite(s)]
    if not s.size:
        raise ValueError("no sector to fit an interval on")
    k = min(math.ceil((s.size + 1) * level), s.size)
    return float(s[k - 1])


def mc_spread(tos_samples) -> np.ndarray:
    """Half the 5-95 % range of passes' TOS (passes on axis 0), per sector."""
    t = np.asarray(tos_samples, np.float64)
    lo, hi = np.percentile(t, [5.0, 95.0], axis=0)
    return 0.5 * (hi - lo)


def _selected(true_ms, point_ms, weight) -> np.ndarray:
    t = np.asarray(true_ms, np.float64)
    ok = np.isfinite(t) & np.isfinite(np.asarray(point_ms, np.float64))
    if weight is not None:
        ok &= np.broadcast_to(np.asarray(weight, np.float64), t.shape) > 0
    return ok


def fit(
    true_ms, point_ms, spread=None, weight=None, level: float = LEVEL
) -> ConformalInterval:
    """Fits the interval rule on labelled (validation) sectors.

    With `spread` (MC-dropout, arrays shaped like `true_ms`): method
    "mc_dropout_conformal", floor = the median spread of the counted
    sectors (at least MIN_FLOOR_MS). Without: "residual_conformal". Either
    way the constant residual quantile is kept too. Sectors with weight 0 or
    a NaN do not count.

    Raises:
      ValueError: no sector counts.
    """
    t = np.asarray(true_ms, np.float64)
    p = np.asarray(point_ms, np.float64)
    ok = _selected(t, p, weight)
    residual = np.abs(t - p)[ok]
    q = conformal_quantile(residual, level)
    if spread is None:
        return ConformalInterval("residual_conformal", q, 1.0, level, q, residual.size)
    s = np.broadcast_to(np.asarray(spread, np.float64), t.shape)[ok]
    floor = max(float(np.median(s)) if s.size else 0.0, MIN_FLOOR_MS)
    scale = conformal_quantile(residual / np.fmax(s, floor), level)
    return ConformalInterval(
        "mc_dropout_conformal", scale, floor, level, q, residual.size
    )
