"""How much memory loading variables of a MATLAB v5 file will take, before loading.

scipy.io.loadmat inflates a compressed variable whole, so a small file can
hold a variable of gigabytes (a decompression bomb). `check_sizes` walks the
file's top-level elements, reads each variable's name from its first bytes
and, for the variables that will be loaded, counts their uncompressed size in
a streamed pass that stops as soon as the budget is exceeded: memory stays at
about one chunk, time at about the budget's worth of inflating.

Layout (MATLAB "MAT-File Format", level 5): a 128-byte header whose last two
bytes give the byte order ('IM' little-endian), then elements, each an 8-byte
tag (data type, byte count) and its data; a compressed element (type 15) is
a zlib stream holding one matrix element (type 14). A matrix starts with
sub-elements array flags, dimensions and name; a sub-element of at most 4
bytes may be packed into its tag ("small data element").
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection

from lma_tf.data.slices import SliceError

MI_MATRIX = 14
MI_COMPRESSED = 15
# What the variables read from one export may take once loaded: far more
# than real exports' strain and TOS structs, far less than a bomb.
LOADED_BYTES_CAP = 64 * 2**20
_NAME_PREFIX = 4096  # bytes of a matrix element searched for its name
_CHUNK = 1 << 16
MAX_ELEMENTS = 100_000  # top-level variables; real exports have a dozen


def check_sizes(path: str, names: Collection[str], cap: int = LOADED_BYTES_CAP) -> None:
    """Raises SliceError if the variables `names` of `path` exceed `cap` bytes.

    A variable whose name cannot be read counts as one of `names` (it might
    be). Files that are not MATLAB v5 pass unchecked (scipy refuses them or,
    for v4, reads them uncompressed: never more than the file's size).
    """
    with open(path, "rb") as fh:
        header = fh.read(128)
        order = {b"IM": "<", b"MI": ">"}.get(header[126:128])
        if len(header) < 128 or order is None:
            return
        total = 0
        for _ in range(MAX_ELEMENTS):
            tag = fh.read(8)
            if len(tag) < 8:
                return
            mdtype, nbytes = struct.unpack(order + "II", tag)
            if nbytes == 0:
                return  # malformed: scipy refuses the file and says why
            start = fh.tell()
            if mdtype == MI_COMPRESSED:
                name, size = _inflated(fh, nbytes, order, names, cap - total)
            else:
                name, size = (
                    _name(tag + fh.read(min(nbytes, _NAME_PREFIX)), order),
                    nbytes,
                )
            if name is None or name in names:
                total += size
                if total > cap:
                    shown = "a variable" if name is None else f"variable {name}"
                    raise SliceError(
                        f"{shown} inflates to more than {cap // 2**20} MiB "
                        f"(the limit of what is loaded from one .mat export); not read"
                    )
            fh.seek(start + nbytes)
        raise SliceError(f"more than {MAX_ELEMENTS} variables; not read")


def _inflated(
    fh, nbytes: int, order: str, names: Collection[str], budget: int
) -> tuple[str | None, int]:
    """(name, uncompressed size) of one compressed element, counted up to budget."""
    d = zlib.decompressobj()
    left, size, head, name = nbytes, 0, b"", None
    while left > 0:
        chunk = fh.read(min(_CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        while chunk:
            out = d.decompress(chunk, _CHUNK)
            chunk = d.unconsumed_tail
            size += len(out)
            if len(head) < _NAME_PREFIX:
                head += out[: _NAME_PREFIX - len(head)]
                if len(head) >= _NAME_PREFIX or d.eof:
                    name = _name(head, order)
                    if name is not None and name not in names:
                        return name, 0  # not loaded: its size does not matter
            if size > budget or d.eof:
                return (name if name is not None else _name(head, order)), size
    return _name(head, order), size


def _subelement(buf: bytes, pos: int, order: str) -> tuple[bytes, int] | None:
    """(data, position after it) of the sub-element at `pos`, None if cut off."""
    if pos + 8 > len(buf):
        return None
    first, second = struct.unpack_from(order + "II", buf, pos)
    small = first >> 16
    if small:  # packed: type and size in the first word, data in the second
        return buf[pos + 4 : pos + 4 + min(small, 4)], pos + 8
    end = pos + 8 + second
    if end > len(buf):
        return None
    return buf[pos + 8 : end], pos + 8 + (second + 7) // 8 * 8


def _name(buf: bytes, order: str) -> str | None:
    """The variable name of a matrix element starting at `buf`, None if unknown."""
    if len(buf) < 8 or struct.unpack_from(order + "I", buf)[0] != MI_MATRIX:
        return None
    pos = 8
    for _ in range(2):  # array flags, dimensions
        sub = _subelement(buf, pos, order)
        if sub is None:
            return None
        pos = sub[1]
    sub = _subelement(buf, pos, order)
    if sub is None:
        return None
    return sub[0].decode("latin-1")
