"""Readers for every input source of the data contract (DESIGN.md).

Turns `.npz` slices, the authors' pickled `.npy` lists, DENSEanalysis `.mat`
exports (MATLAB v5 and v7.3) and CSV manifests into `DenseSlice`s, or into
`Reject`s naming the file, the slice and the reason. Slices come back NOT yet
validated (the caller runs `slices.validate_slice`); a bad file or entry never
raises, so good slices elsewhere are never lost. Numpy/scipy/h5py only.

Rules for the ambiguous cases:

- Scar in percent (`scar_sector_percentage`, or a scar CSV column whose name
  says "percent") is divided by 100, unless every finite value in that *file*
  lies in [0, 1], in which case the values are taken as fractions already.
  Deciding per file rather than per slice keeps a slice with <= 1 % scar in a
  percent file from being read as 100 % scar. (A file whose every slice has
  <= 1 % scar is still read as fractions: the units cannot be told apart.)
- In `.mat` exports a present-but-empty field (MATLAB `[]`) counts as absent,
  so the next field in the priority order is used. A TOS candidate is taken
  only if it has 126 values; if none has, the first one found is passed on so
  that validation rejects the slice with its shape rather than silently
  dropping the label.
- Struct arrays (e.g. `SequenceInfo`) are read at their first element, as
  MATLAB's `SequenceInfo(1)`. Frame period of a `.mat`: a top-level
  `frame_period_ms`, else `SequenceInfo(1).TemporalResolution`, else 17 ms.
- Pickled `.npy` dicts also accept the authors' other key names: strain
  `strainMatFullResolution` (leading singleton axes dropped), TOS
  `TOSfullRes_Jerry`/`TOS126`, subject `patient_name`, location
  `slice_spatial_location`. Missing subject: the folder's name; missing
  `slice_name`: `<file stem>_<index>` (also the id of a rejected entry).
- A manifest row's `subject_id`/`slice_id`/`frame_period_ms`/`slice_location`/
  `scar_csv` override the file's values. If the row names a slice_id and its
  file (a pickled `.npy`) holds several slices, the row selects the slice of
  that id. Manifest rows may not name another manifest.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import h5py
import numpy as np
import scipy.io

from lma_tf import constants
from lma_tf.data.slices import DenseSlice, Reject, SliceError

SLICE_EXTENSIONS = (".npz", ".npy", ".mat")
MANIFEST_EXTENSION = ".csv"
MANIFEST_NAME = "manifest.csv"

# DENSEanalysis field paths, in priority order.
_MAT_STRAIN_FIELDS: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("StrainInfo", "CCmidSVD"), False),  # (126, frames)
    (("StrainInfo", "CCmid"), False),  # (126, frames)
    (("TransmuralStrainInfo", "Ecc", "mid"), True),  # (frames, segments)
)
_MAT_TOS_FIELDS: tuple[tuple[str, ...], ...] = (
    ("TOSAnalysis", "TOSfullRes_Jerry"),
    ("TOS126",),  # top-level variable of the authors' TOS files
    ("TOSAnalysis", "TOS126"),
    ("TOSAnalysis", "TOS"),
)
_MAT_LOCATION_FIELD = ("SequenceInfo", "SliceLocation")
_MAT_PERIOD_FIELDS: tuple[tuple[str, ...], ...] = (
    ("frame_period_ms",),
    ("SequenceInfo", "TemporalResolution"),
)
_MAT_VARIABLES = sorted(
    {p[0][0] for p in _MAT_STRAIN_FIELDS}
    | {p[0] for p in _MAT_TOS_FIELDS}
    | {_MAT_LOCATION_FIELD[0]}
    | {p[0] for p in _MAT_PERIOD_FIELDS}
)

# Keys of the authors' pickled slice dicts (first found wins).
_NPY_STRAIN_KEYS = ("strain_matrix", "strainMatFullResolution")
_NPY_TOS_KEYS = ("TOS", "TOSfullRes_Jerry", "TOS126", "tos_ms")
_NPY_SUBJECT_KEYS = ("subject_id", "patient_name")
_NPY_SLICE_KEYS = ("slice_name", "slice_id")
_NPY_LOCATION_KEYS = ("slice_location", "slice_spatial_location", "spatial_location")

_SCAR_COLUMNS = (
    "scar_fraction",
    "scar_percentage",
    "scar_sector_percentage",
    "scar",
    "fraction",
)


# ----------------------------------------------------------------------------
# Public API


def discover(paths: Sequence[str]) -> list[str]:
    """Expands files and directories into a sorted, de-duplicated source list.

    Directories are searched recursively for .npz/.npy/.mat files (hidden
    entries and other extensions skipped), except that a directory holding a
    `manifest.csv` contributes only that manifest: the manifest says what in
    it is data. Explicitly named files are kept whatever their extension
    (`read_source` rejects unsupported ones with a reason).

    Raises:
      FileNotFoundError: an input path does not exist.
    """
    if isinstance(paths, str):
        paths = [paths]
    found: dict[str, str] = {}  # real path -> path as reported
    for path in paths:
        path = os.path.expanduser(str(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"input path not found: {path}")
        candidates = _walk(path) if os.path.isdir(path) else [path]
        for candidate in candidates:
            candidate = os.path.normpath(candidate)
            found.setdefault(os.path.realpath(candidate), candidate)
    return sorted(set(found.values()))


def read_source(path: str, allow_pickle: bool = False) -> Iterator[DenseSlice | Reject]:
    """Reads one source file into slices (unvalidated) and rejects.

    Dispatches on the extension. A file that cannot be read at all yields a
    single `Reject(file=path, slice_id="", ...)`; nothing is raised.
    Pickled `.npy` files are read only with `allow_pickle=True`.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        reader = _read_npz
    elif ext == ".npy":
        yield from _read_npy(path, allow_pickle)
        return
    elif ext == ".mat":
        reader = _read_mat
    elif ext == MANIFEST_EXTENSION:
        yield from _read_manifest(path, allow_pickle)
        return
    else:
        yield Reject(
            path,
            "",
            f"unsupported file type {ext or '(none)'!r}: expected .npz, .npy, "
            ".mat or a .csv manifest",
        )
        return
    try:
        items = list(reader(path))
    except Exception as e:  # any failure is a reject, not a crash
        items = [Reject(path, "", f"unreadable file: {_describe(e)}")]
    yield from items


def read_sources(
    paths: Sequence[str], allow_pickle: bool = False
) -> Iterator[DenseSlice | Reject]:
    """`discover` then `read_source` over every file found.

    Discovery runs now, so a missing input path raises FileNotFoundError at
    the call rather than at the first iteration.
    """
    files = discover(paths)

    def _gen() -> Iterator[DenseSlice | Reject]:
        for f in files:
            yield from read_source(f, allow_pickle)

    return _gen()


# ----------------------------------------------------------------------------
# Discovery


def _walk(root: str) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        if MANIFEST_NAME in filenames:
            dirnames[:] = []  # the manifest covers this whole subtree
            yield os.path.join(dirpath, MANIFEST_NAME)
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):  # incl. macOS "._x.mat" resource forks
                continue
            if os.path.splitext(name)[1].lower() in SLICE_EXTENSIONS:
                yield os.path.join(dirpath, name)


# ----------------------------------------------------------------------------
# Small conversions shared by the readers


def _describe(e: BaseException) -> str:
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _folder_name(path: str) -> str:
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def _to_str(name: str, value: Any) -> str:
    """A scalar (str, bytes, number, or size-1 array) as a string id."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise SliceError(f"{name} must be a single value, got shape {value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _to_float(name: str, value: Any) -> float:
    """A scalar (or size-1 array) as a float; raises SliceError otherwise."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise SliceError(f"{name} must be a single number, got shape {arr.shape}")
    try:
        return float(arr.reshape(-1)[0])
    except (TypeError, ValueError):
        raise SliceError(f"{name} is not a number: {value!r}") from None


def _float_array(name: str, value: Any) -> np.ndarray:
    """A float64 array of the shape found; raises SliceError if not numeric."""
    if isinstance(value, str | bytes):
        raise SliceError(f"{name} is text, not a numeric array")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SliceError(f"{name} is not a numeric array ({_describe(e)})") from None
    return arr


def _vector(name: str, value: Any) -> np.ndarray:
    """A float array; 1xN / Nx1 (any singleton axes) flattened to (N,)."""
    arr = _float_array(name, value)
    if arr.ndim > 1 and sum(d != 1 for d in arr.shape) <= 1:
        arr = arr.reshape(-1)
    return arr


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, np.ndarray) and value.size == 0)


def _percent_to_fraction(values: Iterable[np.ndarray]) -> bool:
    """True if scar values given in percent must be divided by 100.

    They are, unless every finite value lies in [0, 1] (then they are already
    fractions). See the module docstring.
    """
    for v in values:
        finite = v[np.isfinite(v)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            return True
    return False


# ----------------------------------------------------------------------------
# .npz: one slice per file


def _read_npz(path: str) -> Iterator[DenseSlice | Reject]:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise SliceError("not an .npz archive (a plain .npy array?)")
    with data:
        keys = set(data.files)

        def get(key: str) -> Any:
            try:
                return data[key]
            except ValueError as e:  # e.g. a pickled object array
                raise SliceError(
                    f"key {key} cannot be read without pickle ({_describe(e)}); "
                    ".npz sources must hold plain arrays"
                ) from None

        slice_id = _stem(path)
        try:
            if "slice_id" in keys:
                slice_id = _to_str("slice_id", get("slice_id"))
            if "strain_matrix" not in keys:
                raise SliceError("missing key strain_matrix")
            subject_id = (
                _to_str("subject_id", get("subject_id"))
                if "subject_id" in keys
                else _folder_name(path)
            )
            yield DenseSlice(
                subject_id=subject_id,
                slice_id=slice_id,
                strain_matrix=_float_array("strain_matrix", get("strain_matrix")),
                frame_period_ms=(
                    _to_float("frame_period_ms", get("frame_period_ms"))
                    if "frame_period_ms" in keys
                    else constants.DEFAULT_FRAME_PERIOD_MS
                ),
                tos_ms=_vector("tos_ms", get("tos_ms")) if "tos_ms" in keys else None,
                scar_fraction=(
                    _vector("scar_fraction", get("scar_fraction"))
                    if "scar_fraction" in keys
                    else None
                ),
                slice_location=(
                    _to_float("slice_location", get("slice_location"))
                    if "slice_location" in keys
                    else None
                ),
                source=path,
            )
        except SliceError as e:
            yield Reject(path, slice_id, str(e))


# ----------------------------------------------------------------------------
# .npy: the authors' pickled list of dicts


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


def _read_npy(path: str, allow_pickle: bool) -> Iterator[DenseSlice | Reject]:
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
        entries = _npy_entries(np.load(path, allow_pickle=True))
    except SliceError as e:
        yield Reject(path, "", str(e))
        return
    except Exception as e:  # any failure is a reject, not a crash
        yield Reject(path, "", f"unreadable file: {_describe(e)}")
        return

    stem = _stem(path)
    scars = []
    for entry in entries:
        if isinstance(entry, dict) and not _is_empty(
            entry.get("scar_sector_percentage")
        ):
            try:
                scars.append(_float_array("s", entry["scar_sector_percentage"]))
            except SliceError:
                pass  # reported with its own entry below
    percent = _percent_to_fraction(scars)

    for i, entry in enumerate(entries):
        slice_id = f"{stem}_{i}"
        try:
            if not isinstance(entry, dict):
                raise SliceError(f"a {type(entry).__name__}, not a dict")
            name = _first_key(entry, _NPY_SLICE_KEYS)
            if name is not None:
                slice_id = _to_str("slice_name", entry[name])
            yield _npy_slice(path, entry, slice_id, percent)
        except Exception as e:  # one bad entry never stops the rest
            reason = str(e) if isinstance(e, SliceError) else _describe(e)
            yield Reject(path, slice_id, f"entry {i}: {reason}")


def _npy_entries(data: Any) -> list[Any]:
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


def _first_key(entry: dict, keys: Sequence[str]) -> str | None:
    for k in keys:
        if k in entry and not _is_empty(entry[k]):
            return k
    return None


def _squeeze_leading(arr: np.ndarray) -> np.ndarray:
    """Drops leading singleton axes: the authors stored strain as (1, 1, S, F)."""
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def _npy_slice(path: str, entry: dict, slice_id: str, percent: bool) -> DenseSlice:
    strain_key = _first_key(entry, _NPY_STRAIN_KEYS)
    if strain_key is None:
        raise SliceError(f"no strain matrix (looked for {', '.join(_NPY_STRAIN_KEYS)})")
    strain = _squeeze_leading(_float_array(strain_key, entry[strain_key]))
    subject_key = _first_key(entry, _NPY_SUBJECT_KEYS)
    subject_id = (
        _to_str(subject_key, entry[subject_key]) if subject_key else _folder_name(path)
    )
    tos_key = _first_key(entry, _NPY_TOS_KEYS)
    tos = _vector(tos_key, entry[tos_key]) if tos_key else None
    scar = None
    if not _is_empty(entry.get("scar_sector_percentage")):
        scar = _vector("scar_sector_percentage", entry["scar_sector_percentage"])
        if percent:
            scar = scar / 100.0
    elif not _is_empty(entry.get("scar_fraction")):
        scar = _vector("scar_fraction", entry["scar_fraction"])
    loc_key = _first_key(entry, _NPY_LOCATION_KEYS)
    period = entry.get("frame_period_ms")
    return DenseSlice(
        subject_id=subject_id,
        slice_id=slice_id,
        strain_matrix=strain,
        frame_period_ms=(
            constants.DEFAULT_FRAME_PERIOD_MS
            if _is_empty(period)
            else _to_float("frame_period_ms", period)
        ),
        tos_ms=tos,
        scar_fraction=scar,
        slice_location=_to_float(loc_key, entry[loc_key]) if loc_key else None,
        source=path,
    )


# ----------------------------------------------------------------------------
# DENSEanalysis .mat exports


def _read_mat(path: str) -> Iterator[DenseSlice | Reject]:
    slice_id = _stem(path)
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            item = _mat_slice(path, slice_id, lambda fields: _h5_lookup(f, fields))
    else:
        mat = scipy.io.loadmat(
            path,
            squeeze_me=True,
            struct_as_record=False,
            variable_names=_MAT_VARIABLES,
        )
        item = _mat_slice(path, slice_id, lambda fields: _v5_lookup(mat, fields))
    yield item


def _mat_slice(path: str, slice_id: str, lookup) -> DenseSlice | Reject:
    """Builds the slice from a field lookup (None = absent or empty)."""
    try:
        strain = None
        for fields, frames_first in _MAT_STRAIN_FIELDS:
            value = lookup(fields)
            if not _is_empty(value):
                strain = _float_array(".".join(fields), value)
                if frames_first:
                    strain = strain.T
                break
        if strain is None:
            searched = ", ".join(".".join(f) for f, _ in _MAT_STRAIN_FIELDS)
            raise SliceError(f"no strain found (searched {searched})")

        tos = None
        for fields in _MAT_TOS_FIELDS:
            value = lookup(fields)
            if _is_empty(value):
                continue
            vec = _vector(".".join(fields), value)
            if vec.size == constants.NUM_SECTORS:
                tos = vec
                break
            if tos is None:
                tos = vec  # kept only if no candidate has 126 values

        location = lookup(_MAT_LOCATION_FIELD)
        period = constants.DEFAULT_FRAME_PERIOD_MS
        for fields in _MAT_PERIOD_FIELDS:
            value = lookup(fields)
            if not _is_empty(value):
                period = _to_float(".".join(fields), value)
                break
        return DenseSlice(
            subject_id=_folder_name(path),
            slice_id=slice_id,
            strain_matrix=strain,
            frame_period_ms=period,
            tos_ms=tos,
            slice_location=(
                None
                if _is_empty(location)
                else _to_float("SequenceInfo(1).SliceLocation", location)
            ),
            source=path,
        )
    except SliceError as e:
        return Reject(path, slice_id, str(e))


def _v5_first(node: Any) -> Any:
    """First element of a struct/cell array or list (MATLAB's `x(1)`)."""
    while True:
        if isinstance(node, np.ndarray) and node.dtype == object:
            if node.size == 0:
                return None
            node = node.flat[0]
        elif isinstance(node, list | tuple):
            if not node:
                return None
            node = node[0]
        else:
            return node


def _v5_lookup(mat: dict, fields: Sequence[str]) -> Any:
    """Follows struct fields through a scipy.io.loadmat result."""
    node: Any = mat
    for name in fields:
        node = _v5_first(node)
        if isinstance(node, dict):
            node = node.get(name)
        elif hasattr(node, "_fieldnames"):  # scipy mat_struct
            node = getattr(node, name) if name in node._fieldnames else None
        elif isinstance(node, np.ndarray) and node.dtype.names:
            node = node[name] if name in node.dtype.names else None
        else:
            return None
        if node is None:
            return None
    return node


def _h5_class(obj: h5py.HLObject) -> str:
    cls = obj.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes | np.bytes_) else str(cls)


def _is_ref_dataset(obj: Any) -> bool:
    return isinstance(obj, h5py.Dataset) and h5py.check_dtype(ref=obj.dtype) is not None


def _h5_lookup(f: h5py.File, fields: Sequence[str]) -> Any:
    """Follows struct fields through a MATLAB v7.3 (HDF5) file.

    Structs are groups; a struct array's fields are datasets of object
    references (one per element), read at the first element.
    """
    node: Any = f
    for name in fields:
        if not isinstance(node, h5py.Group) or name not in node:
            return None
        node = node[name]
        while _is_ref_dataset(node):  # struct array / cell: take element (1)
            refs = node[()]
            if refs.size == 0:
                return None
            node = f[refs.flat[0]]
    if isinstance(node, h5py.Dataset):
        return _h5_value(node)
    return None


def _h5_value(ds: h5py.Dataset) -> Any:
    """A MATLAB v7.3 dataset as numpy, undoing the storage transpose."""
    if ds.attrs.get("MATLAB_empty", 0):
        return np.zeros((0,))
    data = ds[()]
    if _h5_class(ds) == "char":
        rows = np.atleast_2d(np.asarray(data)).T
        return "\n".join("".join(chr(c) for c in row) for row in rows)
    data = np.asarray(data)
    if data.dtype.names and {"real", "imag"} <= set(data.dtype.names):
        raise SliceError(f"{ds.name} is complex")
    return data.T if data.ndim >= 2 else data


# ----------------------------------------------------------------------------
# CSV manifest (record sheet)


def _read_manifest(path: str, allow_pickle: bool) -> Iterator[DenseSlice | Reject]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except Exception as e:  # any failure is a reject, not a crash
        yield Reject(path, "", f"unreadable file: {_describe(e)}")
        return
    # Lines are counted as in the file (1 = header); blank lines are skipped.
    numbered = [
        (n, row) for n, row in enumerate(table, 1) if any(c.strip() for c in row)
    ]
    if not numbered:
        yield Reject(path, "", "empty manifest (no header line)")
        return
    (_, header), rows = numbered[0], numbered[1:]
    columns = [c.strip().lower() for c in header]
    if "file" not in columns:
        yield Reject(
            path,
            "",
            f"manifest has no 'file' column (columns: {', '.join(columns)}); "
            "expected file[,subject_id,slice_id,scar_csv,frame_period_ms,"
            "slice_location]",
        )
        return
    folder = os.path.dirname(os.path.abspath(path))
    for line, values in rows:
        if values[0].lstrip().startswith("#"):
            continue  # comment line
        row = {c: v.strip() for c, v in zip(columns, values, strict=False)}
        yield from _read_manifest_row(path, folder, line, row, allow_pickle)


def _resolve(folder: str, name: str) -> str:
    name = os.path.expanduser(name)
    return os.path.normpath(name if os.path.isabs(name) else os.path.join(folder, name))


def _read_manifest_row(
    manifest: str, folder: str, line: int, row: dict[str, str], allow_pickle: bool
) -> Iterator[DenseSlice | Reject]:
    slice_id = row.get("slice_id", "")
    where = f"manifest {manifest} line {line}"
    if not row.get("file"):
        yield Reject(manifest, slice_id, f"{where}: empty 'file'")
        return
    file = _resolve(folder, row["file"])
    try:
        if not os.path.isfile(file):
            raise SliceError(f"file not found ({where})")
        if os.path.splitext(file)[1].lower() not in SLICE_EXTENSIONS:
            raise SliceError(f"manifest rows must name .npz/.npy/.mat files ({where})")
        overrides: dict[str, Any] = {}
        if row.get("subject_id"):
            overrides["subject_id"] = row["subject_id"]
        if slice_id:
            overrides["slice_id"] = slice_id
        for col in ("frame_period_ms", "slice_location"):
            if row.get(col):
                overrides[col] = _to_float(col, row[col])
        if row.get("scar_csv"):
            scar_path = _resolve(folder, row["scar_csv"])
            try:
                overrides["scar_fraction"] = _read_scar_csv(scar_path)
            except Exception as e:
                reason = str(e) if isinstance(e, SliceError) else _describe(e)
                raise SliceError(f"unreadable scar CSV {scar_path}: {reason}") from None
    except SliceError as e:
        yield Reject(file, slice_id, str(e))
        return

    items = list(read_source(file, allow_pickle))
    slices = [s for s in items if isinstance(s, DenseSlice)]
    for r in items:
        if isinstance(r, Reject):
            yield Reject(r.file, r.slice_id or slice_id, r.reason)
    if slice_id and len(slices) > 1:
        # A multi-slice (.npy) file: the row names one of its slices.
        chosen = [s for s in slices if s.slice_id == slice_id]
        if not chosen:
            yield Reject(
                file,
                slice_id,
                f"file holds {len(slices)} slices and none is named {slice_id!r} "
                f"({where})",
            )
            return
        slices = chosen
    for s in slices:
        for key, value in overrides.items():
            setattr(s, key, value)
        s.source = file
        yield s


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_scar_csv(path: str) -> np.ndarray:
    """Per-sector scar from a small CSV, as fractions.

    Accepts one comma-separated line, or one value per line, each with an
    optional header line. With a header over several columns (e.g. pandas'
    `,scar_percentage` with an index column), the column named scar_fraction /
    scar_percentage / scar_sector_percentage / scar / fraction is used. A
    column name containing "percent" means percent (converted with the
    percent rule of the module docstring); otherwise values are fractions.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = []
        for raw in csv.reader(fh):
            row = [c.strip() for c in raw]
            while row and not row[-1]:  # trailing commas
                row.pop()
            if row:
                rows.append(row)
    if not rows:
        raise SliceError("empty file")
    header: list[str] = []
    if not all(_is_number(c) for c in rows[0]):
        header = [c.lower() for c in rows.pop(0)]
    column = header[0] if len(header) == 1 else ""
    named = next((c for c in _SCAR_COLUMNS if c in header), None)
    if len(header) > 1 and named is not None:
        column, index = named, header.index(named)
        try:
            tokens = [r[index] for r in rows]
        except IndexError:
            raise SliceError(f"a line has no value in column {column!r}") from None
    elif len(rows) == 1:
        tokens = rows[0]
    elif rows and all(len(r) == 1 for r in rows):
        tokens = [r[0] for r in rows]
    elif len(header) > 1:
        raise SliceError(
            f"several columns ({', '.join(header)}) and none named one of "
            f"{', '.join(_SCAR_COLUMNS)}"
        )
    else:
        raise SliceError(
            "expected one comma-separated line or one value per line, got "
            f"{len(rows)} lines of up to {max((len(r) for r in rows), default=0)} "
            "values"
        )
    bad = [t for t in tokens if not _is_number(t)]
    if bad:
        raise SliceError(f"non-numeric value {bad[0]!r}")
    values = np.array([float(t) for t in tokens], dtype=np.float64)
    if "percent" in column and _percent_to_fraction([values]):
        values = values / 100.0
    return values
