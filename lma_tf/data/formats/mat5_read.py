"""A small MATLAB v5 reader for DENSEanalysis exports, numpy and zlib only.

`scipy.io` costs about half a second to import (it loads scipy.sparse and
scipy's array-API layer), more than reading a whole patient takes; a
prediction run that reads `.mat` v5 files pays that on every start. This
module reads what an export holds (numeric and logical arrays, char arrays,
structs, struct arrays and cells, compressed or not, either byte order) and
gives values the way `scipy.io.loadmat(squeeze_me=True,
struct_as_record=False)` does, with a struct as a dict instead of a
`mat_struct`. `load` returns None for anything else (MATLAB v4 files,
sparse arrays, objects, function handles, a malformed element), and the
caller falls back to scipy.io, which then decides: this reader never
decides alone that a file is bad.

Layout (MATLAB "MAT-File Format", level 5): a 128-byte header ending in the
byte-order mark ('IM' little-endian), then elements, each an 8-byte tag
(data type, byte count) and its data, padded to 8 bytes; a sub-element of at
most 4 bytes may be packed into its tag. A compressed element (type 15) is a
zlib stream holding one matrix element (type 14), whose sub-elements are the
array flags, the dimensions, the name, then the class's data. Sizes are
bounded before a compressed variable is loaded (`mat5_scan.check_sizes`);
here every declared element count is checked against the bytes present
before anything is allocated.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Collection
from typing import Any

import numpy as np

MI_MATRIX = 14
MI_COMPRESSED = 15
_NAME_PREFIX = 4096  # inflated bytes searched for a variable's name
MAX_DEPTH = 16  # nested cells/structs; deeper goes to scipy
MAX_ELEMENTS = 100_000  # top-level variables, as in mat5_scan

# Data types of sub-elements (miINT8 ... miUTF32) as numpy dtype codes.
_MI_TYPES = {
    1: "i1",
    2: "u1",
    3: "i2",
    4: "u2",
    5: "i4",
    6: "u4",
    7: "f4",
    9: "f8",
    12: "i8",
    13: "u8",
}
_MI_UTF8, _MI_UTF16, _MI_UTF32 = 16, 17, 18
# Array classes (mxCELL_CLASS ...) whose data this reader understands.
_CELL, _STRUCT, _CHAR = 1, 2, 4
_NUMERIC_CLASSES = {
    6: "f8",
    7: "f4",
    8: "i1",
    9: "u1",
    10: "i2",
    11: "u2",
    12: "i4",
    13: "u4",
    14: "i8",
    15: "u8",
}
_COMPLEX = 0x0800  # logicals stay uint8, as scipy gives them


class _NotRead(Exception):
    """Something this reader leaves to scipy.io."""


def load(path: str, names: Collection[str]) -> dict[str, Any] | None:
    """The variables `names` of the v5 file at `path`, or None to use scipy.io.

    Variables absent from the file are absent from the dict. None means the
    file is not one this reader handles (or not a valid one): scipy.io is
    asked instead, and its answer (values or error) is the answer.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        return _read(data, names)
    except (_NotRead, ValueError, TypeError, IndexError, struct.error, zlib.error):
        return None


def _read(data: bytes, names: Collection[str]) -> dict[str, Any]:
    order = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if len(data) < 128 or order is None:
        raise _NotRead("not a level-5 MAT file")
    out: dict[str, Any] = {}
    pos = 128
    for _ in range(MAX_ELEMENTS):
        if pos + 8 > len(data):
            return out
        mdtype, nbytes = struct.unpack_from(order + "II", data, pos)
        start, end = pos + 8, pos + 8 + nbytes
        if nbytes == 0 or end > len(data):
            raise _NotRead("truncated or empty element")
        if mdtype == MI_COMPRESSED:
            body = data[start:end]
            name = _name(zlib.decompressobj().decompress(body, _NAME_PREFIX), order)
            if name is None:
                raise _NotRead("variable name not found")
            if name not in names:
                pos = end
                continue
            element = zlib.decompress(body)
            next_pos = end
        elif mdtype == MI_MATRIX:
            element = data[pos:end]
            next_pos = start + (nbytes + 7) // 8 * 8
        else:
            raise _NotRead(f"top-level element of type {mdtype}")
        name, value = _Matrix(element, order).top()
        if name in names:
            out[name] = value
        pos = next_pos
    raise _NotRead("too many variables")


def _name(head: bytes, order: str) -> str | None:
    """A matrix element's name from its first bytes, None if not found."""
    try:
        m = _Matrix(head, order)
        m.pos = 8
        m.sub()  # array flags
        m.sub()  # dimensions
        return m.sub()[1].decode("latin-1")
    except (_NotRead, struct.error, UnicodeDecodeError):
        return None


class _Matrix:
    """A cursor over the bytes of one top-level matrix element."""

    def __init__(self, buf: bytes, order: str) -> None:
        self.buf, self.order, self.pos = buf, order, 0

    def sub(self) -> tuple[int, bytes]:
        """(data type, data) of the sub-element at the cursor, which moves on."""
        buf, pos = self.buf, self.pos
        if pos + 8 > len(buf):
            raise _NotRead("cut off")
        first, second = struct.unpack_from(self.order + "II", buf, pos)
        small = first >> 16
        if small:  # packed: type and size in the first word, data in the second
            if small > 4:
                raise _NotRead("bad small element")
            self.pos = pos + 8
            return first & 0xFFFF, buf[pos + 4 : pos + 4 + small]
        end = pos + 8 + second
        if end > len(buf):
            raise _NotRead("cut off")
        self.pos = pos + 8 + (second + 7) // 8 * 8
        return first, buf[pos + 8 : end]

    def numbers(self, mdtype: int, raw: bytes) -> np.ndarray:
        code = _MI_TYPES.get(mdtype)
        if code is None:
            raise _NotRead(f"numeric data of type {mdtype}")
        dtype = np.dtype(self.order + code)
        if len(raw) % dtype.itemsize:
            raise _NotRead("partial number")
        return np.frombuffer(raw, dtype)

    def top(self) -> tuple[str, Any]:
        """(name, value) of the matrix element the buffer holds."""
        mdtype, nbytes = struct.unpack_from(self.order + "II", self.buf, 0)
        if mdtype != MI_MATRIX:
            raise _NotRead("not a matrix")
        self.pos = 8
        return self.matrix(8 + nbytes, 0)

    def matrix(self, end: int, depth: int) -> tuple[str, Any]:
        """(name, value) of the matrix whose sub-elements run from pos to end."""
        if depth > MAX_DEPTH:
            raise _NotRead("nested too deep")
        if self.pos >= end:  # an empty matrix element: MATLAB's []
            return "", np.zeros((0, 0))
        _, flags_raw = self.sub()
        flags = struct.unpack_from(self.order + "I", flags_raw)[0]
        cls = flags & 0xFF
        dims_type, dims_raw = self.sub()
        dims = tuple(int(d) for d in self.numbers(dims_type, dims_raw))
        if len(dims) < 2 or min(dims) < 0:
            raise _NotRead("bad dimensions")
        name = self.sub()[1].decode("latin-1")
        count = math.prod(dims)
        if cls in _NUMERIC_CLASSES:
            value = self.numeric(cls, flags, dims, count)
        elif cls == _CHAR:
            value = self.chars(dims, count)
        elif cls == _CELL:
            value = self.cells(dims, count, end, depth)
        elif cls == _STRUCT:
            value = self.structs(dims, count, end, depth)
        else:  # sparse, objects, function handles, opaque: scipy's job
            raise _NotRead(f"array class {cls}")
        if self.pos > (end + 7) // 8 * 8:
            raise _NotRead("matrix overruns its element")
        return name, _squeeze(value)

    def numeric(self, cls: int, flags: int, dims, count: int) -> np.ndarray:
        real = self.numbers(*self.sub())
        if real.size != count:
            raise _NotRead("data size does not match the dimensions")
        out = real.astype(_NUMERIC_CLASSES[cls])
        if flags & _COMPLEX:
            imag = self.numbers(*self.sub())
            if imag.size != count:
                raise _NotRead("data size does not match the dimensions")
            out = out + 1j * imag
        return out.reshape(dims, order="F")

    def chars(self, dims, count: int) -> Any:
        mdtype, raw = self.sub()
        if mdtype == _MI_UTF8:
            text = raw.decode("utf-8")
        elif mdtype == _MI_UTF16:
            text = raw.decode("utf-16-le" if self.order == "<" else "utf-16-be")
        elif mdtype == _MI_UTF32:
            text = raw.decode("utf-32-le" if self.order == "<" else "utf-32-be")
        else:
            codes = self.numbers(mdtype, raw)
            text = "".join(map(chr, codes.tolist()))
        if len(text) != count:
            raise _NotRead("char data does not match the dimensions")
        if count == 0:
            return np.array([], dtype="U1").reshape(dims)
        grid = np.array(list(text), dtype="U1").reshape(dims, order="F")
        # As scipy's chars_as_strings: the last axis joined into strings.
        rows = grid.reshape(-1, dims[-1])
        joined = np.array(["".join(r) for r in rows])
        return joined.reshape(dims[:-1])

    def _room(self, count: int, end: int) -> None:
        """Each element needs an 8-byte tag at least: checked before allocating."""
        if count * 8 > end - self.pos:
            raise _NotRead("more elements declared than bytes present")

    def element(self, end: int, depth: int) -> Any:
        """One nested matrix element (a cell's or a struct field's value)."""
        if self.pos + 8 > end:
            raise _NotRead("cut off")
        mdtype, nbytes = struct.unpack_from(self.order + "II", self.buf, self.pos)
        if mdtype != MI_MATRIX:
            raise _NotRead("nested element is not a matrix")
        inner_end = self.pos + 8 + nbytes
        if inner_end > end:
            raise _NotRead("nested element overruns")
        self.pos += 8
        _, value = self.matrix(inner_end, depth + 1)
        self.pos = (inner_end + 7) // 8 * 8
        return value

    def cells(self, dims, count: int, end: int, depth: int) -> np.ndarray:
        self._room(count, end)
        flat = np.empty(count, dtype=object)
        for i in range(count):
            flat[i] = self.element(end, depth)
        return flat.reshape(dims, order="F")

    def structs(self, dims, count: int, end: int, depth: int) -> np.ndarray:
        length_type, length_raw = self.sub()
        (length,) = self.numbers(length_type, length_raw).tolist() or [0]
        names_raw = self.sub()[1]
        if length <= 0 or len(names_raw) % length:
            raise _NotRead("bad field names")
        fields = [
            names_raw[i : i + length].split(b"\0", 1)[0].decode("latin-1")
            for i in range(0, len(names_raw), length)
        ]
        self._room(count * len(fields), end)
        flat = np.empty(count, dtype=object)
        for i in range(count):
            flat[i] = {f: self.element(end, depth) for f in fields}
        return flat.reshape(dims, order="F")


def _squeeze(arr: np.ndarray) -> Any:
    """As scipy's squeeze_me: singleton axes dropped, a 0-d array as its item
    (a one-row char array as a str), an empty array as shape (0,)."""
    if not arr.size:
        return arr.reshape(0)
    out = np.squeeze(arr)
    if not out.shape and (out.dtype.isbuiltin or out.dtype.kind == "U"):
        return out.item()
    return out
