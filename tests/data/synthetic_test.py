"""Tests of the synthetic cohort: determinism, ranges, cohort mix and the scar trap."""

import functools
import unittest

import numpy as np
import pytest

from lma_tf import constants
from lma_tf.data import synthetic
from lma_tf.data import synthetic_signals as signals
from lma_tf.data.slices import validate_slice

SEED = 7


@functools.cache
def _subjects(num_subjects: int = 50, seed: int = SEED):
    return tuple(synthetic.generate_subjects(num_subjects, seed))


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the circular runs of True in a 1-D mask."""
    if mask.all():
        return [mask.size]
    start = int(np.argmin(mask))  # a False sector: unroll the ring from there
    rolled = np.roll(mask, -start)
    runs, n = [], 0
    for v in rolled:
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs


class HelpersTest(unittest.TestCase):
    def test_raised_cosine_has_compact_support_and_wraps(self):
        b = signals.raised_cosine(centre=2.0, width=40.0)
        self.assertEqual(b.shape, (126,))
        self.assertAlmostEqual(b[2], 1.0)
        self.assertGreater(b[125], 0.0)  # wraps round past sector 0
        self.assertEqual(np.count_nonzero(b), 39)
        self.assertTrue(np.all((b >= 0) & (b <= 1)))

    def test_tos_profile(self):
        flat = signals.tos_profile([])
        np.testing.assert_array_equal(flat, np.full(126, 17.0))
        tos = signals.tos_profile([signals.Bump(84.0, 50.0, 120.0)])
        self.assertAlmostEqual(tos.max(), 120.0)
        self.assertEqual(int(np.argmax(tos)), 84)
        self.assertEqual(tos.min(), 17.0)
        np.testing.assert_array_equal(tos[synthetic.SEPTAL_SECTORS], 17.0)

    def test_scar_profile_core_and_border(self):
        frac = signals.scar_profile(
            centre=120.0, core_length=14, core_value=0.9, border=3
        )
        scar = frac >= constants.SCAR_THRESHOLD
        self.assertEqual(_runs(scar), [14])
        self.assertEqual(int(np.count_nonzero(frac)), 14 + 2 * 3)
        self.assertLessEqual(frac.max(), 0.9 + 1e-9)
        self.assertTrue(np.all(frac[~scar] < 0.5))

    def test_svd_denoise(self):
        rng = np.random.default_rng(0)
        low = rng.normal(size=(126, 3)) @ rng.normal(size=(3, 40))
        np.testing.assert_allclose(signals.svd_denoise(low, rank=3), low, atol=1e-10)
        noisy = low + 0.1 * rng.normal(size=low.shape)
        err_before = np.abs(noisy - low).mean()
        err_after = np.abs(signals.svd_denoise(noisy, rank=3) - low).mean()
        self.assertLess(err_after, 0.5 * err_before)

    def test_naive_onset(self):
        strain = np.zeros((126, 30))
        strain[:, 4:] = -0.05  # below threshold from frame index 4 = 5th frame
        strain[10] = 0.01  # never shortens
        onset = signals.naive_onset_ms(strain)
        self.assertEqual(onset.shape, (126,))
        self.assertEqual(onset[0], 5 * 17.0)
        self.assertEqual(onset[10], 30 * 17.0)

    def test_noise_free_strain_turns_at_tos(self):
        tos = signals.tos_profile([signals.Bump(84.0, 60.0, 119.0)])
        strain = signals.strain_from_tos(
            tos, 40, peak_strain=-0.12, prestretch=0.04 * (tos > 17)
        )
        self.assertEqual(strain.shape, (126, 40))
        late = tos > 60
        peak_frame = np.argmax(strain[late], axis=1) + 1  # 1-based
        np.testing.assert_allclose(peak_frame * 17.0, tos[late], atol=17.0)
        self.assertAlmostEqual(strain.min(), -0.12, places=2)
        self.assertTrue(np.all(np.abs(strain[:, -1]) < 0.12))


class DeterminismTest(unittest.TestCase):
    def test_same_seed_same_bytes(self):
        a = synthetic.generate_cohort(4, seed=3)
        b = synthetic.generate_cohort(4, seed=3)
        self.assertEqual([s.key for s in a], [s.key for s in b])
        for x, y in zip(a, b, strict=True):
            self.assertEqual(x.strain_matrix.tobytes(), y.strain_matrix.tobytes())
            self.assertEqual(x.tos_ms.tobytes(), y.tos_ms.tobytes())
            self.assertEqual(x.scar_fraction.tobytes(), y.scar_fraction.tobytes())
            self.assertEqual(x.slice_location, y.slice_location)

    def test_subject_independent_of_cohort_size(self):
        small = synthetic.generate_cohort(2, seed=3)
        large = synthetic.generate_cohort(5, seed=3)
        self.assertEqual([s.key for s in small], [s.key for s in large[: len(small)]])
        for x, y in zip(small, large[: len(small)], strict=True):
            self.assertEqual(x.strain_matrix.tobytes(), y.strain_matrix.tobytes())
            self.assertEqual(x.tos_ms.tobytes(), y.tos_ms.tobytes())

    def test_seeds_differ(self):
        a = synthetic.generate_cohort(1, seed=1)[0]
        b = synthetic.generate_cohort(1, seed=2)[0]
        self.assertFalse(
            a.strain_matrix.shape == b.strain_matrix.shape
            and np.array_equal(a.strain_matrix, b.strain_matrix)
        )


class CohortTest(unittest.TestCase):
    def test_ids_shapes_and_ranges(self):
        for i, subject in enumerate(_subjects()):
            self.assertEqual(subject.subject_id, f"SYN{i:04d}")
            self.assertIn(len(subject.slices), range(3, 7))
            frames = {s.num_frames for s in subject.slices}
            self.assertEqual(len(frames), 1)
            self.assertTrue(25 <= frames.pop() <= 60)
            locations = [s.slice_location for s in subject.slices]
            self.assertTrue(20.0 <= locations[0] <= 40.0)
            steps = -np.diff(locations)
            self.assertTrue(np.all((steps >= 7.9) & (steps <= 10.1)), steps)
            for k, s in enumerate(subject.slices):
                self.assertEqual(s.slice_id, f"{subject.subject_id}_s{k}")
                self.assertEqual(s.strain_matrix.shape, (126, s.num_frames))
                self.assertEqual(s.strain_matrix.dtype, np.float32)
                self.assertEqual(s.frame_period_ms, 17.0)
                self.assertTrue(np.all(s.tos_ms >= 17.0))
                self.assertLessEqual(s.tos_ms.max(), synthetic.MAX_TOS_MS)
                self.assertLess(s.tos_ms.max(), s.num_frames * 17.0)
                self.assertTrue(np.all((s.scar_fraction >= 0) & (s.scar_fraction <= 1)))
                self.assertLess(np.abs(s.strain_matrix).max(), 0.35)
                validate_slice(s)

    def test_cohort_mix(self):
        groups = [s.group for s in _subjects()]
        for group, p in zip(
            synthetic.GROUPS, synthetic.GROUP_PROBABILITIES, strict=True
        ):
            share = groups.count(group) / len(groups)
            self.assertAlmostEqual(share, p, delta=0.15, msg=group)
        for subject in _subjects():
            self.assertEqual(subject.has_scar, subject.group == "lbbb_scar")

    def test_scar_layout_and_labels(self):
        num_scarred = 0
        for subject in _subjects():
            scarred_slices = []
            for k, s in enumerate(subject.slices):
                scar = s.scar_fraction >= constants.SCAR_THRESHOLD
                if not scar.any():
                    continue
                scarred_slices.append(k)
                num_scarred += 1
                runs = _runs(scar)
                self.assertEqual(len(runs), 1, runs)
                self.assertTrue(10 <= runs[0] <= 30, runs)
                np.testing.assert_array_equal(s.tos_ms[scar], 17.0)
                # Soft border: some sectors partly scarred, below the threshold.
                self.assertTrue(np.any((s.scar_fraction > 0) & ~scar))
            if scarred_slices:
                self.assertEqual(
                    scarred_slices,
                    list(range(scarred_slices[0], scarred_slices[-1] + 1)),
                )
        self.assertGreater(num_scarred, 5)

    def test_activation_patterns(self):
        groups = set()
        for subject in _subjects():
            groups.add(subject.group)
            tos = np.stack([s.tos_ms for s in subject.slices])
            if subject.group == "normal":
                self.assertLessEqual(tos.max(), synthetic.MAX_NORMAL_TOS_MS)
                continue
            lateral = tos[:, synthetic.LATERAL_SECTORS].mean()
            septal = tos[:, synthetic.SEPTAL_SECTORS].mean()
            self.assertGreater(lateral, septal + 15.0, subject.subject_id)
            self.assertGreaterEqual(tos.max(), 55.0)
            np.testing.assert_array_equal(tos[:, synthetic.SEPTAL_SECTORS[14:29]], 17.0)
        self.assertEqual(groups, set(synthetic.GROUPS))

    def test_bumps_correlated_across_slices(self):
        checked = 0
        for subject in _subjects():
            if subject.group != "lbbb":
                continue
            checked += 1
            peaks = [int(np.argmax(s.tos_ms)) for s in subject.slices]
            spread = np.ptp(
                np.unwrap(np.array(peaks) * 2 * np.pi / 126) * 126 / 2 / np.pi
            )
            self.assertLess(spread, 20.0, (subject.subject_id, peaks))
        self.assertGreater(checked, 5)

    def test_naive_detector_calls_scar_late(self):
        """The reason for the multitask model: scar looks late, is labelled 17."""
        naive_scar, labels = [], []
        for subject in _subjects():
            for s in subject.slices:
                scar = s.scar_fraction >= constants.SCAR_THRESHOLD
                if scar.any():
                    naive_scar.append(signals.naive_onset_ms(s.strain_matrix)[scar])
                    labels.append(s.tos_ms[scar])
        self.assertGreater(len(naive_scar), 5)
        self.assertTrue(np.all(np.concatenate(labels) == 17.0))
        self.assertGreater(np.concatenate(naive_scar).mean(), 17.0 + 30.0)

    def test_naive_detector_tracks_true_tos_without_scar(self):
        true, naive = [], []
        for subject in _subjects():
            if subject.group == "normal":
                continue
            for s in subject.slices:
                late = (s.tos_ms > 18.0) & (s.scar_fraction == 0)
                true.append(s.tos_ms[late])
                naive.append(signals.naive_onset_ms(s.strain_matrix)[late])
        true_all, naive_all = np.concatenate(true), np.concatenate(naive)
        self.assertGreater(true_all.size, 500)
        self.assertGreater(np.corrcoef(true_all, naive_all)[0, 1], 0.7)


def test_tethered_scar_shortens_late_but_keeps_its_labels():
    passive = synthetic.generate_cohort(30, 4)
    tethered = synthetic.generate_cohort(30, 4, "tethered")
    scar_late_naive = {"passive": [], "tethered": []}
    for p, t in zip(passive, tethered):
        # Same subjects, labels and scar; only the scarred strain differs.
        np.testing.assert_array_equal(p.tos_ms, t.tos_ms)
        np.testing.assert_array_equal(p.scar_fraction, t.scar_fraction)
        scar = p.scar_fraction >= 0.5
        if not p.source.endswith("lbbb_scar"):
            np.testing.assert_array_equal(p.strain_matrix, t.strain_matrix)
        if not scar.any():
            continue
        assert np.all(t.tos_ms[scar] == 17.0)
        # Tethered scar shortens (pulled by its neighbours), passive does not.
        assert (
            t.strain_matrix[scar].min(axis=1).mean()
            < p.strain_matrix[scar].min(axis=1).mean() - 0.01
        )
        for name, s in (("passive", p), ("tethered", t)):
            scar_late_naive[name] += list(signals.naive_onset_ms(s.strain_matrix)[scar])
    assert len(scar_late_naive["tethered"]) == len(scar_late_naive["passive"]) > 50
    # Both fool a naive onset detector: scar looks late (label: 17 ms).
    assert np.mean(scar_late_naive["tethered"]) > 17.0 + 60.0
    assert np.mean(scar_late_naive["passive"]) > 17.0 + 60.0
    with pytest.raises(ValueError, match="scar_model"):
        synthetic.generate_cohort(1, 0, "fibrotic")


if __name__ == "__main__":
    unittest.main()
