"""Pickled `.npy` files: the authors' list of slice dicts, one file per subject.

Layout written: `<dir>/<subject_id>.npy`, an object array of dicts with keys
strain_matrix, TOS (1, 126) ms, subject_id, slice_name,
scar_sector_percentage (percent) and slice_location. The reader also accepts
the authors' other key names (first found wins): strain
`strainMatFullResolution` (leading singleton axes dropped), TOS
`TOSfullRes_Jerry`/`TOS126`/`tos_ms`, subject `patient_name`, slice `slice_id`,
location `slice_spatial_location`/`spatial_location`, scar `scar_fraction`
(fractions), and the optional orientation_sector0, orientation_offset,
orientation_direction (written when set). Missing subject: the folder's
name; missing slice name: `<file stem>_<index>`, also the id of a rejected
entry. Percent scar follows the per-file rule of `common.percent_to_fraction`
(docs/data.md).

Unpickling can run arbitrary code, so nothing is unpickled unless the caller
passes allow_pickle=True.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lma_tf import atomic, constants
from lma_tf.data.formats import common
from lma_tf.data.slices import ORIENTATION_FIELDS, DenseSlice, Reject, SliceError

EXTENSION = ".npy"

# Key names, the one written first; the reader takes the first one present.
STRAIN_KEYS = ("strain_matrix", "strainMatFullResolution")
TOS_KEYS = ("TOS", "TOSfullRes_Jerry", "TOS126", "tos_ms")
SUBJECT_KEYS = ("subject_id", "patient_name")
SLICE_KEYS = ("slice_name", "slice_id")
LOCATION_KEYS = ("slice_location", "slice_spatial_location", "spatial_location")
SCAR_PERCENT = "scar_sector_percentage"  # written; percent (see the docstring)
SCAR_FRACTION = "scar_fraction"  # read only, when there is no percent key
FRAME_PERIOD = "frame_period_ms"  # read only; absent means 17 ms
# Optional, read and written under the DenseSlice field names; absent: None.
ORIENTATION_SECTOR0, ORIENTATION_OFFSET, ORIENTATION_DIRECTION = ORIENTATION_FIELDS


def read(path: str, allow_pickle: bool = False) -> Iterator[DenseSlice | Reject]:
    """The slices of one pickled .npy (unvalidated) and a Reject per bad entry.

    Never raises: an unreadable file, a plain numeric array or (without
    `allow_pickle`) any pickled file is a single Reject of the whole file.
    """
    try:
        header = _npy_header(path)
        if header is None and not allow_pickle:
            raise SliceError("unreadable file: not a NumPy .npy file (no NPY header)")
        if header is not None and not header[1].hasobject:
            shape, dtype = header
            raise SliceError(
                f"plain numeric .npy array (shape {shape}, {dtype}) is not a "
                "supported slice source: a .npy must hold the authors' pickled "
                "list of slice dicts; save a single slice as .npz with keys "
                "subject_id, slice_id, strain_matrix"
            )
        if not allow_pickle:
            yield _pickle_refusal(path)
            return
        entries = _entries(np.load(path, allow_pickle=True))
    except SliceError as e:
        yield Reject(path, "", str(e))
        return
    except Exception as e:  # any failure is a reject, not a crash
        yield Reject(path, "", f"unreadable file: {common.describe(e)}")
        return

    stem = common.stem(path)
    percent = common.percent_to_fraction(_percent_scars(entries))
    for i, entry in enumerate(entries):
        slice_id = f"{stem}_{i}"
        try:
            if not isinstance(entry, dict):
                raise SliceError(f"a {type(entry).__name__}, not a dict")
            name = _first_key(entry, SLICE_KEYS)
            if name is not None:
                slice_id = common.to_str("slice_name", entry[name])
            yield _slice(path, entry, slice_id, percent)
        except Exception as e:  # one bad entry never stops the rest
            reason = str(e) if isinstance(e, SliceError) else common.describe(e)
            yield Reject(path, slice_id, f"entry {i}: {reason}")


def _pickle_refusal(path: str) -> Reject:
    return Reject(
        path,
        "",
        "this is a pickled .npy file (object array); unpickling can execute "
        "arbitrary code, so it is not read by default. If the file is trusted, "
        "pass --allow_pickle (allow_pickle=True) to read it.",
    )


def _npy_header(path: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from the .npy header, or None if there is no NPY header."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
        except ValueError:
            return None
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, dtype


def _entries(data: Any) -> list[Any]:
    """The list of entries held by whatever np.load returned."""
    if isinstance(data, np.ndarray):
        if data.dtype != object:
            raise SliceError(
                f"plain numeric .npy array (shape {data.shape}) is not a "
                "supported slice source"
            )
        if data.ndim == 0:
            data = data.item()
        else:
            return list(data.ravel())
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list | tuple):
        return list(data)
    raise SliceError(f"expected a list of slice dicts, got {type(data).__name__}")


def _percent_scars(entries: Sequence[Any]) -> list[np.ndarray]:
    """Every readable percent-scar array of the file (for the per-file rule)."""
    scars = []
    for entry in entries:
        if isinstance(entry, dict) and not common.is_empty(entry.get(SCAR_PERCENT)):
            try:
                scars.append(common.float_array("s", entry[SCAR_PERCENT]))
            except SliceError:
                pass  # reported with its own entry
    return scars


def _first_key(entry: dict, keys: Sequence[str]) -> str | None:
    for k in keys:
        if k in entry and not common.is_empty(entry[k]):
            return k
    return None


def _squeeze_leading(arr: np.ndarray) -> np.ndarray:
    """Drops leading singleton axes: the authors stored strain as (1, 1, S, F)."""
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def _slice(path: str, entry: dict, slice_id: str, percent: bool) -> DenseSlice:
    strain_key = _first_key(entry, STRAIN_KEYS)
    if strain_key is None:
        raise SliceError(f"no strain matrix (looked for {', '.join(STRAIN_KEYS)})")
    strain = _squeeze_leading(common.float_array(strain_key, entry[strain_key]))
    subject_key = _first_key(entry, SUBJECT_KEYS)
    subject_id = (
        common.to_str(subject_key, entry[subject_key])
        if subject_key
        else common.folder_name(path)
    )
    tos_key = _first_key(entry, TOS_KEYS)
    tos = common.vector(tos_key, entry[tos_key]) if tos_key else None
    scar = None
    if not common.is_empty(entry.get(SCAR_PERCENT)):
        scar = common.vector(SCAR_PERCENT, entry[SCAR_PERCENT])
        if percent:
            scar = scar / 100.0
    elif not common.is_empty(entry.get(SCAR_FRACTION)):
        scar = common.vector(SCAR_FRACTION, entry[SCAR_FRACTION])
    loc_key = _first_key(entry, LOCATION_KEYS)
    period = entry.get(FRAME_PERIOD)
    return DenseSlice(
        subject_id=subject_id,
        slice_id=slice_id,
        strain_matrix=strain,
        frame_period_ms=(
            constants.DEFAULT_FRAME_PERIOD_MS
            if common.is_empty(period)
            else common.to_float(FRAME_PERIOD, period)
        ),
        tos_ms=tos,
        scar_fraction=scar,
        slice_location=common.to_float(loc_key, entry[loc_key]) if loc_key else None,
        source=path,
        **_orientation(entry),
    )


def _orientation(entry: dict) -> dict[str, Any]:
    """The entry's orientation keys (text, number, text); absent or empty: None."""
    out: dict[str, Any] = {}
    for key in ORIENTATION_FIELDS:
        value = entry.get(key)
        convert = common.to_float if key == ORIENTATION_OFFSET else common.to_str
        out[key] = None if common.is_empty(value) else convert(key, value)
    return out


def to_dict(s: DenseSlice) -> dict[str, object]:
    """One entry of the authors' list: TOS as (1, 126) ms, scar in percent."""
    entry: dict[str, object] = {
        SUBJECT_KEYS[0]: str(s.subject_id),
        SLICE_KEYS[0]: str(s.slice_id),
        STRAIN_KEYS[0]: np.asarray(s.strain_matrix, dtype=np.float32),
    }
    if s.tos_ms is not None:
        entry[TOS_KEYS[0]] = np.asarray(s.tos_ms, dtype=np.float32).reshape(1, -1)
    if s.scar_fraction is not None:
        entry[SCAR_PERCENT] = (
            100.0 * np.asarray(s.scar_fraction, dtype=np.float64)
        ).astype(np.float32)
    if s.slice_location is not None:
        entry[LOCATION_KEYS[0]] = float(s.slice_location)
    for key in ORIENTATION_FIELDS:
        value = getattr(s, key)
        if value is not None:
            entry[key] = float(value) if key == ORIENTATION_OFFSET else str(value)
    return entry


def write(
    slices: Sequence[DenseSlice],
    output_dir: str,
    progress: common.Progress | None = None,
) -> list[str]:
    """One `<output_dir>/<subject_id>.npy` per subject: a pickled list of dicts.

    Reading it back needs `allow_pickle=True`. Files are written atomically.
    Returns the paths.
    """
    common.check_unique(slices)
    paths = []
    for subject, group in common.by_subject(slices).items():
        path = os.path.join(
            output_dir, common.safe_name(subject, "subject_id") + EXTENSION
        )
        entries = np.empty(len(group), dtype=object)
        for i, s in enumerate(group):
            common.safe_name(s.slice_id, "slice_id")
            entries[i] = to_dict(s)
        buf = io.BytesIO()
        np.save(buf, entries, allow_pickle=True)
        atomic.write_bytes(path, buf.getvalue())
        paths.append(path)
        if progress is not None:
            progress(len(group))
    return paths
