"""DENSEanalysis `.mat` exports, MATLAB v5 (scipy.io) and v7.3 (HDF5, h5py).

One slice per file; subject id = the folder's name, slice id = the file's
stem (exports carry no patient id). Fields, in priority order:

- strain: StrainInfo.CCmidSVD, StrainInfo.CCmid (126 x F), then
  TransmuralStrainInfo.Ecc.mid (F x segments, transposed on reading);
- TOS: TOSAnalysis.TOSfullRes_Jerry, top-level TOS126, TOSAnalysis.TOS126,
  TOSAnalysis.TOS. A candidate is taken only if it has 126 values; if none
  has, the first one found is passed on, so that validation rejects the slice
  with its shape rather than silently dropping the label;
- location: SequenceInfo(1).SliceLocation (mm);
- frame period: top-level frame_period_ms, SequenceInfo(1).TemporalResolution,
  else 17 ms;
- orientation: AnalysisInfo.PositionA, .PositionB and .Clockwise, read as a
  standard apex-view export (`orientation.from_dense_analysis`): all three,
  or none (no orientation); a partial or unusable set rejects the slice.

A present-but-empty field (MATLAB `[]`) counts as absent. Struct arrays are
read at their first element, as MATLAB's `x(1)`. The writer produces
StrainInfo.CCmid and .CCmidSVD, TOSAnalysis.TOSfullRes_Jerry and a 1x2
SequenceInfo struct array, and AnalysisInfo when the slice has an
orientation that an export can hold; scar is not part of an export (it goes to the
record sheet, `record_sheet.py`). See docs/data.md.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lma_tf import atomic, constants
from lma_tf.data.formats import common, mat5_read, mat5_scan
from lma_tf.data.slices import DenseSlice, Reject, SliceError, orientation_fields
from lma_tf.decision import orientation as orientation_lib

if TYPE_CHECKING:  # imported where used: h5py for v7.3, scipy.io for v5 writing
    import h5py

EXTENSION = ".mat"
VERSIONS = ("5", "7.3")

Field = tuple[str, ...]  # a struct path, e.g. ("StrainInfo", "CCmid")

STRAIN_SVD: Field = ("StrainInfo", "CCmidSVD")  # (126, frames)
STRAIN_MID: Field = ("StrainInfo", "CCmid")  # (126, frames)
STRAIN_ECC: Field = ("TransmuralStrainInfo", "Ecc", "mid")  # (frames, segments)
TOS_FULL_RES: Field = ("TOSAnalysis", "TOSfullRes_Jerry")
TOS_TOP_LEVEL: Field = ("TOS126",)  # top-level variable of the authors' TOS files
TOS_ANALYSIS_126: Field = ("TOSAnalysis", "TOS126")
TOS_ANALYSIS: Field = ("TOSAnalysis", "TOS")
SLICE_LOCATION: Field = ("SequenceInfo", "SliceLocation")
FRAME_PERIOD: Field = ("frame_period_ms",)
TEMPORAL_RESOLUTION: Field = ("SequenceInfo", "TemporalResolution")
POSITION_A: Field = ("AnalysisInfo", "PositionA")  # LV centre, image (x, y)
POSITION_B: Field = ("AnalysisInfo", "PositionB")  # reference point: sector 0
CLOCKWISE: Field = ("AnalysisInfo", "Clockwise")  # sector numbering on the image
ORIENTATION_FIELDS: tuple[Field, ...] = (POSITION_A, POSITION_B, CLOCKWISE)

# (field, stored frames-first) in priority order.
STRAIN_FIELDS: tuple[tuple[Field, bool], ...] = (
    (STRAIN_SVD, False),
    (STRAIN_MID, False),
    (STRAIN_ECC, True),
)
TOS_FIELDS: tuple[Field, ...] = (
    TOS_FULL_RES,
    TOS_TOP_LEVEL,
    TOS_ANALYSIS_126,
    TOS_ANALYSIS,
)
PERIOD_FIELDS: tuple[Field, ...] = (FRAME_PERIOD, TEMPORAL_RESOLUTION)
_VARIABLES = sorted(
    {f[0] for f, _ in STRAIN_FIELDS}
    | {f[0] for f in TOS_FIELDS}
    | {SLICE_LOCATION[0]}
    | {f[0] for f in PERIOD_FIELDS}
    | {f[0] for f in ORIENTATION_FIELDS}
)

Lookup = Callable[[Field], Any]  # a field's value, None when absent or empty


# ----------------------------------------------------------------------------
# Reading


def read(path: str) -> Iterator[DenseSlice | Reject]:
    """The slice of one export (unvalidated), or a Reject naming its reason.

    Memory and time stay bounded whatever the file holds: v7.3 datasets are
    checked from their declared shapes and reference walks are bounded
    (`_h5_lookup`); v5 variables are measured before they are loaded
    (`mat5_scan`). Raises on a file that is not a readable MAT file; the
    caller (`sources.read_source`) turns that into a Reject of the whole file.
    A v5 file is read by `mat5_read` (numpy only: scipy.io alone takes longer
    to import than a patient takes to read), scipy.io when that declines it.
    """
    slice_id = common.stem(path)
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            item = _slice(path, slice_id, lambda fields: _h5_lookup(f, fields))
    else:
        try:
            mat5_scan.check_sizes(path, _VARIABLES)
        except SliceError as e:
            yield Reject(path, slice_id, str(e))
            return
        mat = mat5_read.load(path, _VARIABLES)
        if mat is None:
            import scipy.io

            mat = scipy.io.loadmat(
                path,
                squeeze_me=True,
                struct_as_record=False,
                variable_names=_VARIABLES,
            )
        item = _slice(path, slice_id, lambda fields: _v5_lookup(mat, fields))
    yield item


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: str) -> bool:
    """`h5py.is_hdf5` without importing h5py: HDF5's signature at offset 0,
    512, 1024, 2048, ... (a v7.3 MAT file has it at 512, after its header)."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            f.seek(offset)
            head = f.read(len(_HDF5_SIGNATURE))
            if len(head) < len(_HDF5_SIGNATURE):
                return False
            if head == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2


def _name(field: Field) -> str:
    return ".".join(field)


def _strain(lookup: Lookup) -> np.ndarray:
    for field, frames_first in STRAIN_FIELDS:
        value = lookup(field)
        if not common.is_empty(value):
            strain = common.float_array(_name(field), value)
            return strain.T if frames_first else strain
    searched = ", ".join(_name(f) for f, _ in STRAIN_FIELDS)
    raise SliceError(f"no strain found (searched {searched})")


def _tos(lookup: Lookup) -> np.ndarray | None:
    tos = None
    for field in TOS_FIELDS:
        value = lookup(field)
        if common.is_empty(value):
            continue
        vec = common.vector(_name(field), value)
        if vec.size == constants.NUM_SECTORS:
            return vec
        if tos is None:
            tos = vec  # kept only if no candidate has 126 values
    return tos


def _slice(path: str, slice_id: str, lookup: Lookup) -> DenseSlice | Reject:
    """Builds the slice from a field lookup (None = absent or empty)."""
    try:
        strain = _strain(lookup)
        tos = _tos(lookup)
        location = lookup(SLICE_LOCATION)
        period = constants.DEFAULT_FRAME_PERIOD_MS
        for field in PERIOD_FIELDS:
            value = lookup(field)
            if not common.is_empty(value):
                period = common.to_float(_name(field), value)
                break
        return DenseSlice(
            subject_id=common.folder_name(path),
            slice_id=slice_id,
            strain_matrix=strain,
            frame_period_ms=period,
            tos_ms=tos,
            slice_location=(
                None
                if common.is_empty(location)
                else common.to_float("SequenceInfo(1).SliceLocation", location)
            ),
            source=path,
            **orientation_fields(_orientation(lookup)),
        )
    except SliceError as e:
        return Reject(path, slice_id, str(e))


def _point(field: Field, value: Any) -> np.ndarray:
    point = common.vector(_name(field), value)
    if point.shape != (2,) or not np.all(np.isfinite(point)):
        raise SliceError(f"{_name(field)} must be a finite (x, y) pair")
    return point


def _orientation(lookup: Lookup) -> orientation_lib.Orientation | None:
    """The sectors' orientation from AnalysisInfo; None when it has none of it.

    Read as DENSEanalysis displays a short-axis image, seen from the apex:
    sector 0 starts at PositionB (taken as the anterior RV insertion), and
    the sectors run clockwise on the image when Clockwise is true.
    """
    values = [lookup(field) for field in ORIENTATION_FIELDS]
    present = [not common.is_empty(v) for v in values]
    if not any(present):
        return None
    if not all(present):
        missing = [
            _name(f) for f, p in zip(ORIENTATION_FIELDS, present, strict=True) if not p
        ]
        raise SliceError(
            f"{', '.join(missing)} missing: the sector orientation needs "
            f"{', '.join(_name(f) for f in ORIENTATION_FIELDS)} together"
        )
    a = _point(POSITION_A, values[0])
    b = _point(POSITION_B, values[1])
    clockwise = common.to_float(_name(CLOCKWISE), values[2])
    if clockwise not in (0.0, 1.0):
        raise SliceError(f"{_name(CLOCKWISE)} must be true or false (1 or 0)")
    if np.allclose(a, b):
        raise SliceError(
            f"{_name(POSITION_A)} and {_name(POSITION_B)} coincide: no reference "
            "direction for the sectors"
        )
    return orientation_lib.from_dense_analysis(a, b, bool(clockwise))


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
    import h5py

    return isinstance(obj, h5py.Dataset) and h5py.check_dtype(ref=obj.dtype) is not None


# A struct array or cell is one object reference away from its element; a
# file that needs more hops per field is malformed or a reference cycle
# (which would otherwise be followed forever).
MAX_REFERENCE_HOPS = 4


def _h5_child(node: h5py.Group, name: str, field: str) -> Any:
    """`node[name]`, refusing links into other files."""
    import h5py

    link = node.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise SliceError(f"{field} is a link into another file; not followed")
    return node[name]


def _h5_lookup(f: h5py.File, fields: Sequence[str]) -> Any:
    """Follows struct fields through a MATLAB v7.3 (HDF5) file.

    Structs are groups; a struct array's fields are datasets of object
    references (one per element), read at the first element. The walk is
    bounded (MAX_REFERENCE_HOPS per field) and every dataset's declared
    shape is checked before it is read.
    """
    import h5py

    name = ".".join(fields)
    node: Any = f
    for part in fields:
        if not isinstance(node, h5py.Group) or part not in node:
            return None
        node = _h5_child(node, part, name)
        hops = 0
        while _is_ref_dataset(node):  # struct array / cell: take element (1)
            hops += 1
            if hops > MAX_REFERENCE_HOPS:
                raise SliceError(
                    f"{name}: object references nested deeper than "
                    f"{MAX_REFERENCE_HOPS} (a reference cycle?)"
                )
            if node.shape is None or node.size == 0:
                return None
            common.check_declared(name, node.shape, np.dtype(np.uint64))
            ref = node[(0,) * node.ndim] if node.ndim else node[()]
            if not ref:
                return None
            node = f[ref]
    if isinstance(node, h5py.Dataset):
        return _h5_value(node, name)
    return None


def _h5_value(ds: h5py.Dataset, name: str) -> Any:
    """A MATLAB v7.3 dataset as numpy, undoing the storage transpose.

    Its declared shape and dtype are checked before anything is read.
    """
    if ds.attrs.get("MATLAB_empty", 0) or ds.shape is None:
        return np.zeros((0,))
    if ds.dtype.names and {"real", "imag"} <= set(ds.dtype.names):
        raise SliceError(f"{name} is complex; only real values are accepted")
    if ds.dtype.names or ds.dtype.kind not in "biuf":
        raise SliceError(f"{name} has unsupported HDF5 type {ds.dtype}")
    common.check_declared(name, ds.shape, ds.dtype)
    data = ds[()]
    if _h5_class(ds) == "char":
        rows = np.atleast_2d(np.asarray(data)).T
        return "\n".join("".join(chr(c) for c in row) for row in rows)
    data = np.asarray(data)
    return data.T if data.ndim >= 2 else data


# ----------------------------------------------------------------------------
# Writing


# Where the writer puts AnalysisInfo's points on a notional 128 x 128 image
# shown as seen from the apex: the LV centre, and the anterior RV insertion
# (PositionB) 20 pixels from it, up and to the left (y points down).
WRITTEN_CENTRE = (64.0, 64.0)
WRITTEN_RADIUS = 20.0


def _analysis_info(s: DenseSlice) -> dict[str, np.ndarray] | None:
    """AnalysisInfo's PositionA, PositionB and Clockwise for `s`'s orientation.

    None when the slice has no orientation. An export starts sector 0 at
    PositionB, so only an orientation with the anterior RV insertion at
    sector coordinate 0 can be written (the reader gives it back as is).

    Raises:
      ValueError: another orientation, or an invalid one.
    """
    o = s.orientation
    if o is None:
        return None
    if o.sector0 != "rv_insertion" or o.offset != 0.0:
        raise ValueError(
            f"slice {s.key}: a DENSEanalysis export starts sector 0 at its "
            "reference point (AnalysisInfo.PositionB, the anterior RV insertion), "
            f"so it cannot hold the orientation {o.sector0} at {o.offset:g}; "
            "write this slice as .npz, or give its orientation in the record sheet"
        )
    angle = np.deg2rad(orientation_lib.LANDMARK_DEG["rv_insertion"])
    cx, cy = WRITTEN_CENTRE
    rv = (cx + WRITTEN_RADIUS * np.cos(angle), cy - WRITTEN_RADIUS * np.sin(angle))
    return {
        POSITION_A[1]: np.array([WRITTEN_CENTRE]),
        POSITION_B[1]: np.array([rv]),
        CLOCKWISE[1]: np.array([[o.direction == "cw"]]),  # MATLAB logical
    }


def _structs(s: DenseSlice) -> dict[str, dict[str, np.ndarray]]:
    """The nested structs of an export as {struct: {field: MATLAB-shaped array}}.

    SequenceInfo is handled apart (a 1x2 struct array). Frame period and
    scar are not part of an export: the reader assumes 17 ms per frame.
    """
    strain = np.asarray(s.strain_matrix, dtype=np.float64)
    structs: dict[str, dict[str, np.ndarray]] = {
        STRAIN_MID[0]: {STRAIN_MID[1]: strain, STRAIN_SVD[1]: strain.copy()}
    }
    if s.tos_ms is not None:
        tos = np.asarray(s.tos_ms, dtype=np.float64).reshape(1, -1)
        structs[TOS_FULL_RES[0]] = {TOS_FULL_RES[1]: tos}
    info = _analysis_info(s)
    if info is not None:
        structs[POSITION_A[0]] = info
    return structs


def write_v5(path: str, s: DenseSlice) -> None:
    """One slice as a MATLAB v5 export at `path` (atomically)."""
    variables: dict[str, object] = dict(_structs(s))
    if s.slice_location is not None:
        struct_name, field = SLICE_LOCATION
        seq = np.empty((1, 2), dtype=[(field, object)])
        for j in range(2):
            seq[field][0, j] = np.array([[float(s.slice_location)]])
        variables[struct_name] = seq
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", oned_as="row")
    atomic.write_bytes(path, buf.getvalue())


_MAT73_HEADER_TEXT = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: lma_tf.data.formats.mat "
    b"HDF5 schema 1.00 ."
)


def _set_matlab_struct(group: h5py.Group, field_names: Sequence[str]) -> None:
    """Marks a group as a MATLAB struct (MATLAB_class plus MATLAB_fields)."""
    import h5py

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


def _write_matlab_array(parent: h5py.Group, name: str, value: np.ndarray) -> None:
    """A MATLAB double, or a logical (uint8 with MATLAB_int_decode) for bools."""
    if np.asarray(value).dtype != bool:
        _write_matlab_double(parent, name, value)
        return
    arr = np.atleast_2d(np.asarray(value, dtype=np.uint8))
    dset = parent.create_dataset(name, data=np.ascontiguousarray(arr.T))
    dset.attrs.create("MATLAB_class", np.bytes_("logical"))
    dset.attrs.create("MATLAB_int_decode", np.int32(1))


def _write_struct_array_location(f: h5py.File, location: float) -> None:
    """SequenceInfo as a 1x2 struct array: references into '/#refs#'."""
    import h5py

    struct_name, field = SLICE_LOCATION
    refs = f.create_group("#refs#")
    seq = f.create_group(struct_name)
    _set_matlab_struct(seq, [field])
    targets = []
    for ref_name in ("a", "b"):
        target = _write_matlab_double(refs, ref_name, np.array([[location]]))
        target.attrs.create("H5PATH", np.bytes_("/" + struct_name))
        targets.append(target.ref)
    ref_data = np.empty((2, 1), dtype=h5py.ref_dtype)
    ref_data[0, 0], ref_data[1, 0] = targets
    seq.create_dataset(field, data=ref_data, dtype=h5py.ref_dtype)


def write_v73(path: str, s: DenseSlice) -> None:
    """One slice as a MATLAB v7.3 export: HDF5 with a 512-byte MAT header.

    Structs are groups (MATLAB_class='struct', MATLAB_fields); a 126 x F
    MATLAB double is an (F, 126) float64 dataset with MATLAB_class='double'.
    SequenceInfo is a real 1x2 struct array: its field SliceLocation is a
    (2, 1) dataset of object references to (1, 1) doubles in '/#refs#'.
    """
    import h5py

    with atomic.atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512) as f:
            for struct_name, fields in _structs(s).items():
                group = f.create_group(struct_name)
                _set_matlab_struct(group, list(fields))
                for field, value in fields.items():
                    _write_matlab_array(group, field, value)
            if s.slice_location is not None:
                _write_struct_array_location(f, float(s.slice_location))
        header = _MAT73_HEADER_TEXT.ljust(116, b" ") + b" " * 8
        header += struct.pack("<H", 0x0200) + b"IM"
        with open(tmp, "r+b") as f:
            f.write(header.ljust(512, b"\0"))


def write(
    slices: Sequence[DenseSlice],
    output_dir: str,
    version: str = "5",
    progress: common.Progress | None = None,
) -> list[str]:
    """One export per slice, `<output_dir>/<subject_id>/<slice_id>.mat`.

    MATLAB v5 with version="5", v7.3 (HDF5) with "7.3". Exports hold no
    patient id and no scar, as real ones; an orientation other than "the
    RV insertion at sector 0" is refused (ValueError) before anything is
    written; `record_sheet.write` adds the CSV sheet that names subjects and
    scar files. Returns the paths.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be '5' or '7.3', got {version!r}")
    common.check_unique(slices)
    for s in slices:  # an orientation an export cannot hold: before any file
        _analysis_info(s)
    write_file = write_v5 if version == "5" else write_v73
    paths = []
    for s in slices:
        path = common.slice_path(output_dir, s, EXTENSION)
        write_file(path, s)
        paths.append(path)
        if progress is not None:
            progress(1)
    return paths
