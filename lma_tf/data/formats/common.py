"""Small conversions and file-layout helpers shared by the format modules.

Readers turn whatever a file holds (numpy scalars, 0-d arrays, bytes, MATLAB
row or column vectors) into the plain values of a `DenseSlice`, raising
`SliceError` with the field's name when a value cannot be used; writers share
the per-subject folder layout and its safety checks.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from lma_tf import constants, textsafe
from lma_tf.data.slices import DenseSlice, SliceError

Progress = Callable[[int], object]  # called with the number of slices just written


# ----------------------------------------------------------------------------
# Reading


def describe(e: BaseException) -> str:
    """`Type: message` of an exception, for a reject reason."""
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def stem(path: str) -> str:
    """The file name without folder and extension: the default slice id."""
    return os.path.splitext(os.path.basename(path))[0]


def folder_name(path: str) -> str:
    """The name of the file's folder: the default subject id."""
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def to_str(name: str, value: Any) -> str:
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


def to_float(name: str, value: Any) -> float:
    """A real scalar (number, numeric text, size-1 array) as a float.

    Raises SliceError otherwise. Messages name the field, never its content:
    the value may come from a file the user did not mean to show.
    """
    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if arr.size != 1:
        raise SliceError(f"{name} must be a single number, got shape {arr.shape}")
    item = arr.reshape(-1)[0]
    if arr.dtype.kind in "US":  # a number written as text (a CSV cell)
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        try:
            return float(str(text).strip())
        except ValueError:
            raise SliceError(f"{name} is not a number") from None
    return float(float_array(name, arr).reshape(-1)[0])


def float_array(name: str, value: Any) -> np.ndarray:
    """A float64 array of the shape found; raises SliceError unless real numbers.

    Complex values are refused, never truncated to their real part.
    """
    if isinstance(value, str | bytes):
        raise SliceError(f"{name} is text, not a numeric array")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested sequences
        raise SliceError(f"{name} is not a numeric array") from None
    if arr.dtype.kind == "c" or (
        arr.dtype.kind == "O" and any(isinstance(v, complex) for v in arr.flat)
    ):
        raise SliceError(f"{name} is complex; only real values are accepted")
    if arr.dtype.kind not in "biufO":
        raise SliceError(f"{name} holds {arr.dtype} values, not numbers")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise SliceError(f"{name} is not a numeric array") from None


def vector(name: str, value: Any) -> np.ndarray:
    """A float array; 1xN / Nx1 (any singleton axes) flattened to (N,)."""
    arr = float_array(name, value)
    if arr.ndim > 1 and sum(d != 1 for d in arr.shape) <= 1:
        arr = arr.reshape(-1)
    return arr


# The most one field of a slice may hold, checked from a file's declared
# shapes before anything is read: a strain matrix of 126 x 128 float64 (every
# other field is smaller). A crafted file that declares more (a compression
# bomb) is refused without allocating it.
MAX_FIELD_ELEMENTS = constants.NUM_SECTORS * constants.MAX_FRAMES
MAX_FIELD_BYTES = MAX_FIELD_ELEMENTS * 8


def check_declared(name: str, shape: Sequence[int], dtype: np.dtype) -> None:
    """Refuses a field whose declared shape and dtype exceed a slice's needs.

    Called with the shape and dtype a file's header declares, before the
    array is read. Raises SliceError naming the field and the declared shape.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if dtype.hasobject:
        raise SliceError(f"{name} holds Python objects (it needs pickle to be read)")
    if dtype.kind == "c":
        raise SliceError(f"{name} is complex; only real values are accepted")
    if dtype.kind not in "biufUS" or (dtype.kind in "iuf" and dtype.itemsize > 8):
        raise SliceError(f"{name} has unsupported dtype {dtype}")
    elements = math.prod(shape)
    if elements > MAX_FIELD_ELEMENTS or elements * dtype.itemsize > MAX_FIELD_BYTES:
        raise SliceError(
            f"{name} declares shape {shape} of {dtype} ({elements * dtype.itemsize:,} "
            f"bytes): more than a slice field may hold ({MAX_FIELD_ELEMENTS:,} "
            f"values, {MAX_FIELD_BYTES:,} bytes); not read"
        )


@dataclasses.dataclass(frozen=True)
class Scope:
    """The folders inputs may be read from: the --input roots.

    Paths found inside a record sheet or through a symbolic link must
    resolve into one of them unless `allow_outside` (--allow_outside_paths):
    a sheet or a link must not make the converter read arbitrary files.
    """

    roots: tuple[str, ...] = ()  # real paths
    allow_outside: bool = False

    @classmethod
    def of(cls, inputs: Iterable[str], allow_outside: bool = False) -> Scope:
        """Roots from --input paths: a folder itself, a file's folder."""
        roots = []
        for path in inputs:
            real = os.path.realpath(os.path.expanduser(str(path)))
            roots.append(real if os.path.isdir(real) else os.path.dirname(real))
        return cls(tuple(sorted(set(roots))), allow_outside)

    def allows(self, path: str) -> bool:
        """Whether `path` (links resolved) may be read."""
        if self.allow_outside or not self.roots:
            return True
        return any(textsafe.is_inside(root, path) for root in self.roots)


def is_empty(value: Any) -> bool:
    """True for None and for empty arrays (MATLAB's `[]`): treated as absent."""
    return value is None or (isinstance(value, np.ndarray) and value.size == 0)


def percent_to_fraction(values: Iterable[np.ndarray]) -> bool:
    """True if scar values given in percent must be divided by 100.

    They are, unless every finite value of the file lies in [0, 1] (then they
    are taken as fractions already): decided per file, not per slice, so a
    slice with <= 1 % scar in a percent file is not read as 100 % scar.
    """
    for v in values:
        finite = v[np.isfinite(v)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            return True
    return False


# ----------------------------------------------------------------------------
# Writing


def safe_name(name: str, what: str) -> str:
    """Refuses ids that would escape their folder or be hidden/empty files."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{what} {name!r} cannot be used as a file name")
    return name


def check_unique(slices: Sequence[DenseSlice]) -> None:
    """Raises ValueError on a repeated (subject_id, slice_id): files would clash."""
    seen: set[tuple[str, str]] = set()
    for s in slices:
        if s.key in seen:
            raise ValueError(f"duplicate slice {s.key}")
        seen.add(s.key)


def by_subject(slices: Sequence[DenseSlice]) -> dict[str, list[DenseSlice]]:
    """Slices grouped by subject, in first-seen order."""
    groups: dict[str, list[DenseSlice]] = {}
    for s in slices:
        groups.setdefault(s.subject_id, []).append(s)
    return groups


def slice_path(output_dir: str, s: DenseSlice, suffix: str) -> str:
    """`<output_dir>/<subject_id>/<slice_id><suffix>`, ids checked as file names."""
    subject = safe_name(s.subject_id, "subject_id")
    return os.path.join(output_dir, subject, safe_name(s.slice_id, "slice_id") + suffix)


def slice_relpath(s: DenseSlice, suffix: str) -> str:
    """The same path relative to `output_dir`, '/'-separated (for a CSV sheet)."""
    return f"{s.subject_id}/{s.slice_id}{suffix}"
