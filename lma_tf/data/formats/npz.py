"""`.npz` slices: one slice per file, plain arrays under the contract's keys.

Layout written: `<dir>/<subject_id>/<slice_id>.npz`. Keys: subject_id,
slice_id, strain_matrix (126, F), frame_period_ms, and tos_ms, scar_fraction,
slice_location and the three orientation keys (orientation_sector0,
orientation_offset, orientation_direction) where the slice has them; strings
as 0-d unicode arrays, so nothing needs pickle. On reading, a missing
subject_id is the folder's name, a missing slice_id the file's stem, a
missing frame period 17 ms, missing orientation keys None (docs/data.md).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from lma_tf import atomic, constants
from lma_tf.data.formats import common
from lma_tf.data.slices import ORIENTATION_FIELDS, DenseSlice, Reject, SliceError

EXTENSION = ".npz"

SUBJECT_ID = "subject_id"
SLICE_ID = "slice_id"
STRAIN = "strain_matrix"
FRAME_PERIOD = "frame_period_ms"
TOS = "tos_ms"
SCAR = "scar_fraction"
SLICE_LOCATION = "slice_location"
ORIENTATION_SECTOR0, ORIENTATION_OFFSET, ORIENTATION_DIRECTION = ORIENTATION_FIELDS
KEYS = (
    SUBJECT_ID,
    SLICE_ID,
    STRAIN,
    FRAME_PERIOD,
    TOS,
    SCAR,
    SLICE_LOCATION,
    *ORIENTATION_FIELDS,
)


def declared_arrays(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of the contract's keys, from the .npy headers only.

    Only the headers (a few hundred bytes per member) are decompressed, so a
    small file declaring a huge array (a decompression bomb) costs nothing.
    Raises on a file that is not a zip of .npy members.
    """
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            key = info.filename[: -len(".npy")]
            if not info.filename.endswith(".npy") or key not in KEYS:
                continue  # never read as an array, so never checked
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(fh)
            out[key] = (shape, dtype)
    return out


def read(path: str) -> Iterator[DenseSlice | Reject]:
    """The slice of one .npz file (unvalidated), or a Reject naming its reason.

    Every key read is checked from its declared shape and dtype first
    (`common.check_declared`): memory stays bounded whatever the file
    claims. Raises on a file that is not a readable .npz at all; the caller
    (`sources.read_source`) turns that into a Reject of the whole file.
    """
    with open(path, "rb") as fh:  # an unreadable file fails here, saying why
        if fh.read(2) != b"PK":
            raise SliceError("not an .npz archive (a plain .npy array?)")
    declared = declared_arrays(path)
    slice_id = common.stem(path)
    try:
        for key in KEYS:
            if key in declared:
                common.check_declared(key, *declared[key])
    except SliceError as e:
        yield Reject(path, slice_id, str(e))
        return
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise SliceError("not an .npz archive (a plain .npy array?)")
    with data:
        keys = set(data.files)
        raw = sorted(k for k in keys & set(KEYS) if k not in declared)
        if raw:  # np.load would hand back the member's bytes, unchecked
            yield Reject(path, slice_id, f"key {raw[0]} is not a .npy array")
            return

        def get(key: str) -> Any:
            try:
                return data[key]
            except ValueError as e:  # e.g. its data is cut short
                raise SliceError(
                    f"key {key} is unreadable ({common.describe(e)})"
                ) from None

        try:
            if SLICE_ID in keys:
                slice_id = common.to_str(SLICE_ID, get(SLICE_ID))
            if STRAIN not in keys:
                raise SliceError(f"missing key {STRAIN}")
            yield DenseSlice(
                subject_id=(
                    common.to_str(SUBJECT_ID, get(SUBJECT_ID))
                    if SUBJECT_ID in keys
                    else common.folder_name(path)
                ),
                slice_id=slice_id,
                strain_matrix=common.float_array(STRAIN, get(STRAIN)),
                frame_period_ms=(
                    common.to_float(FRAME_PERIOD, get(FRAME_PERIOD))
                    if FRAME_PERIOD in keys
                    else constants.DEFAULT_FRAME_PERIOD_MS
                ),
                tos_ms=common.vector(TOS, get(TOS)) if TOS in keys else None,
                scar_fraction=common.vector(SCAR, get(SCAR)) if SCAR in keys else None,
                slice_location=(
                    common.to_float(SLICE_LOCATION, get(SLICE_LOCATION))
                    if SLICE_LOCATION in keys
                    else None
                ),
                source=path,
                **_orientation(keys, get),
            )
        except SliceError as e:
            yield Reject(path, slice_id, str(e))


def _orientation(keys: set[str], get: Callable[[str], Any]) -> dict[str, Any]:
    """The orientation keys present (text, number, text); absent ones None."""
    out: dict[str, Any] = {}
    for key in ORIENTATION_FIELDS:
        convert = common.to_float if key == ORIENTATION_OFFSET else common.to_str
        out[key] = convert(key, get(key)) if key in keys else None
    return out


def to_dict(s: DenseSlice) -> dict[str, np.ndarray]:
    """The arrays of one .npz file; strings as 0-d unicode arrays (no pickle)."""
    out = {
        SUBJECT_ID: np.array(str(s.subject_id)),
        SLICE_ID: np.array(str(s.slice_id)),
        STRAIN: np.asarray(s.strain_matrix, dtype=np.float32),
        FRAME_PERIOD: np.array(float(s.frame_period_ms)),
    }
    if s.tos_ms is not None:
        out[TOS] = np.asarray(s.tos_ms, dtype=np.float32)
    if s.scar_fraction is not None:
        out[SCAR] = np.asarray(s.scar_fraction, dtype=np.float32)
    if s.slice_location is not None:
        out[SLICE_LOCATION] = np.array(float(s.slice_location))
    if s.orientation_sector0 is not None:
        out[ORIENTATION_SECTOR0] = np.array(str(s.orientation_sector0))
    if s.orientation_offset is not None:
        out[ORIENTATION_OFFSET] = np.array(float(s.orientation_offset))
    if s.orientation_direction is not None:
        out[ORIENTATION_DIRECTION] = np.array(str(s.orientation_direction))
    return out


def write(
    slices: Sequence[DenseSlice],
    output_dir: str,
    progress: common.Progress | None = None,
) -> list[str]:
    """One `<output_dir>/<subject_id>/<slice_id>.npz` per slice; returns the paths.

    Each file is written atomically (hidden temporary name, then renamed), so
    a reader never sees half a file.
    """
    common.check_unique(slices)
    paths = []
    for s in slices:
        path = common.slice_path(output_dir, s, EXTENSION)
        buf = io.BytesIO()
        np.savez(buf, **to_dict(s))
        atomic.write_bytes(path, buf.getvalue())
        paths.append(path)
        if progress is not None:
            progress(1)
    return paths
