"""The signal model of the synthetic cohort: TOS, scar and strain over the ring.

Deterministic functions of their arguments (noise comes from the caller's
generator), numpy + scipy only; `synthetic.py` samples subjects with them.

Sector convention (used for every array indexed by sector here):
  sectors 0..125 run counterclockwise (viewed from the apex) from the anterior
  RV insertion point, 7 sectors per segment of 18. The septum is sectors 0-41
  (anteroseptal -> inferoseptal, centre 21), the inferior wall 42-62, the
  lateral wall 63-104 (inferolateral -> anterolateral, centre 84) and the
  anterior wall 105-125. Index 125 wraps round to 0.

Time convention: frame j (0-based) is at t = (j + 1) x frame period, so a TOS
of 17 ms is the first frame, as in the data contract (docs/data.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lma_tf import constants

NUM_SECTORS = constants.NUM_SECTORS
FRAME_PERIOD_MS = constants.DEFAULT_FRAME_PERIOD_MS
TOS_FLOOR_MS = constants.TOS_FLOOR_MS


@dataclasses.dataclass(frozen=True)
class Bump:
    """One late-activation region: a raised-cosine bump of TOS over the ring.

    Attributes:
      centre: sector at the peak (float, circular).
      width: support in sectors (TOS is raised on `width` sectors around it).
      peak_ms: TOS at the centre, ms.
    """

    centre: float
    width: float
    peak_ms: float


# ---------------------------------------------------------------------------
# Spatial profiles over the ring of sectors.


def circular_distance(centre: float, num_sectors: int = NUM_SECTORS) -> np.ndarray:
    """Signed distance in sectors from `centre` to every sector, in [-n/2, n/2)."""
    sectors = np.arange(num_sectors, dtype=np.float64)
    half = num_sectors / 2.0
    return np.mod(sectors - centre + half, num_sectors) - half


def raised_cosine(
    centre: float, width: float, num_sectors: int = NUM_SECTORS
) -> np.ndarray:
    """Circular bump, 1 at `centre`, 0 outside `width` sectors (compact support)."""
    d = circular_distance(centre, num_sectors)
    half_width = width / 2.0
    inside = np.abs(d) < half_width
    return np.where(inside, 0.5 * (1.0 + np.cos(np.pi * d / half_width)), 0.0)


def tos_profile(bumps: Sequence[Bump], num_sectors: int = NUM_SECTORS) -> np.ndarray:
    """TOS per sector (ms): 17 ms baseline raised by the bumps (max where they meet).

    Overlapping bumps take the later of the two, so a sector's TOS never
    exceeds the largest peak.
    """
    tos = np.full(num_sectors, TOS_FLOOR_MS)
    for b in bumps:
        tos = np.maximum(
            tos,
            TOS_FLOOR_MS
            + (b.peak_ms - TOS_FLOOR_MS)
            * raised_cosine(b.centre, b.width, num_sectors),
        )
    return tos


def scar_profile(
    centre: float,
    core_length: int,
    core_value: float,
    border: int,
    num_sectors: int = NUM_SECTORS,
) -> np.ndarray:
    """Scar fraction per sector: a contiguous core with a soft border.

    The core is exactly `core_length` sectors at or above 0.5 (dome-shaped,
    `core_value` at the centre, at least 0.5 at its edges); on each side
    `border` sectors fall from 0.45 towards 0, so the number of scar sectors
    (fraction >= 0.5) is exactly `core_length`.
    """
    core_value = float(np.clip(core_value, constants.SCAR_THRESHOLD, 1.0))
    start = int(round(centre - core_length / 2.0))
    frac = np.zeros(num_sectors)
    for k in range(core_length):
        # Dome: core_value at the middle, 0.5 + 0.3 * (core_value - 0.5) at edges.
        x = (k + 0.5) / core_length
        dome = 0.7 + 0.3 * math.sin(math.pi * x)
        value = 0.5 + (core_value - 0.5) * dome
        frac[(start + k) % num_sectors] = value
    for k in range(1, border + 1):
        value = 0.45 * (1.0 - (k - 1) / border)
        frac[(start - k) % num_sectors] = value
        frac[(start + core_length - 1 + k) % num_sectors] = value
    return frac


def smooth_circular_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Unit-std gaussian noise over the ring, smoothed circularly."""
    x = ndimage.gaussian_filter1d(rng.standard_normal(NUM_SECTORS), sigma, mode="wrap")
    return x / max(float(x.std()), 1e-12)


def scar_blend_weight(scar_fraction: np.ndarray) -> np.ndarray:
    """How passive a sector's strain is: 0 healthy, 1 from scar fraction 0.5 up.

    A smoothstep over [0, 0.5], so the border zone shortens partially.
    """
    x = np.clip(np.asarray(scar_fraction, np.float64) / constants.SCAR_THRESHOLD, 0, 1)
    return x * x * (3.0 - 2.0 * x)


# ---------------------------------------------------------------------------
# Temporal model.


def sin2_window(t: np.ndarray, start: float, stop: float) -> np.ndarray:
    """sin^2 bump: 0 outside [start, stop], 1 in the middle."""
    x = np.clip((t - start) / max(stop - start, 1e-6), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def strain_from_tos(
    tos_ms: np.ndarray,
    num_frames: int,
    frame_period_ms: float = FRAME_PERIOD_MS,
    *,
    peak_strain: float | np.ndarray = -0.19,
    prestretch: float | np.ndarray = 0.0,
    shortening_ms: float | np.ndarray = 200.0,
    residual: float = 0.1,
    septal_flash: np.ndarray | None = None,
    flash_ms: float = 100.0,
    rebound: float = 0.0,
    rebound_end_ms: float = 250.0,
    scar_weight: np.ndarray | None = None,
    passive_stretch: float = 0.02,
    passive_end_ms: float = 400.0,
) -> np.ndarray:
    """Noise-free (126, F) Ecc for given onset times; fractional, negative = shortening.

    Per sector: optional pre-stretch rising to `prestretch` at the onset
    (late sectors are stretched by earlier ones), smooth shortening from the
    onset to `peak_strain` over `shortening_ms`, then relaxation to
    `residual` x peak by the last frame. `septal_flash` (per-sector depth,
    >= 0) adds an early brief shortening over `flash_ms` from the first frame
    and a rebound stretch of `rebound` x the same weights ending at
    `rebound_end_ms`. `scar_weight` in [0, 1] blends each sector towards a
    passive curve (a small stretch of `passive_stretch` ending at
    `passive_end_ms`): 1 = no active shortening at all.
    """
    n = np.asarray(tos_ms).shape[0]
    t = frame_period_ms * np.arange(1, num_frames + 1, dtype=np.float64)
    t_end = t[-1]
    t0 = np.asarray(tos_ms, dtype=np.float64)[:, None]
    amp = np.broadcast_to(np.asarray(peak_strain, np.float64), (n,))[:, None]
    pre = np.broadcast_to(np.asarray(prestretch, np.float64), (n,))[:, None]
    dur = np.broadcast_to(np.asarray(shortening_ms, np.float64), (n,))[:, None]
    # Shortening must peak before the end, leaving room to relax.
    dur = np.clip(np.minimum(dur, 0.55 * (t_end - t0)), frame_period_ms, None)
    t_peak = t0 + dur

    rise = 0.5 * (1.0 - np.cos(np.pi * np.clip(t / t0, 0.0, 1.0)))
    pre_phase = pre * rise
    g = 0.5 * (1.0 - np.cos(np.pi * np.clip((t - t0) / dur, 0.0, 1.0)))
    short_phase = pre + (amp - pre) * g
    relax_len = np.maximum(t_end - t_peak, frame_period_ms)
    x_rel = np.clip((t - t_peak) / relax_len, 0.0, 1.0)
    relax_phase = amp * (
        residual + (1.0 - residual) * 0.5 * (1.0 + np.cos(np.pi * x_rel))
    )
    strain = np.where(
        t <= t0, pre_phase, np.where(t <= t_peak, short_phase, relax_phase)
    )

    if septal_flash is not None:
        first = frame_period_ms
        flash = -sin2_window(t, first, first + flash_ms)
        back = sin2_window(
            t, first + 0.6 * flash_ms, max(rebound_end_ms, first + flash_ms)
        )
        strain = (
            strain
            + np.asarray(septal_flash, np.float64)[:, None]
            * (flash + rebound * back)[None, :]
        )
    if scar_weight is not None:
        w = np.asarray(scar_weight, np.float64)[:, None]
        passive = passive_stretch * sin2_window(
            t, frame_period_ms, min(passive_end_ms, t_end)
        )
        strain = (1.0 - w) * strain + w * passive[None, :]
    return strain


def add_smooth_noise(
    strain: np.ndarray,
    rng: np.random.Generator,
    std: float = 0.01,
    sector_sigma: float = 2.0,
    frame_sigma: float = 1.0,
) -> np.ndarray:
    """Adds gaussian noise smoothed circularly along sectors and along time.

    The smoothed field is rescaled to standard deviation `std`: measurement
    noise in DENSE strain is spatially correlated, not white.
    """
    noise = rng.standard_normal(strain.shape)
    noise = ndimage.gaussian_filter(
        noise, sigma=(sector_sigma, frame_sigma), mode=("wrap", "nearest")
    )
    noise *= std / max(float(noise.std()), 1e-12)
    return strain + noise


def svd_denoise(matrix: np.ndarray, rank: int = 3) -> np.ndarray:
    """Best rank-`rank` approximation of a (sectors, frames) matrix (truncated SVD).

    The authors' preprocessing: strain over the ring is dominated by a few
    temporal patterns, so the low-rank part keeps the signal and drops noise.
    Returns float64.
    """
    m = np.asarray(matrix, dtype=np.float64)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    r = min(rank, s.shape[0])
    return (u[:, :r] * s[:r]) @ vt[:r]


def naive_onset_ms(
    strain: np.ndarray,
    frame_period_ms: float = FRAME_PERIOD_MS,
    threshold: float = -0.02,
) -> np.ndarray:
    """Naive TOS per sector: first frame with strain below `threshold`, in ms.

    Sectors that never get there (scar, for one) get the end of the sequence.
    Frame j (0-based) is at (j + 1) x `frame_period_ms`.
    """
    s = np.asarray(strain)
    below = s < threshold
    first = np.argmax(below, axis=1)
    frames = np.where(below.any(axis=1), first + 1, s.shape[1])
    return frames.astype(np.float64) * frame_period_ms
