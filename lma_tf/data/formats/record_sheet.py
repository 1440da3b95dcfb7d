"""The CSV record sheet (`manifest.csv`) and the per-slice scar CSV.

A record sheet names slice files, one per row, with optional columns that
override what the file says: `file[,subject_id,slice_id,scar_csv,
frame_period_ms,slice_location,orientation_sector0,orientation_offset,
orientation_direction]` (header case-insensitive, paths relative to
the sheet, blank lines and lines starting with '#' skipped). If a row names a
slice_id and its file (a pickled `.npy`) holds several slices, the row selects
the slice of that id. Rows may not name another sheet, nor (unless the
caller's scope allows it) a path outside the input folders. The sheet is
streamed with capped line lengths, and messages name lines and columns,
never the content of a cell (docs/reliability.md).

A scar CSV holds 126 per-sector values: one comma-separated line, or one value
per line, each with an optional header line; with several columns (e.g.
pandas' `,scar_percentage` with an index column) the column named one of
SCAR_COLUMNS is used. A column name containing "percent" means percent
(converted with the per-file rule of `common.percent_to_fraction`); otherwise
the values are fractions. The writer puts scar next to each DENSEanalysis
export, as `<subject_id>/<slice_id>_scar.csv` (fractions, one line, no
header). See docs/data.md.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from lma_tf import atomic
from lma_tf.data.formats import common
from lma_tf.data.slices import ORIENTATION_FIELDS, DenseSlice, Reject, SliceError

EXTENSION = ".csv"
MANIFEST_NAME = "manifest.csv"  # a folder holding one is described by it
SCAR_CSV_SUFFIX = "_scar.csv"

FILE = "file"
SUBJECT_ID = "subject_id"
SLICE_ID = "slice_id"
SCAR_CSV = "scar_csv"
FRAME_PERIOD = "frame_period_ms"
SLICE_LOCATION = "slice_location"
# Each overrides its DenseSlice field of the same name (the file's orientation
# is replaced field by field; validation wants all three or none in the end).
ORIENTATION_SECTOR0, ORIENTATION_OFFSET, ORIENTATION_DIRECTION = ORIENTATION_FIELDS
COLUMNS = (
    FILE,
    SUBJECT_ID,
    SLICE_ID,
    SCAR_CSV,
    FRAME_PERIOD,
    SLICE_LOCATION,
    *ORIENTATION_FIELDS,
)
WRITTEN_COLUMNS = (FILE, SUBJECT_ID, SLICE_ID, SCAR_CSV)

SCAR_COLUMNS = (
    "scar_fraction",
    "scar_percentage",
    "scar_sector_percentage",
    "scar",
    "fraction",
)

# Reads one slice file (path, allow_pickle): `sources.read_source`.
SliceReader = Callable[[str, bool], Iterable[DenseSlice | Reject]]


# ----------------------------------------------------------------------------
# Reading


@dataclasses.dataclass(frozen=True)
class _Row:
    """One data line of a sheet: where it is, and its values by column."""

    sheet: str
    line: int
    folder: str  # the sheet's folder: relative paths start there
    values: dict[str, str]

    @property
    def where(self) -> str:
        """`manifest <sheet> line <n>`, for reject reasons."""
        return f"manifest {self.sheet} line {self.line}"

    def resolve(self, name: str) -> str:
        """A path of the row, relative to the sheet's folder unless absolute."""
        name = os.path.expanduser(name)
        if not os.path.isabs(name):
            name = os.path.join(self.folder, name)
        return os.path.normpath(name)


# Limits that keep reading a sheet or a scar CSV in bounded memory, however
# large or malformed the file: it is read line by line, never whole.
MAX_LINE_CHARS = 65_536
MAX_LINES_PER_ROW = 16  # physical lines one CSV row may span (quoted newlines)
MAX_SCAR_LINES = 1_024  # a scar CSV holds 126 values (plus a header)
MAX_REJECTED_ROWS = 10_000  # then the rest of the sheet is refused at once


class _Lines:
    """A text file's lines for csv.reader, each capped, with a per-row cap.

    Raises SliceError (naming the line) on a line longer than MAX_LINE_CHARS
    or a row spanning more than MAX_LINES_PER_ROW lines, so a 2 GB line or
    an unterminated quote never fills memory.
    """

    def __init__(self, fh) -> None:
        self.fh = fh
        self.line = 0
        self.in_row = 0  # lines read for the row being parsed

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = self.fh.readline(MAX_LINE_CHARS + 1)
        if not text:
            raise StopIteration
        self.line += 1
        self.in_row += 1
        if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
            raise SliceError(
                f"line {self.line} is longer than {MAX_LINE_CHARS} characters"
            )
        if self.in_row > MAX_LINES_PER_ROW:
            raise SliceError(
                f"a row spans more than {MAX_LINES_PER_ROW} lines (line {self.line}; "
                "an unclosed quote?)"
            )
        return text

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(first line number, cells) of each CSV row, streamed."""
        reader = csv.reader(self)
        while True:
            first = self.line + 1
            self.in_row = 0
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # e.g. a field over csv.field_size_limit()
                raise SliceError(f"line {self.line}: malformed CSV ({e})") from None
            yield first, row


def read(
    path: str,
    read_file: SliceReader,
    slice_extensions: Sequence[str],
    allow_pickle: bool = False,
    scope: common.Scope | None = None,
) -> Iterator[DenseSlice | Reject]:
    """The slices of every row's file, with the row's overrides applied.

    `read_file` reads a row's file; a row may only name a file whose
    extension is in `slice_extensions`, and (through links too) inside
    `scope` (default: the sheet's folder). A bad row, or a bad slice of a
    row's file, is a Reject naming the sheet's line; nothing is raised. The
    sheet is streamed, so its size does not matter; messages never quote
    its content, only line and column.
    """
    scope = scope or common.Scope.of([path])
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            yield from _read_rows(
                path, _Lines(fh), read_file, slice_extensions, allow_pickle, scope
            )
    except SliceError as e:
        yield Reject(path, "", str(e))
    except Exception as e:  # any failure is a reject, not a crash
        yield Reject(path, "", f"unreadable file: {_io_reason(e)}")


def _read_rows(
    path: str,
    lines: _Lines,
    read_file: SliceReader,
    slice_extensions: Sequence[str],
    allow_pickle: bool,
    scope: common.Scope,
) -> Iterator[DenseSlice | Reject]:
    """The rows of an open sheet (see `read`); raises SliceError to stop it."""
    folder = os.path.dirname(os.path.abspath(path))
    columns: list[str] | None = None
    rejected = 0
    for line, values in lines.rows():
        if not any(c.strip() for c in values):
            continue  # blank line
        if columns is None:
            columns = [c.strip().lower() for c in values]
            if FILE not in columns:
                raise SliceError(
                    f"manifest has no 'file' column in its header (line {line}); "
                    f"expected {COLUMNS[0]}[,{','.join(COLUMNS[1:])}]"
                )
            continue
        if values[0].lstrip().startswith("#"):
            continue  # comment line
        row = {c: v.strip() for c, v in zip(columns, values, strict=False)}
        for item in _read_row(
            _Row(path, line, folder, row),
            read_file,
            slice_extensions,
            allow_pickle,
            scope,
        ):
            rejected += isinstance(item, Reject)
            yield item
        if rejected >= MAX_REJECTED_ROWS:
            raise SliceError(
                f"stopped at line {line}: {rejected} rejects in this sheet; fix "
                "the sheet (the rest of it was not read)"
            )
    if columns is None:
        raise SliceError("empty manifest (no header line)")


def _io_reason(e: BaseException) -> str:
    """An exception as a reject reason, without quoting the file's bytes."""
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte {e.start})"
    return str(e) if isinstance(e, SliceError) else common.describe(e)


def _in_scope(row: _Row, column: str, path: str, scope: common.Scope) -> str:
    """`path` if `scope` allows it; else SliceError naming the row and column."""
    if not scope.allows(path):
        raise SliceError(
            f"column '{column}' names a path outside the input folders "
            f"({row.where}); pass --allow_outside_paths to read it"
        )
    return path


def _overrides(
    row: _Row, file: str, slice_extensions: Sequence[str], scope: common.Scope
) -> dict[str, Any]:
    """The row's values that replace the file's; raises SliceError on a bad row."""
    _in_scope(row, FILE, file, scope)
    if not os.path.isfile(file):
        raise SliceError(f"file not found ({row.where})")
    if os.path.splitext(file)[1].lower() not in slice_extensions:
        names = "/".join(slice_extensions)
        raise SliceError(f"manifest rows must name {names} files ({row.where})")
    values = row.values
    overrides: dict[str, Any] = {}
    if values.get(SUBJECT_ID):
        overrides["subject_id"] = values[SUBJECT_ID]
    if values.get(SLICE_ID):
        overrides["slice_id"] = values[SLICE_ID]
    for col in (ORIENTATION_SECTOR0, ORIENTATION_DIRECTION):  # checked later
        if values.get(col):
            overrides[col] = values[col]
    for col in (FRAME_PERIOD, SLICE_LOCATION, ORIENTATION_OFFSET):
        if values.get(col):
            try:
                overrides[col] = common.to_float(col, values[col])
            except SliceError as e:
                raise SliceError(f"{e} ({row.where}, column '{col}')") from None
    if values.get(SCAR_CSV):
        scar_path = _in_scope(row, SCAR_CSV, row.resolve(values[SCAR_CSV]), scope)
        try:
            overrides["scar_fraction"] = read_scar_csv(scar_path)
        except Exception as e:
            raise SliceError(
                f"unreadable scar CSV {scar_path}: {_io_reason(e)} ({row.where})"
            ) from None
    return overrides


def _read_row(
    row: _Row,
    read_file: SliceReader,
    slice_extensions: Sequence[str],
    allow_pickle: bool,
    scope: common.Scope,
) -> Iterator[DenseSlice | Reject]:
    slice_id = row.values.get(SLICE_ID, "")
    if not row.values.get(FILE):
        yield Reject(row.sheet, slice_id, f"{row.where}: empty 'file'")
        return
    file = row.resolve(row.values[FILE])
    try:
        overrides = _overrides(row, file, slice_extensions, scope)
    except SliceError as e:
        yield Reject(file, slice_id, str(e))
        return

    items = list(read_file(file, allow_pickle))
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
                f"({row.where})",
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


def _scar_rows(path: str) -> list[tuple[int, list[str]]]:
    """(line, cells) of each non-empty line of a scar CSV, trailing commas dropped.

    Streamed and capped (MAX_SCAR_LINES lines of at most MAX_LINE_CHARS).
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = []
        for line, raw in _Lines(fh).rows():
            row = [c.strip() for c in raw]
            while row and not row[-1]:  # trailing commas
                row.pop()
            if row:
                rows.append((line, row))
            if len(rows) > MAX_SCAR_LINES:
                raise SliceError(
                    f"more than {MAX_SCAR_LINES} lines; a scar CSV holds 126 values"
                )
    return rows


def _scar_tokens(rows: list[tuple[int, list[str]]]) -> tuple[str, list]:
    """(column name, [(line, column number, text)]) of the scar values.

    Messages name lines and column numbers, never the file's text.
    """
    header: list[str] = []
    if not all(_is_number(c) for c in rows[0][1]):
        header = [c.lower() for c in rows.pop(0)[1]]
    column = header[0] if len(header) == 1 else ""
    named = next((c for c in SCAR_COLUMNS if c in header), None)
    if len(header) > 1 and named is not None:
        index = header.index(named)
        for line, r in rows:
            if index >= len(r):
                raise SliceError(f"line {line} has no value in column {index + 1}")
        return named, [(line, index + 1, r[index]) for line, r in rows]
    if len(rows) == 1:
        line, r = rows[0]
        return column, [(line, i + 1, t) for i, t in enumerate(r)]
    if rows and all(len(r) == 1 for _, r in rows):
        return column, [(line, 1, r[0]) for line, r in rows]
    if len(header) > 1:
        raise SliceError(
            f"{len(header)} columns in the header and none named one of "
            f"{', '.join(SCAR_COLUMNS)}"
        )
    raise SliceError(
        "expected one comma-separated line or one value per line, got "
        f"{len(rows)} lines of up to {max((len(r) for _, r in rows), default=0)} "
        "values"
    )


def read_scar_csv(path: str) -> np.ndarray:
    """Per-sector scar from a small CSV, as fractions (layouts: module docstring).

    Raises:
      SliceError: the file is empty, too long, ambiguous or not numeric
        (naming the line and column, never quoting the file).
      OSError: the file cannot be read.
    """
    rows = _scar_rows(path)
    if not rows:
        raise SliceError("empty file")
    column, tokens = _scar_tokens(rows)
    for line, col, text in tokens:
        if not _is_number(text):
            raise SliceError(f"non-numeric value at line {line}, column {col}")
    values = np.array([float(t) for _, _, t in tokens], dtype=np.float64)
    if "percent" in column and common.percent_to_fraction([values]):
        values = values / 100.0
    return values


# ----------------------------------------------------------------------------
# Writing


def scar_csv_text(scar: np.ndarray) -> str:
    """126 comma-separated fractions on one line (shortest exact float32 text)."""
    values = np.asarray(scar, dtype=np.float32)
    return ",".join(np.format_float_positional(v, trim="-") for v in values) + "\n"


def sheet_text(rows: Sequence[dict[str, str]]) -> str:
    """A record sheet with the WRITTEN_COLUMNS header and one line per row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=WRITTEN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write(
    slices: Sequence[DenseSlice], output_dir: str, slice_suffix: str
) -> list[str]:
    """The sheet of files `<subject_id>/<slice_id><slice_suffix>`, with scar CSVs.

    Each slice with scar gets `<output_dir>/<subject_id>/<slice_id>_scar.csv`;
    `<output_dir>/manifest.csv` names file, subject_id, slice_id and scar_csv
    (paths relative to the sheet, '/'-separated, scar_csv empty when there is
    none). Files are written atomically. Returns the scar CSVs, then the sheet.
    """
    common.check_unique(slices)
    scar_paths, rows = [], []
    for s in slices:
        scar_rel = ""
        if s.scar_fraction is not None:
            scar_path = common.slice_path(output_dir, s, SCAR_CSV_SUFFIX)
            atomic.write_bytes(scar_path, scar_csv_text(s.scar_fraction).encode())
            scar_paths.append(scar_path)
            scar_rel = common.slice_relpath(s, SCAR_CSV_SUFFIX)
        rows.append(
            {
                FILE: common.slice_relpath(s, slice_suffix),
                SUBJECT_ID: s.subject_id,
                SLICE_ID: s.slice_id,
                SCAR_CSV: scar_rel,
            }
        )
    sheet = os.path.join(output_dir, MANIFEST_NAME)
    atomic.write_bytes(sheet, sheet_text(rows).encode())
    return scar_paths + [sheet]
