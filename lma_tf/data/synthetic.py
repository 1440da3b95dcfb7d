"""Deterministic synthetic cine-DENSE cohort: strain matrices with TOS and scar.

Stands in for patient data in tests, demos and benchmarks. Each subject is
normal, LBBB without scar or LBBB with scar; each short-axis slice carries a
(126, F) mid-wall Ecc matrix, a continuous ("full resolution") TOS per sector
and an LGE scar fraction per sector. Numpy + scipy only.

Sector convention (used for every array indexed by sector here):
  sectors 0..125 run counterclockwise (viewed from the apex) from the anterior
  RV insertion point, 7 sectors per segment of 18. The septum is sectors 0-41
  (anteroseptal -> inferoseptal, centre 21), the inferior wall 42-62, the
  lateral wall 63-104 (inferolateral -> anterolateral, centre 84) and the
  anterior wall 105-125. Index 125 wraps round to 0.

Time convention: frame j (0-based) is at t = (j + 1) x frame period, so a TOS
of 17 ms is the first frame, as in the data contract.

Why scar matters: a scarred sector barely shortens, so a detector looking for
the onset of shortening sees none and calls it late, although its label is
TOS = 17 ms (scar is never a pacing target). `naive_onset_ms` is such a
detector.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lma_tf import constants
from lma_tf.data.slices import DenseSlice

NUM_SECTORS = constants.NUM_SECTORS
FRAME_PERIOD_MS = constants.DEFAULT_FRAME_PERIOD_MS
TOS_FLOOR_MS = constants.TOS_FLOOR_MS

SEPTAL_SECTORS = np.arange(0, 42)
INFERIOR_SECTORS = np.arange(42, 63)
LATERAL_SECTORS = np.arange(63, 105)
ANTERIOR_SECTORS = np.arange(105, 126)
SEPTAL_CENTRE = 21.0
LATERAL_CENTRE = 84.0

GROUPS = ("normal", "lbbb", "lbbb_scar")
SCAR_MODELS = ("passive", "tethered")
GROUP_PROBABILITIES = (0.25, 0.35, 0.40)

MIN_SUBJECT_FRAMES = 25
MAX_SUBJECT_FRAMES = 60
MAX_TOS_MS = 140.0
MAX_NORMAL_TOS_MS = 85.0  # healthy latest TOS is about 61 +- 7 ms
# Frames needed after the latest onset for shortening and relaxation.
FRAMES_AFTER_LATEST_ONSET = 12

_SECTORS = np.arange(NUM_SECTORS, dtype=np.float64)


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


@dataclasses.dataclass
class SyntheticSubject:
    """A generated subject: its group and its slices, basal to apical."""

    subject_id: str
    group: str
    slices: list[DenseSlice]

    @property
    def has_scar(self) -> bool:
        return any(
            s.scar_fraction is not None
            and bool(np.any(s.scar_fraction >= constants.SCAR_THRESHOLD))
            for s in self.slices
        )


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


def _smooth_circular_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Unit-std gaussian noise over the ring, smoothed circularly."""
    x = ndimage.gaussian_filter1d(rng.standard_normal(NUM_SECTORS), sigma, mode="wrap")
    return x / max(float(x.std()), 1e-12)


# ---------------------------------------------------------------------------
# Temporal model.


def _sin2_window(t: np.ndarray, start: float, stop: float) -> np.ndarray:
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
        flash = -_sin2_window(t, first, first + flash_ms)
        back = _sin2_window(
            t, first + 0.6 * flash_ms, max(rebound_end_ms, first + flash_ms)
        )
        strain = (
            strain
            + np.asarray(septal_flash, np.float64)[:, None]
            * (flash + rebound * back)[None, :]
        )
    if scar_weight is not None:
        w = np.asarray(scar_weight, np.float64)[:, None]
        passive = passive_stretch * _sin2_window(
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


# ---------------------------------------------------------------------------
# Subjects and cohorts.


def subject_id_for(index: int) -> str:
    """The id of the `index`-th synthetic subject, e.g. SYN0007."""
    return f"SYN{index:04d}"


def subject_rng(seed: int, index: int) -> np.random.Generator:
    """Per-subject generator, a function of (seed, index) only.

    Equals `SeedSequence(seed).spawn(...)[index]`, so subject i is the same
    however many subjects are generated.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _sample_bumps(rng: np.random.Generator, group: str) -> list[Bump]:
    """Subject-level late-activation regions (per-slice jitter comes later)."""
    if group == "normal":
        if rng.random() < 0.3:
            return []  # synchronous: flat 17 ms
        peak = float(np.clip(rng.normal(61.0, 7.0), 42.0, 82.0))
        return [Bump(rng.uniform(0, NUM_SECTORS), rng.uniform(35, 77), peak)]
    centre = float(np.clip(rng.normal(LATERAL_CENTRE, 8.0), 74.0, 100.0))
    peak = float(np.clip(rng.normal(112.0, 28.0), 60.0, MAX_TOS_MS))
    bumps = [Bump(centre, rng.uniform(45, 77), peak)]
    if rng.random() < 0.35:
        # A smaller second late region on the inferior or the anterior wall,
        # kept off the mid-septum (sectors 14-28), which activates first.
        if rng.random() < 0.5:
            second = rng.uniform(56.0, 62.0)
        else:
            second = rng.uniform(106.0, 112.0)
        second_peak = rng.uniform(40.0, max(45.0, 0.75 * peak))
        bumps.append(Bump(second, rng.uniform(35, 50), second_peak))
    return bumps


def _slice_bumps(
    rng: np.random.Generator,
    bumps: list[Bump],
    z: np.ndarray,
    shifts: np.ndarray,
    max_peak_ms: float,
) -> list[list[Bump]]:
    """Per-slice bumps: same regions, centre drifting, amplitude varying smoothly."""
    out: list[list[Bump]] = []
    slopes = [rng.uniform(-0.15, 0.15) for _ in bumps]
    for k in range(z.shape[0]):
        row = []
        for b, slope in zip(bumps, slopes, strict=True):
            gain = float(np.clip(1.0 + slope * z[k] + rng.normal(0.0, 0.04), 0.7, 1.3))
            peak = min(TOS_FLOOR_MS + (b.peak_ms - TOS_FLOOR_MS) * gain, max_peak_ms)
            width = float(np.clip(b.width + rng.normal(0.0, 2.5), 35.0, 77.0))
            row.append(Bump((b.centre + shifts[k]) % NUM_SECTORS, width, peak))
        out.append(row)
    return out


def _sample_scar(
    rng: np.random.Generator, num_slices: int, late_centre: float
) -> list[np.ndarray]:
    """Scar fraction per slice: one region on a contiguous run of slices."""
    if rng.random() < 0.6:
        centre = late_centre + rng.normal(0.0, 10.0)  # in the late region
    else:
        centre = rng.uniform(0, NUM_SECTORS)
    length = int(rng.integers(10, 31))
    core_value = rng.uniform(0.6, 1.0)
    count = int(rng.integers(1, num_slices + 1))
    first = int(rng.integers(0, num_slices - count + 1))
    fractions = [np.zeros(NUM_SECTORS) for _ in range(num_slices)]
    for k in range(first, first + count):
        centre += rng.normal(0.0, 1.5)
        slice_len = int(np.clip(length + rng.integers(-3, 4), 10, 30))
        fractions[k] = scar_profile(
            centre, slice_len, core_value, int(rng.integers(2, 5))
        )
    return fractions


def scar_blend_weight(scar_fraction: np.ndarray) -> np.ndarray:
    """How passive a sector's strain is: 0 healthy, 1 from scar fraction 0.5 up.

    A smoothstep over [0, 0.5], so the border zone shortens partially.
    """
    x = np.clip(np.asarray(scar_fraction, np.float64) / constants.SCAR_THRESHOLD, 0, 1)
    return x * x * (3.0 - 2.0 * x)


def generate_subject(
    rng: np.random.Generator,
    subject_id: str,
    group: str | None = None,
    scar_model: str = "passive",
) -> SyntheticSubject:
    """One subject: 3-6 short-axis slices, basal to apical, sharing one frame count.

    `group` (one of GROUPS) is drawn from GROUP_PROBABILITIES when None; it is
    always the generator's first draw, so a subject's group depends on its
    generator alone. `scar_model` (SCAR_MODELS): "passive" scar barely moves
    (flat or passively stretching); "tethered" scar is pulled by the
    myocardium around it and shortens weakly at the surrounding activation
    time, which makes scar in a late region look late (a harder case).
    """
    if scar_model not in SCAR_MODELS:
        raise ValueError(f"unknown scar_model {scar_model!r}, expected {SCAR_MODELS}")
    drawn = GROUPS[int(rng.choice(len(GROUPS), p=GROUP_PROBABILITIES))]
    group = drawn if group is None else group
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}, expected one of {GROUPS}")
    lbbb = group != "normal"

    num_slices = int(rng.integers(3, 7))
    base_location = rng.uniform(25.0, 35.0)
    spacing = rng.uniform(8.0, 10.0)
    locations = base_location - spacing * np.arange(num_slices)
    z = np.linspace(-1.0, 1.0, num_slices)  # basal -1 .. apical +1
    shifts = np.cumsum(rng.normal(0.0, 2.0, num_slices))
    shifts -= shifts.mean()

    bumps = _sample_bumps(rng, group)
    max_peak = MAX_TOS_MS if lbbb else MAX_NORMAL_TOS_MS
    per_slice_bumps = _slice_bumps(rng, bumps, z, shifts, max_peak)
    tos_true = [tos_profile(b) for b in per_slice_bumps]
    latest = max(float(t.max()) for t in tos_true)
    min_frames = max(
        MIN_SUBJECT_FRAMES,
        math.ceil(latest / FRAME_PERIOD_MS) + FRAMES_AFTER_LATEST_ONSET,
    )
    num_frames = int(rng.integers(min_frames, MAX_SUBJECT_FRAMES + 1))

    if lbbb:
        peak_strain = float(np.clip(rng.normal(-0.09, 0.06), -0.20, -0.06))
        prestretch_max = rng.uniform(0.02, 0.05)
        shortening_ms = rng.uniform(130.0, 210.0)
        flash_depth = rng.uniform(0.02, 0.05) if bumps[0].peak_ms > 70.0 else 0.0
    else:
        peak_strain = float(np.clip(rng.normal(-0.19, 0.015), -0.20, -0.15))
        prestretch_max = rng.uniform(0.0, 0.01)
        shortening_ms = rng.uniform(160.0, 240.0)
        flash_depth = 0.0
    residual = rng.uniform(0.0, 0.2)
    noise_std = rng.uniform(0.007, 0.012)
    flash_ms = rng.uniform(70.0, 120.0)
    rebound = rng.uniform(0.3, 0.8)
    passive_stretch = rng.uniform(0.005, 0.04)
    passive_end_ms = rng.uniform(300.0, 450.0)
    late_centre = bumps[0].centre if bumps else LATERAL_CENTRE
    scars = (
        _sample_scar(rng, num_slices, late_centre)
        if group == "lbbb_scar"
        else [np.zeros(NUM_SECTORS)] * num_slices
    )
    septal_weight = raised_cosine(SEPTAL_CENTRE, 50.0)
    # Drawn last and only for scarred tethered subjects, so everyone else is
    # the same subject under either scar model.
    tethered = scar_model == "tethered" and group == "lbbb_scar"
    tether = rng.uniform(0.3, 0.55) if tethered else 0.0

    slices = []
    for k in range(num_slices):
        tos = tos_true[k]
        lateness = np.clip((tos - TOS_FLOOR_MS) / 80.0, 0.0, 1.0)
        amp = peak_strain * (1.0 + 0.1 * _smooth_circular_noise(rng, 6.0))
        amp *= 1.0 + (0.3 * lateness if lbbb else 0.0) - 0.05 * z[k]
        if lbbb:
            amp *= 1.0 - 0.4 * septal_weight  # septum shortens weakly in LBBB
        amp = np.clip(amp, -0.22, -0.03)
        dur = shortening_ms * (1.0 + 0.05 * _smooth_circular_noise(rng, 6.0))
        flash = flash_depth * septal_weight if flash_depth > 0 else None
        weight = scar_blend_weight(scars[k])
        clean = strain_from_tos(
            tos,
            num_frames,
            FRAME_PERIOD_MS,
            peak_strain=amp,
            prestretch=prestretch_max * lateness,
            shortening_ms=dur,
            residual=residual,
            septal_flash=flash,
            flash_ms=flash_ms,
            rebound=rebound,
            rebound_end_ms=max(tos.max() + 60.0, 2 * flash_ms),
            scar_weight=None if tether else weight,
            passive_stretch=passive_stretch,
            passive_end_ms=passive_end_ms,
        )
        if tether:
            pulled = strain_from_tos(
                tos,
                num_frames,
                FRAME_PERIOD_MS,
                peak_strain=amp * tether,
                prestretch=prestretch_max * lateness,
                shortening_ms=dur,
                residual=residual,
            )
            clean = (1.0 - weight)[:, None] * clean + weight[:, None] * pulled
        strain = svd_denoise(add_smooth_noise(clean, rng, noise_std), rank=3)
        scar = scars[k].astype(np.float32)
        label = np.where(scar >= constants.SCAR_THRESHOLD, TOS_FLOOR_MS, tos)
        slices.append(
            DenseSlice(
                subject_id=subject_id,
                slice_id=f"{subject_id}_s{k}",
                strain_matrix=strain.astype(np.float32),
                frame_period_ms=FRAME_PERIOD_MS,
                tos_ms=label.astype(np.float32),
                scar_fraction=scar,
                slice_location=float(round(locations[k], 2)),
                source=f"synthetic:{group}",
            )
        )
    return SyntheticSubject(subject_id=subject_id, group=group, slices=slices)


def generate_subjects(
    num_subjects: int, seed: int, scar_model: str = "passive"
) -> list[SyntheticSubject]:
    """Subjects 0..num_subjects-1 for `seed`; subject i depends on (seed, i) only."""
    return [
        generate_subject(subject_rng(seed, i), subject_id_for(i), scar_model=scar_model)
        for i in range(num_subjects)
    ]


def generate_cohort(
    num_subjects: int, seed: int, scar_model: str = "passive"
) -> list[DenseSlice]:
    """All slices of `num_subjects` synthetic subjects, subject by subject."""
    subjects = generate_subjects(num_subjects, seed, scar_model)
    return [s for subj in subjects for s in subj.slices]
