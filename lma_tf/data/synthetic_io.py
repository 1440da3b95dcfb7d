"""Writes slices in any input format of the data contract (see docs/data.md).

Turns a synthetic cohort into files laid out like the real ones, so that
each reader is tested on the layout it will meet. The writers live in
`lma_tf.data.formats`, next to their readers; this module picks one:

- npz:   `<dir>/<subject>/<slice>.npz`, one slice per file, contract keys.
- npy:   `<dir>/<subject>.npy`, the authors' pickled list of dicts.
- mat:   DENSEanalysis exports (MATLAB v5), `<dir>/<subject>/<slice>.mat`,
         plus `<dir>/manifest.csv` and `<dir>/<subject>/<slice>_scar.csv`.
- mat73: the same as MATLAB v7.3 (HDF5) files written with h5py.

Every file is written atomically: to a hidden temporary name in the target
folder, then `os.replace`d, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tqdm

from lma_tf.data import synthetic
from lma_tf.data.formats import mat, npy, npz, record_sheet
from lma_tf.data.formats.common import Progress
from lma_tf.data.slices import DenseSlice

FORMATS = ("npz", "npy", "mat", "mat73")

__all__ = [
    "FORMATS",
    "CohortSummary",
    "Progress",
    "synthesize_cohort",
    "write_cohort",
    "write_mat",
]


@dataclasses.dataclass(frozen=True)
class CohortSummary:
    """What `synthesize_cohort` wrote."""

    num_subjects: int
    num_slices: int
    num_with_scar: int  # subjects with scar
    paths: tuple[str, ...]


def write_mat(
    slices: Sequence[DenseSlice],
    output_dir: str,
    version: str = "5",
    progress: Progress | None = None,
) -> list[str]:
    """DENSEanalysis-style exports, one folder per patient, plus a record sheet.

    `mat.write` (version "5" or "7.3") then `record_sheet.write`: exports
    carry no patient id and no scar, the sheet names both. Returns the .mat
    paths, then the scar CSVs, then the sheet (`<output_dir>/manifest.csv`).
    """
    paths = mat.write(slices, output_dir, version, progress)
    return paths + record_sheet.write(slices, output_dir, mat.EXTENSION)


def write_cohort(
    slices: Sequence[DenseSlice],
    output_dir: str,
    fmt: str,
    progress: Progress | None = None,
) -> list[str]:
    """Writes `slices` in `fmt` (one of FORMATS); returns the paths written.

    `progress`, if given, is called with the number of slices after each file
    (e.g. a tqdm bar's `update`).
    """
    if fmt == "npz":
        return npz.write(slices, output_dir, progress)
    if fmt == "npy":
        return npy.write(slices, output_dir, progress)
    if fmt == "mat":
        return write_mat(slices, output_dir, "5", progress)
    if fmt == "mat73":
        return write_mat(slices, output_dir, "7.3", progress)
    raise ValueError(f"unknown format {fmt!r}, expected one of {FORMATS}")


def synthesize_cohort(
    output_dir: str,
    num_subjects: int,
    seed: int,
    fmt: str = "npz",
    scar_model: str = "passive",
    progress: bool = False,
    first_subject: int = 0,
) -> CohortSummary:
    """Generates subjects first_subject..first_subject+num_subjects-1 of `seed`
    and writes them in `fmt`.

    The library behind `lma-tf synthesize`; `progress` shows tqdm bars for
    the generation (per subject) and the writing (per slice). A subject
    depends on (seed, index) only, so `first_subject=150, num_subjects=300`
    writes subjects 150-449 of a 450-subject cohort, which never share an id
    with subjects 0-149 (extra training subjects for a cohort).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}, expected one of {FORMATS}")
    if first_subject < 0:
        raise ValueError(f"first_subject must be >= 0, got {first_subject}")
    indices = range(first_subject, first_subject + num_subjects)
    subjects = [
        synthetic.generate_subject(
            synthetic.subject_rng(seed, i),
            synthetic.subject_id_for(i),
            scar_model=scar_model,
        )
        for i in tqdm.tqdm(
            indices, desc="generate", unit="subject", disable=not progress
        )
    ]
    slices = [s for subject in subjects for s in subject.slices]
    bar = tqdm.tqdm(total=len(slices), desc="write", unit="slice", disable=not progress)
    with bar:
        paths = write_cohort(slices, output_dir, fmt, bar.update)
    return CohortSummary(
        num_subjects=len(subjects),
        num_slices=len(slices),
        num_with_scar=sum(subject.has_scar for subject in subjects),
        paths=tuple(paths),
    )
