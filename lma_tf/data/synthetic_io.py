"""Writes slices in every input format of the data contract (DESIGN.md).

Used to turn a synthetic cohort into files that `tools/make_records.py` reads,
so each reader is tested on inputs laid out like the real ones:

- npz:   `<dir>/<subject>/<slice>.npz`, one slice per file, contract keys.
- npy:   `<dir>/<subject>.npy`, the authors' pickled list of dicts.
- mat:   DENSEanalysis exports (MATLAB v5), `<dir>/<subject>/<slice>.mat`,
         plus `<dir>/manifest.csv` and `<dir>/<subject>/<slice>_scar.csv`.
- mat73: the same as MATLAB v7.3 (HDF5) files written with h5py.

Every file is written atomically: to a hidden temporary name in the target
folder, then `os.replace`d, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import os
import struct
from collections.abc import Callable, Sequence

import h5py
import numpy as np
import scipy.io

from lma_tf import atomic
from lma_tf.data.slices import DenseSlice

FORMATS = ("npz", "npy", "mat", "mat73")
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("file", "subject_id", "slice_id", "scar_csv")
SCAR_CSV_SUFFIX = "_scar.csv"

Progress = Callable[[int], object]  # called with the number of slices just written


def _safe_name(name: str, what: str) -> str:
    """Refuses ids that would escape their folder or be hidden/empty files."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{what} {name!r} cannot be used as a file name")
    return name


def _check_unique(slices: Sequence[DenseSlice]) -> None:
    seen: set[tuple[str, str]] = set()
    for s in slices:
        if s.key in seen:
            raise ValueError(f"duplicate slice {s.key}")
        seen.add(s.key)


def _by_subject(slices: Sequence[DenseSlice]) -> dict[str, list[DenseSlice]]:
    """Slices grouped by subject, in first-seen order."""
    groups: dict[str, list[DenseSlice]] = {}
    for s in slices:
        groups.setdefault(s.subject_id, []).append(s)
    return groups


def _slice_path(output_dir: str, s: DenseSlice, suffix: str) -> str:
    subject = _safe_name(s.subject_id, "subject_id")
    return os.path.join(
        output_dir, subject, _safe_name(s.slice_id, "slice_id") + suffix
    )


# ---------------------------------------------------------------------------
# npz


def slice_to_npz_dict(s: DenseSlice) -> dict[str, np.ndarray]:
    """The contract's npz keys; strings as 0-d unicode arrays (no pickle needed)."""
    out = {
        "subject_id": np.array(str(s.subject_id)),
        "slice_id": np.array(str(s.slice_id)),
        "strain_matrix": np.asarray(s.strain_matrix, dtype=np.float32),
        "frame_period_ms": np.array(float(s.frame_period_ms)),
    }
    if s.tos_ms is not None:
        out["tos_ms"] = np.asarray(s.tos_ms, dtype=np.float32)
    if s.scar_fraction is not None:
        out["scar_fraction"] = np.asarray(s.scar_fraction, dtype=np.float32)
    if s.slice_location is not None:
        out["slice_location"] = np.array(float(s.slice_location))
    return out


def write_npz(
    slices: Sequence[DenseSlice], output_dir: str, progress: Progress | None = None
) -> list[str]:
    """One `<output_dir>/<subject_id>/<slice_id>.npz` per slice; returns the paths.

    Keys: subject_id, slice_id, strain_matrix, frame_period_ms, and tos_ms,
    scar_fraction, slice_location where the slice has them.
    """
    _check_unique(slices)
    paths = []
    for s in slices:
        path = _slice_path(output_dir, s, ".npz")
        buf = io.BytesIO()
        np.savez(buf, **slice_to_npz_dict(s))
        atomic.write_bytes(path, buf.getvalue())
        paths.append(path)
        if progress is not None:
            progress(1)
    return paths


# ---------------------------------------------------------------------------
# npy (the authors' pickled list of dicts)


def slice_to_authors_dict(s: DenseSlice) -> dict[str, object]:
    """One entry of the authors' list: TOS as (1, 126) ms, scar in percent."""
    entry: dict[str, object] = {
        "subject_id": str(s.subject_id),
        "slice_name": str(s.slice_id),
        "strain_matrix": np.asarray(s.strain_matrix, dtype=np.float32),
    }
    if s.tos_ms is not None:
        entry["TOS"] = np.asarray(s.tos_ms, dtype=np.float32).reshape(1, -1)
    if s.scar_fraction is not None:
        entry["scar_sector_percentage"] = (
            100.0 * np.asarray(s.scar_fraction, dtype=np.float64)
        ).astype(np.float32)
    if s.slice_location is not None:
        entry["slice_location"] = float(s.slice_location)
    return entry


def write_npy(
    slices: Sequence[DenseSlice], output_dir: str, progress: Progress | None = None
) -> list[str]:
    """One `<output_dir>/<subject_id>.npy` per subject: a pickled list of dicts.

    The authors' convention (keys strain_matrix, TOS (1, 126), subject_id,
    slice_name, scar_sector_percentage in percent, slice_location). Reading it
    back needs `allow_pickle=True`. Returns the paths.
    """
    _check_unique(slices)
    paths = []
    for subject, group in _by_subject(slices).items():
        path = os.path.join(output_dir, _safe_name(subject, "subject_id") + ".npy")
        entries = np.empty(len(group), dtype=object)
        for i, s in enumerate(group):
            _safe_name(s.slice_id, "slice_id")
            entries[i] = slice_to_authors_dict(s)
        buf = io.BytesIO()
        np.save(buf, entries, allow_pickle=True)
        atomic.write_bytes(path, buf.getvalue())
        paths.append(path)
        if progress is not None:
            progress(len(group))
    return paths


# ---------------------------------------------------------------------------
# DENSEanalysis .mat exports


def _mat_fields(s: DenseSlice) -> dict[str, dict[str, np.ndarray]]:
    """The nested structs of an export as {struct: {field: MATLAB-shaped array}}.

    SequenceInfo is handled apart (a 1x2 struct array). Frame period and
    scar are not part of an export: the reader assumes 17 ms per frame.
    """
    strain = np.asarray(s.strain_matrix, dtype=np.float64)
    fields: dict[str, dict[str, np.ndarray]] = {
        "StrainInfo": {"CCmid": strain, "CCmidSVD": strain.copy()}
    }
    if s.tos_ms is not None:
        tos = np.asarray(s.tos_ms, dtype=np.float64).reshape(1, -1)
        fields["TOSAnalysis"] = {"TOSfullRes_Jerry": tos}
    return fields


def _write_mat5(path: str, s: DenseSlice) -> None:
    variables: dict[str, object] = dict(_mat_fields(s))
    if s.slice_location is not None:
        seq = np.empty((1, 2), dtype=[("SliceLocation", object)])
        for j in range(2):
            seq["SliceLocation"][0, j] = np.array([[float(s.slice_location)]])
        variables["SequenceInfo"] = seq
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", oned_as="row")
    atomic.write_bytes(path, buf.getvalue())


_MAT73_HEADER_TEXT = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: lma_tf.data.synthetic_io "
    b"HDF5 schema 1.00 ."
)


def _set_matlab_struct(group: h5py.Group, field_names: Sequence[str]) -> None:
    """Marks a group as a MATLAB struct (MATLAB_class plus MATLAB_fields)."""
    group.attrs.create("MATLAB_class", np.bytes_("struct"))
    vlen = h5py.vlen_dtype(np.dtype("S1"))
    names = np.empty(len(field_names), dtype=object)
    for i, name in enumerate(field_names):
        names[i] = np.frombuffer(name.encode("ascii"), dtype="S1")
    group.attrs.create("MATLAB_fields", names, dtype=vlen)


def _write_matlab_double(
    parent: h5py.Group, name: str, value: np.ndarray
) -> h5py.Dataset:
    """A MATLAB double array: stored transposed (MATLAB is column-major)."""
    arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
    dset = parent.create_dataset(name, data=np.ascontiguousarray(arr.T))
    dset.attrs.create("MATLAB_class", np.bytes_("double"))
    return dset


def _write_mat73(path: str, s: DenseSlice) -> None:
    """MATLAB v7.3 layout: HDF5 with a 512-byte MAT header in the user block.

    Structs are groups (MATLAB_class='struct', MATLAB_fields); a 126 x F
    MATLAB double is an (F, 126) float64 dataset with MATLAB_class='double'.
    SequenceInfo is a real 1x2 struct array: its field SliceLocation is a
    (2, 1) dataset of object references to (1, 1) doubles in '/#refs#'.
    """
    with atomic.atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as f:
            for struct_name, fields in _mat_fields(s).items():
                group = f.create_group(struct_name)
                _set_matlab_struct(group, list(fields))
                for field, value in fields.items():
                    _write_matlab_double(group, field, value)
            if s.slice_location is not None:
                refs = f.create_group("#refs#")
                seq = f.create_group("SequenceInfo")
                _set_matlab_struct(seq, ["SliceLocation"])
                targets = []
                for ref_name in ("a", "b"):
                    target = _write_matlab_double(
                        refs, ref_name, np.array([[float(s.slice_location)]])
                    )
                    target.attrs.create("H5PATH", np.bytes_("/SequenceInfo"))
                    targets.append(target.ref)
                ref_data = np.empty((2, 1), dtype=h5py.ref_dtype)
                ref_data[0, 0], ref_data[1, 0] = targets
                seq.create_dataset("SliceLocation", data=ref_data, dtype=h5py.ref_dtype)
        header = _MAT73_HEADER_TEXT.ljust(116, b" ") + b" " * 8
        header += struct.pack("<H", 0x0200) + b"IM"
        with open(tmp, "r+b") as f:
            f.write(header.ljust(512, b"\0"))


def _scar_csv_text(scar: np.ndarray) -> str:
    """126 comma-separated fractions on one line (shortest exact float32 text)."""
    values = np.asarray(scar, dtype=np.float32)
    return ",".join(np.format_float_positional(v, trim="-") for v in values) + "\n"


def _manifest_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_mat(
    slices: Sequence[DenseSlice],
    output_dir: str,
    version: str = "5",
    progress: Progress | None = None,
) -> list[str]:
    """DENSEanalysis-style exports, one folder per patient, plus a record sheet.

    Writes `<output_dir>/<subject_id>/<slice_id>.mat` (MATLAB v5 with
    version="5", v7.3/HDF5 with "7.3") holding StrainInfo.CCmid and
    StrainInfo.CCmidSVD (126 x F), TOSAnalysis.TOSfullRes_Jerry (1 x 126 ms)
    and SequenceInfo (1x2 struct array, SliceLocation in mm) -- no patient
    id, as in real exports. Scar is not part of an export, so each slice with
    scar also gets `<subject_id>/<slice_id>_scar.csv` (126 fractions, one
    line, no header), and `<output_dir>/manifest.csv` names file, subject_id,
    slice_id and scar_csv (paths relative to the manifest, '/'-separated,
    scar_csv empty when there is none). Returns the .mat paths, then the
    scar CSVs, then the manifest.
    """
    if version not in ("5", "7.3"):
        raise ValueError(f"version must be '5' or '7.3', got {version!r}")
    _check_unique(slices)
    mat_paths, scar_paths, rows = [], [], []
    for s in slices:
        path = _slice_path(output_dir, s, ".mat")
        if version == "5":
            _write_mat5(path, s)
        else:
            _write_mat73(path, s)
        mat_paths.append(path)
        scar_rel = ""
        if s.scar_fraction is not None:
            scar_path = _slice_path(output_dir, s, SCAR_CSV_SUFFIX)
            atomic.write_bytes(scar_path, _scar_csv_text(s.scar_fraction).encode())
            scar_paths.append(scar_path)
            scar_rel = f"{s.subject_id}/{s.slice_id}{SCAR_CSV_SUFFIX}"
        rows.append(
            {
                "file": f"{s.subject_id}/{s.slice_id}.mat",
                "subject_id": s.subject_id,
                "slice_id": s.slice_id,
                "scar_csv": scar_rel,
            }
        )
        if progress is not None:
            progress(1)
    manifest = os.path.join(output_dir, MANIFEST_NAME)
    atomic.write_bytes(manifest, _manifest_text(rows).encode())
    return mat_paths + scar_paths + [manifest]


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
        return write_npz(slices, output_dir, progress)
    if fmt == "npy":
        return write_npy(slices, output_dir, progress)
    if fmt == "mat":
        return write_mat(slices, output_dir, "5", progress)
    if fmt == "mat73":
        return write_mat(slices, output_dir, "7.3", progress)
    raise ValueError(f"unknown format {fmt!r}, expected one of {FORMATS}")
