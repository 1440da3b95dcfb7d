"""Deterministic synthetic cine-DENSE cohort: strain matrices with TOS and scar.

Stands in for patient data in tests, demos and benchmarks. Each subject is
normal, LBBB without scar or LBBB with scar; each short-axis slice carries a
(126, F) mid-wall Ecc matrix, a continuous ("full resolution") TOS per sector
and an LGE scar fraction per sector. Numpy + scipy only. This module samples
subjects; the signal model they are drawn from (TOS and scar profiles over
the ring, strain over time, the sector and time conventions) is
`synthetic_signals.py`.

Why scar matters: a scarred sector barely shortens, so a detector looking for
the onset of shortening sees none and calls it late, although its label is
TOS = 17 ms (scar is never a pacing target). `synthetic_signals.naive_onset_ms`
is such a detector.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from lma_tf import constants
from lma_tf.data.slices import DenseSlice, orientation_fields
from lma_tf.data.synthetic_signals import (
    FRAME_PERIOD_MS,
    NUM_SECTORS,
    TOS_FLOOR_MS,
    Bump,
    add_smooth_noise,
    raised_cosine,
    scar_blend_weight,
    scar_profile,
    smooth_circular_noise,
    strain_from_tos,
    svd_denoise,
    tos_profile,
)
from lma_tf.decision import orientation as orientation_lib

SEPTAL_SECTORS = np.arange(0, 42)
INFERIOR_SECTORS = np.arange(42, 63)
LATERAL_SECTORS = np.arange(63, 105)
ANTERIOR_SECTORS = np.arange(105, 126)
# The sector convention of `synthetic_signals` (sectors 0..125 counter-
# clockwise seen from the apex, from the anterior RV insertion), stated on
# every slice so that the AHA mapping puts the septum (sectors 0-41) in the
# septal segments.
ORIENTATION = orientation_lib.DEFAULT
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


@dataclasses.dataclass
class SyntheticSubject:
    """A generated subject: its group and its slices, basal to apical."""

    subject_id: str
    group: str
    slices: list[DenseSlice]

    @property
    def has_scar(self) -> bool:
        """Whether any slice has a sector at or above the scar threshold."""
        return any(
            s.scar_fraction is not None
            and bool(np.any(s.scar_fraction >= constants.SCAR_THRESHOLD))
            for s in self.slices
        )


# ---------------------------------------------------------------------------
# Subjects and cohorts.


def subject_id_for(index: int) -> str:
    """The id of the `index`-th synthetic subject, e.g. SYN0007."""
    return f"SYN{index:04d}"


def subject_index(subject_id: str) -> int:
    """The index of a synthetic subject id (`subject_id_for`'s inverse).

    Raises:
      ValueError: not a synthetic subject's id.
    """
    if re.fullmatch(r"SYN\d{4,}", subject_id) is None:
        raise ValueError(f"{subject_id!r} is not a synthetic subject id (SYN0007)")
    return int(subject_id[3:])


def subject_rng(seed: int, index: int) -> np.random.Generator:
    """Per-subject generator, a function of (seed, index) only.

    Equals `SeedSequence(seed).spawn(...)[index]`, so subject i is the same
    however many subjects are generated.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def remeasure_rng(seed: int, draw: int, index: int) -> np.random.Generator:
    """Measurement-noise generator of re-measurement `draw` (>= 1) of subject `index`.

    With `generate_subject(subject_rng(seed, index), ..., noise_rng=...)` it
    gives the same heart measured again: new noise, same truth.
    """
    if draw < 1:
        raise ValueError(f"draw must be >= 1 (0 is the original), got {draw}")
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(index, 1_000_003, draw))
    )


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


@dataclasses.dataclass(frozen=True)
class _Contraction:
    """A subject's strain parameters, drawn once and shared by its slices."""

    peak_strain: float
    prestretch_max: float
    shortening_ms: float
    flash_depth: float  # septal flash, 0 = none
    residual: float
    noise_std: float
    flash_ms: float
    rebound: float
    passive_stretch: float
    passive_end_ms: float


def _sample_contraction(
    rng: np.random.Generator, lbbb: bool, bumps: list[Bump]
) -> _Contraction:
    """LBBB: weaker, pre-stretched, with a septal flash if activation is late."""
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
    # One draw per line, in this order: the cohort's bytes depend on it.
    residual = rng.uniform(0.0, 0.2)
    noise_std = rng.uniform(0.007, 0.012)
    flash_ms = rng.uniform(70.0, 120.0)
    rebound = rng.uniform(0.3, 0.8)
    passive_stretch = rng.uniform(0.005, 0.04)
    passive_end_ms = rng.uniform(300.0, 450.0)
    return _Contraction(
        peak_strain=peak_strain,
        prestretch_max=prestretch_max,
        shortening_ms=shortening_ms,
        flash_depth=flash_depth,
        residual=residual,
        noise_std=noise_std,
        flash_ms=flash_ms,
        rebound=rebound,
        passive_stretch=passive_stretch,
        passive_end_ms=passive_end_ms,
    )


def _slice_strain(
    rng: np.random.Generator,
    tos: np.ndarray,
    z: float,
    scar: np.ndarray,
    c: _Contraction,
    num_frames: int,
    lbbb: bool,
    tether: float,
    noise_rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One slice's measured strain: model, noise, then the authors' SVD denoising.

    `z` is the slice's position, basal -1 .. apical +1; `tether` > 0 makes
    scar shorten weakly with its surroundings instead of staying passive.
    `noise_rng`, if given, draws the measurement noise instead of `rng`
    (which still advances as usual, so every later draw is unchanged).
    """
    septal_weight = raised_cosine(SEPTAL_CENTRE, 50.0)
    lateness = np.clip((tos - TOS_FLOOR_MS) / 80.0, 0.0, 1.0)
    amp = c.peak_strain * (1.0 + 0.1 * smooth_circular_noise(rng, 6.0))
    amp *= 1.0 + (0.3 * lateness if lbbb else 0.0) - 0.05 * z
    if lbbb:
        amp *= 1.0 - 0.4 * septal_weight  # septum shortens weakly in LBBB
    amp = np.clip(amp, -0.22, -0.03)
    dur = c.shortening_ms * (1.0 + 0.05 * smooth_circular_noise(rng, 6.0))
    weight = scar_blend_weight(scar)
    clean = strain_from_tos(
        tos,
        num_frames,
        FRAME_PERIOD_MS,
        peak_strain=amp,
        prestretch=c.prestretch_max * lateness,
        shortening_ms=dur,
        residual=c.residual,
        septal_flash=c.flash_depth * septal_weight if c.flash_depth > 0 else None,
        flash_ms=c.flash_ms,
        rebound=c.rebound,
        rebound_end_ms=max(tos.max() + 60.0, 2 * c.flash_ms),
        scar_weight=None if tether else weight,
        passive_stretch=c.passive_stretch,
        passive_end_ms=c.passive_end_ms,
    )
    if tether:
        pulled = strain_from_tos(
            tos,
            num_frames,
            FRAME_PERIOD_MS,
            peak_strain=amp * tether,
            prestretch=c.prestretch_max * lateness,
            shortening_ms=dur,
            residual=c.residual,
        )
        clean = (1.0 - weight)[:, None] * clean + weight[:, None] * pulled
    noisy = add_smooth_noise(clean, rng, c.noise_std)
    if noise_rng is not None:
        noisy = add_smooth_noise(clean, noise_rng, c.noise_std)
    return svd_denoise(noisy, rank=3)


def generate_subject(
    rng: np.random.Generator,
    subject_id: str,
    group: str | None = None,
    scar_model: str = "passive",
    noise_rng: np.random.Generator | None = None,
) -> SyntheticSubject:
    """One subject: 3-6 short-axis slices, basal to apical, sharing one frame count.

    `group` (one of GROUPS) is drawn from GROUP_PROBABILITIES when None; it is
    always the generator's first draw, so a subject's group depends on its
    generator alone. `scar_model` (SCAR_MODELS): "passive" scar barely moves
    (flat or passively stretching); "tethered" scar is pulled by the
    myocardium around it and shortens weakly at the surrounding activation
    time, which makes scar in a late region look late (a harder case).
    `noise_rng` re-measures the same heart: when given, only the measurement
    noise of every slice is drawn from it; TOS, scar, labels and every other
    draw are those of `rng` alone (see `remeasure_rng`).
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
    contraction = _sample_contraction(rng, lbbb, bumps)
    late_centre = bumps[0].centre if bumps else LATERAL_CENTRE
    scars = (
        _sample_scar(rng, num_slices, late_centre)
        if group == "lbbb_scar"
        else [np.zeros(NUM_SECTORS)] * num_slices
    )
    # Drawn last and only for scarred tethered subjects, so everyone else is
    # the same subject under either scar model.
    tethered = scar_model == "tethered" and group == "lbbb_scar"
    tether = rng.uniform(0.3, 0.55) if tethered else 0.0

    slices = []
    for k in range(num_slices):
        strain = _slice_strain(
            rng,
            tos_true[k],
            z[k],
            scars[k],
            contraction,
            num_frames,
            lbbb,
            tether,
            noise_rng,
        )
        scar = scars[k].astype(np.float32)
        label = np.where(scar >= constants.SCAR_THRESHOLD, TOS_FLOOR_MS, tos_true[k])
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
                **orientation_fields(ORIENTATION),
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
