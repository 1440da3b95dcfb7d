"""The CSV record sheet (`manifest.csv`) and the per-slice scar CSV.

A record sheet names slice files, one per row, with optional columns that
override what the file says: `file[,subject_id,slice_id,scar_csv,
frame_period_ms,slice_location]` (header case-insensitive, paths relative to
the sheet, blank lines and lines starting with '#' skipped). If a row names a
slice_id and its file (a pickled `.npy`) holds several slices, the row selects
the slice of that id. Rows may not name another sheet.

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
from lma_tf.data.slices import DenseSlice, Reject, SliceError

EXTENSION = ".csv"
MANIFEST_NAME = "manifest.csv"  # a folder holding one is described by it
SCAR_CSV_SUFFIX = "_scar.csv"

FILE = "file"
SUBJECT_ID = "subject_id"
SLICE_ID = "slice_id"
SCAR_CSV = "scar_csv"
FRAME_PERIOD = "frame_period_ms"
SLICE_LOCATION = "slice_location"
COLUMNS = (FILE, SUBJECT_ID, SLICE_ID, SCAR_CSV, FRAME_PERIOD, SLICE_LOCATION)
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


def read(
    path: str,
    read_file: SliceReader,
    slice_extensions: Sequence[str],
    allow_pickle: bool = False,
) -> Iterator[DenseSlice | Reject]:
    """The slices of every row's file, with the row's overrides applied.

    `read_file` reads a row's file; a row may only name a file whose
    extension is in `slice_extensions`. A bad row, or a bad slice of a row's
    file, is a Reject naming the sheet's line; nothing is raised.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except Exception as e:  # any failure is a reject, not a crash
        yield Reject(path, "", f"unreadable file: {common.describe(e)}")
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
    if FILE not in columns:
        yield Reject(
            path,
            "",
            f"manifest has no 'file' column (columns: {', '.join(columns)}); "
            f"expected {COLUMNS[0]}[,{','.join(COLUMNS[1:])}]",
        )
        return
    folder = os.path.dirname(os.path.abspath(path))
    for line, values in rows:
        if values[0].lstrip().startswith("#"):
            continue  # comment line
        row = {c: v.strip() for c, v in zip(columns, values, strict=False)}
        yield from _read_row(
            _Row(path, line, folder, row), read_file, slice_extensions, allow_pickle
        )


def _overrides(row: _Row, file: str, slice_extensions: Sequence[str]) -> dict[str, Any]:
    """The row's values that replace the file's; raises SliceError on a bad row."""
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
    for col in (FRAME_PERIOD, SLICE_LOCATION):  # same names as DenseSlice's
        if values.get(col):
            overrides[col] = common.to_float(col, values[col])
    if values.get(SCAR_CSV):
        scar_path = row.resolve(values[SCAR_CSV])
        try:
            overrides["scar_fraction"] = read_scar_csv(scar_path)
        except Exception as e:
            reason = str(e) if isinstance(e, SliceError) else common.describe(e)
            raise SliceError(f"unreadable scar CSV {scar_path}: {reason}") from None
    return overrides


def _read_row(
    row: _Row,
    read_file: SliceReader,
    slice_extensions: Sequence[str],
    allow_pickle: bool,
) -> Iterator[DenseSlice | Reject]:
    slice_id = row.values.get(SLICE_ID, "")
    if not row.values.get(FILE):
        yield Reject(row.sheet, slice_id, f"{row.where}: empty 'file'")
        return
    file = row.resolve(row.values[FILE])
    try:
        overrides = _overrides(row, file, slice_extensions)
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


def _scar_rows(path: str) -> list[list[str]]:
    """The non-empty lines of a scar CSV, cells stripped, trailing commas dropped."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = []
        for raw in csv.reader(fh):
            row = [c.strip() for c in raw]
            while row and not row[-1]:  # trailing commas
                row.pop()
            if row:
                rows.append(row)
    return rows


def read_scar_csv(path: str) -> np.ndarray:
    """Per-sector scar from a small CSV, as fractions (layouts: module docstring).

    Raises:
      SliceError: the file is empty, ambiguous or not numeric.
      OSError: the file cannot be read.
    """
    rows = _scar_rows(path)
    if not rows:
        raise SliceError("empty file")
    header: list[str] = []
    if not all(_is_number(c) for c in rows[0]):
        header = [c.lower() for c in rows.pop(0)]
    column = header[0] if len(header) == 1 else ""
    named = next((c for c in SCAR_COLUMNS if c in header), None)
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
            f"{', '.join(SCAR_COLUMNS)}"
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
