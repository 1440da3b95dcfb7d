"""The format writers and the cohort tool: file layouts, keys, MATLAB shapes, sheet."""

import csv
import functools
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np
import scipy.io

from lma_tf.data import sources, synthetic, synthetic_io
from lma_tf.data.formats import npy, npz
from lma_tf.data.slices import DenseSlice, validate_slice

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@functools.cache
def _cohort() -> tuple[DenseSlice, ...]:
    """One subject per group (so some slices have scar) plus an unlabelled slice."""
    slices = []
    for i, group in enumerate(synthetic.GROUPS):
        rng = synthetic.subject_rng(11, i)
        subject = synthetic.generate_subject(rng, synthetic.subject_id_for(i), group)
        slices.extend(subject.slices)
    bare = DenseSlice(
        subject_id="BARE01",
        slice_id="mid",
        strain_matrix=np.linspace(-0.1, 0.05, 126 * 20, dtype=np.float32).reshape(
            126, 20
        ),
    )
    return (*slices, bare)


def _files(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, names in os.walk(root)
        for f in names
    )


class WriterTestCase(unittest.TestCase):
    def setUp(self):
        super().setUp()
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        self.dir = self._tmp.name
        self.slices = _cohort()

    def assert_no_temp_files(self):
        hidden = [f for f in _files(self.dir) if os.path.basename(f).startswith(".")]
        self.assertEqual(hidden, [])


class NpzTest(WriterTestCase):
    def test_layout_and_keys(self):
        paths = npz.write(self.slices, self.dir)
        self.assertEqual(len(paths), len(self.slices))
        for path, s in zip(paths, self.slices, strict=True):
            self.assertEqual(
                os.path.relpath(path, self.dir),
                os.path.join(s.subject_id, s.slice_id + ".npz"),
            )
            with np.load(path, allow_pickle=False) as z:
                self.assertEqual(str(z["subject_id"]), s.subject_id)
                self.assertEqual(str(z["slice_id"]), s.slice_id)
                self.assertEqual(z["subject_id"].dtype.kind, "U")
                self.assertEqual(z["subject_id"].shape, ())
                np.testing.assert_array_equal(z["strain_matrix"], s.strain_matrix)
                self.assertEqual(float(z["frame_period_ms"]), 17.0)
                if s.tos_ms is None:
                    self.assertNotIn("tos_ms", z.files)
                    self.assertNotIn("scar_fraction", z.files)
                    self.assertNotIn("slice_location", z.files)
                else:
                    self.assertEqual(set(z.files), set(npz.KEYS))
                    np.testing.assert_array_equal(z["tos_ms"], s.tos_ms)
                    np.testing.assert_array_equal(z["scar_fraction"], s.scar_fraction)
                    self.assertEqual(float(z["slice_location"]), s.slice_location)
        self.assert_no_temp_files()


class NpyTest(WriterTestCase):
    def test_authors_convention(self):
        paths = npy.write(self.slices, self.dir)
        subjects = list(dict.fromkeys(s.subject_id for s in self.slices))
        self.assertEqual(
            [os.path.relpath(p, self.dir) for p in paths],
            [f"{subject}.npy" for subject in subjects],
        )
        with self.assertRaises(ValueError):  # pickled: refused without opt-in
            np.load(paths[0], allow_pickle=False)
        for path, subject in zip(paths, subjects, strict=True):
            entries = list(np.load(path, allow_pickle=True))
            expected = [s for s in self.slices if s.subject_id == subject]
            self.assertEqual(len(entries), len(expected))
            for entry, s in zip(entries, expected, strict=True):
                self.assertEqual(entry["subject_id"], subject)
                self.assertEqual(entry["slice_name"], s.slice_id)
                np.testing.assert_array_equal(entry["strain_matrix"], s.strain_matrix)
                if s.tos_ms is None:
                    self.assertNotIn("TOS", entry)
                    continue
                self.assertEqual(entry["TOS"].shape, (1, 126))
                np.testing.assert_array_equal(entry["TOS"][0], s.tos_ms)
                self.assertEqual(entry["scar_sector_percentage"].shape, (126,))
                np.testing.assert_allclose(
                    entry["scar_sector_percentage"], 100 * s.scar_fraction, rtol=1e-6
                )
                self.assertEqual(entry["slice_location"], s.slice_location)
        self.assertGreater(
            max(
                np.max(e["scar_sector_percentage"])
                for e in np.load(paths[2], allow_pickle=True)
            ),
            50.0,  # the scar subject, in percent
        )
        self.assert_no_temp_files()


class MatTest(WriterTestCase):
    def check_manifest_and_scar(self, paths):
        manifest = os.path.join(self.dir, "manifest.csv")
        self.assertEqual(paths[-1], manifest)
        with open(manifest, newline="") as fh:
            rows = list(csv.reader(fh))
        self.assertEqual(rows[0], ["file", "subject_id", "slice_id", "scar_csv"])
        self.assertEqual(len(rows), 1 + len(self.slices))
        for row, s in zip(rows[1:], self.slices, strict=True):
            self.assertEqual(row[:3], [f"{s.subject_id}/{s.slice_id}.mat", *s.key])
            self.assertTrue(os.path.isfile(os.path.join(self.dir, row[0])))
            if s.scar_fraction is None:
                self.assertEqual(row[3], "")
                continue
            self.assertEqual(row[3], f"{s.subject_id}/{s.slice_id}_scar.csv")
            with open(os.path.join(self.dir, row[3])) as fh:
                lines = fh.read().splitlines()
            self.assertEqual(len(lines), 1)
            values = np.array([float(v) for v in lines[0].split(",")])
            self.assertEqual(values.shape, (126,))
            np.testing.assert_array_equal(values.astype(np.float32), s.scar_fraction)
        self.assertTrue(
            any(
                s.scar_fraction is not None and s.scar_fraction.max() >= 0.5
                for s in self.slices
            )
        )
        self.assert_no_temp_files()

    def test_mat_v5(self):
        paths = synthetic_io.write_mat(self.slices, self.dir, version="5")
        self.check_manifest_and_scar(paths)
        for s in self.slices:
            path = os.path.join(self.dir, s.subject_id, s.slice_id + ".mat")
            with open(path, "rb") as fh:
                self.assertNotIn(s.subject_id.encode(), fh.read())  # no patient id
            mat = scipy.io.loadmat(path)
            strain = mat["StrainInfo"]["CCmid"][0, 0]
            self.assertEqual(strain.shape, (126, s.num_frames))
            np.testing.assert_array_equal(strain, s.strain_matrix)
            np.testing.assert_array_equal(mat["StrainInfo"]["CCmidSVD"][0, 0], strain)
            if s.tos_ms is None:
                self.assertNotIn("TOSAnalysis", mat)
                self.assertNotIn("SequenceInfo", mat)
                continue
            tos = mat["TOSAnalysis"]["TOSfullRes_Jerry"][0, 0]
            self.assertEqual(tos.shape, (1, 126))
            np.testing.assert_array_equal(tos[0], s.tos_ms)
            self.assertEqual(mat["SequenceInfo"].shape, (1, 2))
            location = mat["SequenceInfo"][0, 0]["SliceLocation"]
            self.assertEqual(float(location.squeeze()), s.slice_location)

    def test_mat_v73(self):
        paths = synthetic_io.write_mat(self.slices, self.dir, version="7.3")
        self.check_manifest_and_scar(paths)
        for s in self.slices:
            path = os.path.join(self.dir, s.subject_id, s.slice_id + ".mat")
            with open(path, "rb") as fh:
                data = fh.read()
            self.assertTrue(data.startswith(b"MATLAB 7.3 MAT-file"))
            self.assertNotIn(s.subject_id.encode(), data)
            with h5py.File(path, "r") as f:
                info = f["StrainInfo"]
                self.assertEqual(info.attrs["MATLAB_class"], b"struct")
                for field in ("CCmid", "CCmidSVD"):
                    ds = info[field]
                    self.assertEqual(ds.attrs["MATLAB_class"], b"double")
                    self.assertEqual(ds.shape, (s.num_frames, 126))  # transposed
                    np.testing.assert_array_equal(ds[()].T, s.strain_matrix)
                if s.tos_ms is None:
                    self.assertNotIn("TOSAnalysis", f)
                    self.assertNotIn("SequenceInfo", f)
                    continue
                tos = f["TOSAnalysis/TOSfullRes_Jerry"]
                self.assertEqual(tos.shape, (126, 1))
                np.testing.assert_array_equal(tos[:, 0], s.tos_ms)
                seq = f["SequenceInfo"]
                self.assertEqual(seq.attrs["MATLAB_class"], b"struct")
                refs = seq["SliceLocation"]
                self.assertEqual(refs.shape, (2, 1))  # a 1x2 struct array
                self.assertIsNotNone(h5py.check_dtype(ref=refs.dtype))
                first = f[refs[0, 0]]
                self.assertEqual(first.attrs["MATLAB_class"], b"double")
                self.assertEqual(float(first[0, 0]), s.slice_location)


class CohortTest(WriterTestCase):
    def test_dispatch_and_errors(self):
        for fmt, ext in (("npz", ".npz"), ("npy", ".npy"), ("mat73", ".mat")):
            out = os.path.join(self.dir, fmt)
            paths = synthetic_io.write_cohort(self.slices[:2], out, fmt)
            self.assertTrue(paths[0].endswith(ext), paths)
            self.assertTrue(all(os.path.isfile(p) for p in paths))
        with self.assertRaises(ValueError):
            synthetic_io.write_cohort(self.slices, self.dir, "hdf5")
        with self.assertRaises(ValueError):
            npz.write([self.slices[0], self.slices[0]], self.dir)
        evil = DenseSlice("../x", "s", self.slices[0].strain_matrix)
        with self.assertRaises(ValueError):
            npz.write([evil], self.dir)

    def test_progress_counts_slices(self):
        for fmt in synthetic_io.FORMATS:
            counted = []
            out = os.path.join(self.dir, fmt)
            synthetic_io.write_cohort(self.slices, out, fmt, progress=counted.append)
            self.assertEqual(sum(counted), len(self.slices), fmt)

    def test_readers_round_trip(self):
        """What the writers write, `sources` reads back unchanged."""
        for fmt in synthetic_io.FORMATS:
            out = os.path.join(self.dir, fmt)
            synthetic_io.write_cohort(self.slices, out, fmt)
            got = list(sources.read_sources([out], allow_pickle=True))
            rejects = [r.line() for r in got if not isinstance(r, DenseSlice)]
            self.assertEqual(rejects, [], fmt)
            by_key = {s.key: validate_slice(s) for s in got}
            self.assertEqual(set(by_key), {s.key for s in self.slices}, fmt)
            for s in self.slices:
                r = by_key[s.key]
                np.testing.assert_array_equal(r.strain_matrix, s.strain_matrix)
                self.assertEqual(r.frame_period_ms, 17.0)
                if s.tos_ms is not None:
                    np.testing.assert_array_equal(r.tos_ms, s.tos_ms)
                    np.testing.assert_allclose(
                        r.scar_fraction, s.scar_fraction, atol=1e-6
                    )
                    self.assertAlmostEqual(r.slice_location, s.slice_location, places=5)


class SynthesizeCohortTest(WriterTestCase):
    def test_summary_and_files(self):
        summary = synthetic_io.synthesize_cohort(self.dir, 3, 5, "npy", "tethered")
        subjects = synthetic.generate_subjects(3, 5, "tethered")
        self.assertEqual(summary.num_subjects, 3)
        self.assertEqual(summary.num_slices, sum(len(s.slices) for s in subjects))
        self.assertEqual(summary.num_with_scar, sum(s.has_scar for s in subjects))
        self.assertEqual(
            [os.path.basename(p) for p in summary.paths],
            [f"{s.subject_id}.npy" for s in subjects],
        )
        with self.assertRaises(ValueError):
            synthetic_io.synthesize_cohort(self.dir, 1, 0, "hdf5")

    def test_first_subject_writes_the_later_subjects_of_a_bigger_cohort(self):
        summary = synthetic_io.synthesize_cohort(
            self.dir, 2, 5, "npz", "tethered", first_subject=3
        )
        bigger = synthetic.generate_subjects(5, 5, "tethered")[3:]
        want = {s.key: s for subject in bigger for s in subject.slices}
        self.assertEqual(summary.num_slices, len(want))
        got = list(sources.read_sources([self.dir]))
        self.assertEqual({r.key for r in got}, set(want))  # SYN0003, SYN0004
        for r in got:
            np.testing.assert_array_equal(r.strain_matrix, want[r.key].strain_matrix)
            np.testing.assert_array_equal(r.tos_ms, want[r.key].tos_ms)
        with self.assertRaises(ValueError):
            synthetic_io.synthesize_cohort(self.dir, 1, 0, first_subject=-1)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class ToolTest(unittest.TestCase):
    def test_synthesize_cohort_binary(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc = _run(
                os.path.join(REPO_ROOT, "tools", "synthesize_cohort.py"),
                f"--output_dir={tmp}",
                "--num_subjects=2",
                "--seed=5",
                "--format=npz",
            )
            self.assertEqual(proc.returncode, 0, proc.stderr)
            slices = synthetic.generate_cohort(2, 5)
            self.assertIn(f"2 subjects, {len(slices)} slices", proc.stdout)
            self.assertIn("npz", proc.stdout)
            self.assertEqual(
                len([f for f in _files(tmp) if f.endswith(".npz")]), len(slices)
            )

    def test_usage_errors_exit_2_in_one_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            for flag, needle in (
                ("--num_subjects=0", "--num_subjects must be >= 1"),
                ("--seed=-1", "--seed must be >= 0"),
                ("--first_subject=-2", "--first_subject must be >= 0"),
            ):
                proc = _run("-m", "lma_tf.cli.synthesize", f"--output_dir={tmp}", flag)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn(f"lma-tf synthesize: error: {needle}", proc.stderr)
                self.assertNotIn("Traceback", proc.stderr)
            self.assertEqual(_files(tmp), [])

    def test_flag_choices_match_the_library(self):
        """The command spells its choices (no numpy at import); they must agree."""
        code = (
            "import sys; import lma_tf.cli.synthesize as c; "
            "print(c.FORMATS, c.SCAR_MODELS); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))"
        )
        proc = _run("-c", code)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        choices, heavy = proc.stdout.splitlines()
        self.assertEqual(
            choices, f"{list(synthetic_io.FORMATS)} {list(synthetic.SCAR_MODELS)}"
        )
        self.assertEqual(heavy, "[]")


if __name__ == "__main__":
    unittest.main()
