"""Finds the input files of the data contract and dispatches them to their readers.

Turns `.npz` slices, the authors' pickled `.npy` lists, DENSEanalysis `.mat`
exports (MATLAB v5 and v7.3) and CSV record sheets into `DenseSlice`s, or
into `Reject`s naming the file, the slice and the reason. The readers live in
`lma_tf.data.formats`, one module per format; the formats and the rules for
their ambiguous cases are described in docs/data.md. Slices come back NOT yet
validated (the caller runs `slices.validate_slice`); a bad file or entry never
raises, so good slices elsewhere are never lost. Numpy/scipy/h5py only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from lma_tf.data.formats import common, mat, npy, npz, record_sheet
from lma_tf.data.slices import DenseSlice, Reject

SLICE_EXTENSIONS = (npz.EXTENSION, npy.EXTENSION, mat.EXTENSION)
MANIFEST_EXTENSION = record_sheet.EXTENSION
MANIFEST_NAME = record_sheet.MANIFEST_NAME


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
    if ext == npy.EXTENSION:
        yield from npy.read(path, allow_pickle)
        return
    if ext == MANIFEST_EXTENSION:
        yield from record_sheet.read(path, read_source, SLICE_EXTENSIONS, allow_pickle)
        return
    readers = {npz.EXTENSION: npz.read, mat.EXTENSION: mat.read}
    if ext not in readers:
        yield Reject(
            path,
            "",
            f"unsupported file type {ext or '(none)'!r}: expected .npz, .npy, "
            ".mat or a .csv manifest",
        )
        return
    try:
        items = list(readers[ext](path))
    except Exception as e:  # any failure is a reject, not a crash
        items = [Reject(path, "", f"unreadable file: {common.describe(e)}")]
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


def _walk(root: str) -> Iterator[str]:
    """The slice files under `root`; a folder with a manifest.csv yields only it."""
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
