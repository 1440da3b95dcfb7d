"""Tests of the classical onset-of-shortening TOS detector (numpy only)."""

import functools

import numpy as np
import pytest

from lma_tf import constants, rules
from lma_tf.data import synthetic
from lma_tf.models import classical

PERIOD = constants.DEFAULT_FRAME_PERIOD_MS
N = constants.NUM_SECTORS


@functools.cache
def _cohort():
    return tuple(synthetic.generate_cohort(10, 0))


def _is_scarred(s) -> bool:
    return bool(np.any(s.scar_fraction >= constants.SCAR_THRESHOLD))


def _ramp(num_frames: int, onset_frame: int, rate: float = 0.01) -> np.ndarray:
    """One strain curve: flat zero up to `onset_frame`, then linear shortening."""
    j = np.arange(num_frames)
    return -rate * np.clip(j - onset_frame, 0, None)


def test_scar_free_slices_mae_small_and_beats_constant():
    slices = [s for s in _cohort() if not _is_scarred(s)]
    assert len(slices) >= 10
    pred = np.concatenate([classical.detect_tos(s.strain_matrix) for s in slices])
    label = np.concatenate([s.tos_ms for s in slices])
    mae = np.mean(np.abs(pred - label))
    constant_mae = np.mean(np.abs(label - label.mean()))
    # Measured 5.3 ms (constant-mean predictor: 26.8 ms).
    assert mae < 12.0
    assert mae < 0.5 * constant_mae


def test_scar_sectors_are_called_late():
    """The documented weakness: scar does not shorten, so it looks late."""
    slices = [s for s in _cohort() if _is_scarred(s)]
    assert slices
    pred, label = [], []
    for s in slices:
        scar = s.scar_fraction >= constants.SCAR_THRESHOLD
        pred.append(classical.detect_tos(s.strain_matrix)[scar])
        label.append(s.tos_ms[scar])
    pred, label = np.concatenate(pred), np.concatenate(label)
    np.testing.assert_array_equal(label, constants.TOS_FLOOR_MS)
    # Measured: every scar sector >= 68 ms, median 187 ms.
    assert np.mean(rules.lma_from_tos(pred)) > 0.9
    assert np.median(pred) > 100.0


def test_output_shape_floor_dtype_and_determinism():
    s = _cohort()[0]
    a = classical.detect_tos(s.strain_matrix)
    b = classical.detect_tos(s.strain_matrix.copy())
    assert a.shape == (N,) and a.dtype == np.float32
    assert np.all(a >= constants.TOS_FLOOR_MS)
    assert np.all(a <= s.num_frames * PERIOD)
    np.testing.assert_array_equal(a, b)
    padded = np.concatenate([s.strain_matrix, s.strain_matrix[:2]], axis=0)
    assert classical.detect_tos(padded).shape == (N + 2,)


def test_known_onset_within_one_frame():
    strain = np.tile(_ramp(40, onset_frame=10), (N, 1))
    tos = classical.detect_tos(strain)
    np.testing.assert_allclose(tos, (10 + 1) * PERIOD, atol=PERIOD)


def test_first_frame_onset_is_17_and_never_shortening_is_sequence_end():
    early = classical.detect_tos(np.tile(_ramp(30, onset_frame=0), (N, 1)))
    np.testing.assert_array_equal(early, constants.TOS_FLOOR_MS)
    flat = classical.detect_tos(np.zeros((N, 30)))
    np.testing.assert_array_equal(flat, 30 * PERIOD)


def test_pre_stretch_does_not_delay_onset():
    j = np.arange(40)
    curve = np.where(j <= 8, 0.04 * j / 8, 0.04 - 0.01 * (j - 8))
    tos = classical.detect_tos(np.tile(curve, (N, 1)))
    np.testing.assert_allclose(tos, (8 + 1) * PERIOD, atol=PERIOD)


def test_zero_padding_is_ignored():
    s = _cohort()[0]
    n = s.num_frames
    padded = np.zeros((N, 64), np.float32)
    padded[:, :n] = s.strain_matrix
    np.testing.assert_array_equal(
        classical.detect_tos(padded, num_frames=n),
        classical.detect_tos(s.strain_matrix),
    )
    # Without num_frames the padding would be read as strain.
    flat = classical.detect_tos(np.zeros((N, 64)), num_frames=20)
    np.testing.assert_array_equal(flat, 20 * PERIOD)


def test_regularization_removes_single_sector_outlier():
    strain = np.tile(_ramp(40, onset_frame=3), (N, 1))
    strain[40] = _ramp(40, onset_frame=25)
    raw = classical.detect_tos(strain, smooth_sectors=1, regularize_sectors=1)
    assert raw[40] > raw[39] + 10 * PERIOD  # the outlier is there
    tos = classical.detect_tos(strain)
    np.testing.assert_array_equal(tos, tos[0])


def test_regularization_is_circular():
    strain = np.tile(_ramp(40, onset_frame=3), (N, 1))
    strain[0] = _ramp(40, onset_frame=25)
    tos = classical.detect_tos(strain, smooth_sectors=1)
    np.testing.assert_array_equal(tos, tos[1])


def test_detect_batch_matches_per_slice():
    slices = _cohort()[:3]
    x = np.zeros((3, N, 64), np.float32)
    counts = np.array([s.num_frames for s in slices])
    for b, s in enumerate(slices):
        x[b, :, : s.num_frames] = s.strain_matrix
    out = classical.detect_batch(x, counts, threshold=-0.015)
    assert out.shape == (3, N) and out.dtype == np.float32
    for b, s in enumerate(slices):
        np.testing.assert_array_equal(
            out[b], classical.detect_tos(s.strain_matrix, threshold=-0.015)
        )


def test_lma_from_tos():
    floor, eps = constants.TOS_FLOOR_MS, constants.LMA_TOS_EPS_MS
    tos = np.array([floor, floor + eps, floor + eps + 0.5, 120.0])
    np.testing.assert_array_equal(rules.lma_from_tos(tos), [0, 0, 1, 1])


CANDIDATES = classical.THRESHOLD_CANDIDATES


def _fit_case(dip: float, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """A `dip` on frames 2-5, then real shortening from frame 15 to `depth`.

    Thresholds shallower than the dip fire on it (far too early), those
    deeper than `depth` never fire (the end of the sequence): only the ones
    in between find the labelled onset.
    """
    j = np.arange(40)
    curve = np.where((j >= 2) & (j <= 5), -dip, 0.0)
    curve -= np.clip(j - 15, 0, None) * 0.005
    curve = np.maximum(curve, np.where(j >= 15, -depth, -1.0))
    strain = np.tile(curve, (N, 1))
    label = np.full(N, (15 + 1) * PERIOD, np.float32)
    return strain, label


def _errors(strains, labels) -> dict[float, float]:
    """Mean per-sector TOS error of each candidate threshold, by hand."""
    return {
        c: float(
            np.mean(
                [
                    np.abs(classical.detect_tos(s, threshold=c) - t)
                    for s, t in zip(strains, labels)
                ]
            )
        )
        for c in CANDIDATES
    }


@pytest.mark.parametrize(
    "dip, depth, winner",
    [(0.025, 0.035, -0.03), (0.007, 0.012, -0.01)],
    ids=["deep_dip", "shallow_shortening"],
)
def test_fit_threshold_picks_the_candidate_with_the_lowest_error(dip, depth, winner):
    strain, label = _fit_case(dip, depth)
    errors = _errors([strain], [label])
    # The data make `winner` the one right candidate, by more than a frame.
    assert min(errors, key=errors.get) == winner
    runner_up = min(e for c, e in errors.items() if c != winner)
    assert runner_up > errors[winner] + PERIOD
    for cands in (CANDIDATES, CANDIDATES[::-1]):
        best = classical.fit_threshold([strain], [label], [40], candidates=cands)
        assert best == winner


def test_other_data_pick_another_threshold():
    def fit(dip: float, depth: float) -> float:
        strain, label = _fit_case(dip, depth)
        return classical.fit_threshold([strain], [label])

    assert fit(0.025, 0.035) == -0.03
    assert fit(0.007, 0.012) == -0.01
    assert fit(0.012, 0.025) == -0.015


def test_fit_threshold_ties_go_to_the_earlier_candidate():
    # -0.015 and -0.02 both find the onset (the dip is 0.012, the shortening
    # 0.025 deep): whichever the candidates list first wins.
    strain, label = _fit_case(0.012, 0.025)
    errors = _errors([strain], [label])
    assert errors[-0.015] == errors[-0.02] == min(errors.values())
    assert classical.fit_threshold([strain], [label]) == -0.015
    reverse = CANDIDATES[::-1]
    assert classical.fit_threshold([strain], [label], candidates=reverse) == -0.02


def test_fit_threshold_on_cohort_is_the_lowest_error_candidate():
    slices = [s for s in _cohort() if not _is_scarred(s)][:4]
    strains = [s.strain_matrix for s in slices]
    labels = [s.tos_ms for s in slices]
    errors = _errors(strains, labels)
    best = classical.fit_threshold(strains, labels, [s.num_frames for s in slices])
    assert errors[best] == min(errors.values())


def test_params_from_config_round_trip():
    from lma_tf import config as config_lib

    cfg = config_lib.base_config()
    cfg.classical.threshold = -0.015
    cfg.data.frame_period_ms = 20.0
    params = classical.params_from_config(cfg)
    assert params == {
        "frame_period_ms": 20.0,
        "smooth_sectors": 5,
        "smooth_frames": 3,
        "threshold": -0.015,
        "regularize_sectors": 9,
    }
    x = np.tile(_ramp(30, onset_frame=5), (2, N, 1))
    assert classical.detect_batch(x, np.array([30, 20]), **params).shape == (2, N)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        classical.detect_tos(np.zeros((N, 20)), threshold=0.01)
    with pytest.raises(ValueError):
        classical.detect_tos(np.zeros((N, 20)), num_frames=21)
    with pytest.raises(ValueError):
        classical.detect_batch(np.zeros((N, 20)))
