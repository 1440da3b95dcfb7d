"""Finds the input files of the data contract and dispatches them to their readers.

Turns `.npz` slices, the authors' pickled `.npy` lists, DENSEanalysis `.mat`
exports (MATLAB v5 and v7.3) and CSV record sheets into `DenseSlice`s, or
into `Reject`s naming the file, the slice and the reason. The readers live in
`lma_tf.data.formats`, one module per format; the formats and the rules for
their ambiguous cases are described in docs/data.md. Slices come back NOT yet
validated (the caller runs `slices.validate_slice`); a bad file, folder or
entry never raises, so good slices elsewhere are never lost, and every input
that is not read is named with the reason (docs/reliability.md).
Numpy/scipy/h5py only.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator, Sequence

from lma_tf import textsafe
from lma_tf.data.formats import common, mat, npy, npz, record_sheet
from lma_tf.data.formats.common import Scope
from lma_tf.data.slices import DenseSlice, Reject

SLICE_EXTENSIONS = (npz.EXTENSION, npy.EXTENSION, mat.EXTENSION)
MANIFEST_EXTENSION = record_sheet.EXTENSION
MANIFEST_NAME = record_sheet.MANIFEST_NAME

__all__ = [
    "MANIFEST_NAME",
    "SLICE_EXTENSIONS",
    "Discovery",
    "Scope",
    "discover",
    "read_source",
    "read_sources",
    "scan",
]


@dataclasses.dataclass
class Discovery:
    """What `scan` found: the files to read, and what it refused to read."""

    files: list[str]
    rejects: list[Reject]
    scope: Scope


def scan(paths: Sequence[str], allow_outside_paths: bool = False) -> Discovery:
    """Expands files and directories into a sorted, de-duplicated source list.

    Directories are searched recursively for .npz/.npy/.mat files (hidden
    entries and other extensions skipped), except that a directory holding a
    `manifest.csv` contributes only that manifest: the manifest says what in
    it is data. Explicitly named files are kept whatever their extension
    (`read_source` rejects unsupported ones with a reason). Symbolic links
    are followed when they resolve inside the input paths (or anywhere with
    `allow_outside_paths`). A folder that cannot be listed, a link that
    points outside or nowhere, a name that is not valid UTF-8 and a slice
    file that is not a regular file become rejects naming the path.

    Raises:
      FileNotFoundError: an input path does not exist.
    """
    if isinstance(paths, str):
        paths = [paths]
    paths = [os.path.expanduser(str(p)) for p in paths]
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"input path not found: {textsafe.clean(path)}")
    scope = Scope.of(paths, allow_outside_paths)
    walker = _Walker(scope)
    found: dict[str, str] = {}  # real path -> path as reported
    for path in paths:
        if not textsafe.is_utf8(path):
            walker.refuse(path, _NOT_UTF8)
            continue
        candidates = walker.walk(path) if os.path.isdir(path) else [path]
        for candidate in candidates:
            candidate = os.path.normpath(candidate)
            found.setdefault(os.path.realpath(candidate), candidate)
    return Discovery(sorted(set(found.values())), walker.rejects, scope)


def discover(paths: Sequence[str]) -> list[str]:
    """The files `scan` finds (its rejects dropped; use `scan` to report them)."""
    return scan(paths).files


def read_source(
    path: str, allow_pickle: bool = False, scope: Scope | None = None
) -> Iterator[DenseSlice | Reject]:
    """Reads one source file into slices (unvalidated) and rejects.

    Dispatches on the extension. A file that cannot be read at all yields a
    single `Reject(file=path, slice_id="", ...)`; nothing is raised.
    Pickled `.npy` files are read only with `allow_pickle=True`. Paths in a
    record sheet must lie in `scope` (default: the sheet's own folder).
    """
    ext = os.path.splitext(path)[1].lower()
    if not _is_regular(path):
        yield Reject(path, "", "not a regular file (a device, pipe or folder?)")
        return
    if ext == npy.EXTENSION:
        yield from npy.read(path, allow_pickle)
        return
    if ext == MANIFEST_EXTENSION:
        scope = scope or Scope.of([path])

        def read_file(file: str, pickle: bool) -> Iterator[DenseSlice | Reject]:
            return read_source(file, pickle, scope)

        yield from record_sheet.read(
            path, read_file, SLICE_EXTENSIONS, allow_pickle, scope
        )
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
    paths: Sequence[str], allow_pickle: bool = False, allow_outside_paths: bool = False
) -> Iterator[DenseSlice | Reject]:
    """`scan` then `read_source` over every file found; scan's rejects first.

    Discovery runs now, so a missing input path raises FileNotFoundError at
    the call rather than at the first iteration.
    """
    found = scan(paths, allow_outside_paths)

    def _gen() -> Iterator[DenseSlice | Reject]:
        yield from found.rejects
        for f in found.files:
            yield from read_source(f, allow_pickle, found.scope)

    return _gen()


_NOT_UTF8 = "the name is not valid UTF-8; rename it (nothing under it was read)"


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # let the reader fail and say why (e.g. permission denied)


class _Walker:
    """The recursive walk of `scan`: follows links in scope, never loops."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.rejects: list[Reject] = []
        self.visited: set[str] = set()  # real paths of folders walked

    def refuse(self, path: str, reason: str) -> None:
        self.rejects.append(Reject(path, "", reason))

    def walk(self, root: str) -> Iterator[str]:
        """The slice files under `root`; a folder with a manifest.csv yields only it."""
        stack = [root]
        while stack:
            folder = stack.pop()
            real = os.path.realpath(folder)
            if real in self.visited:  # reached twice (a link): read once
                continue
            self.visited.add(real)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                self.refuse(folder, f"unreadable folder: {common.describe(e)}")
                continue
            if any(e.name == MANIFEST_NAME for e in entries):
                yield os.path.join(folder, MANIFEST_NAME)  # the sheet covers it all
                continue
            subfolders = []
            for entry in entries:
                kind = self._kind(entry)
                if kind == "dir":
                    subfolders.append(entry.path)
                elif kind == "file":
                    yield entry.path
            stack.extend(reversed(subfolders))

    def _kind(self, entry: os.DirEntry) -> str:
        """'dir', 'file' or '' (skipped or refused) for one folder entry."""
        if entry.name.startswith("."):  # incl. macOS "._x.mat" resource forks
            return ""
        is_slice = os.path.splitext(entry.name)[1].lower() in SLICE_EXTENSIONS
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir()  # follows links
        except OSError as e:
            self.refuse(entry.path, f"unreadable entry: {common.describe(e)}")
            return ""
        if not (is_dir or is_slice):
            if is_link and not os.path.exists(entry.path):
                self.refuse(entry.path, "broken symbolic link (its target is missing)")
            return ""
        if not textsafe.is_utf8(entry.name):
            self.refuse(entry.path, _NOT_UTF8)
            return ""
        if is_link and not self.scope.allows(entry.path):
            self.refuse(
                entry.path,
                "symbolic link to a path outside the input folders, not followed "
                "(pass --allow_outside_paths to read it)",
            )
            return ""
        if is_dir:
            return "dir"
        try:
            regular = entry.is_file()
        except OSError:
            regular = False
        if not regular and is_link and not os.path.exists(entry.path):
            self.refuse(entry.path, "broken symbolic link (its target is missing)")
            return ""
        if not regular:
            self.refuse(entry.path, "not a regular file (a device or pipe?)")
            return ""
        return "file"
