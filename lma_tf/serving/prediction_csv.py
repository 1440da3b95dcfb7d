"""The prediction CSV: one writer and one reader for every stage that uses it.

One row per slice and sector (0..125, DENSEanalysis order):
`subject_id, slice_id, slice_location, sector, tos_ms, lma_probability,
combined_tos_ms, true_tos_ms, scar_fraction`. The last two hold the input's
known labels, empty when it has none; `slice_location` is empty when unknown.
Three more optional columns carry the slice's sector orientation
(`orientation_sector0`, `orientation_offset`, `orientation_direction`; the
same on every row of a slice, empty when the input did not state it), so the
report maps sectors to AHA segments the way the data say.
`predict` writes it; the activation maps, the demo and reports read it.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Iterable

import numpy as np

from lma_tf import atomic, constants

TOS_MS = "tos_ms"
LMA_PROBABILITY = "lma_probability"
COMBINED_TOS_MS = "combined_tos_ms"
TRUE_TOS_MS = "true_tos_ms"
SCAR_FRACTION = "scar_fraction"
REQUIRED_COLUMNS = (
    "subject_id",
    "slice_id",
    "slice_location",
    "sector",
    TOS_MS,
    LMA_PROBABILITY,
    COMBINED_TOS_MS,
)
OPTIONAL_COLUMNS = (TRUE_TOS_MS, SCAR_FRACTION)
ORIENTATION_COLUMNS = (
    "orientation_sector0",
    "orientation_offset",
    "orientation_direction",
)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + ORIENTATION_COLUMNS
_SECTOR_COLUMNS = (TOS_MS, LMA_PROBABILITY, COMBINED_TOS_MS, *OPTIONAL_COLUMNS)
TOS_COLUMNS = (COMBINED_TOS_MS, TOS_MS)
_FORMATS = {TOS_MS: ".4f", LMA_PROBABILITY: ".6f", COMBINED_TOS_MS: ".4f"}
_FORMATS.update({TRUE_TOS_MS: ".4f", SCAR_FRACTION: ".4f"})


class PredictionCsvError(ValueError):
    """The file is not a prediction CSV (names the file and line)."""


@dataclasses.dataclass
class PredictedSlice:
    """One slice's rows: per-sector (126,) arrays, NaN where a sector is missing."""

    subject_id: str
    slice_id: str
    slice_location: float | None
    tos_ms: np.ndarray
    lma_probability: np.ndarray
    combined_tos_ms: np.ndarray
    true_tos_ms: np.ndarray | None = None
    scar_fraction: np.ndarray | None = None
    orientation_sector0: str | None = None
    orientation_offset: float | None = None
    orientation_direction: str | None = None

    def orientation_cells(self) -> tuple[str, str, str]:
        """The three orientation cells of this slice's rows ("" when unknown)."""
        if self.orientation_sector0 is None:
            return ("", "", "")
        return (
            str(self.orientation_sector0),
            f"{float(self.orientation_offset):g}",
            str(self.orientation_direction),
        )


def _cells(values: np.ndarray | None, fmt: str) -> list[str]:
    if values is None:
        return [""] * constants.NUM_SECTORS
    return ["" if not math.isfinite(v) else format(float(v), fmt) for v in values]


def write(slices: Iterable[PredictedSlice], path: str) -> int:
    """Writes the rows atomically (all or nothing); returns the row count."""
    rows = 0
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(COLUMNS)
            for s in slices:
                loc = "" if s.slice_location is None else f"{s.slice_location:g}"
                cols = [_cells(getattr(s, c), _FORMATS[c]) for c in _SECTOR_COLUMNS]
                orient = s.orientation_cells()
                for k in range(constants.NUM_SECTORS):
                    w.writerow(
                        (s.subject_id, s.slice_id, loc, k, *(c[k] for c in cols))
                        + orient
                    )
                    rows += 1
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it visible
    return rows


def _float(cell: str | None) -> float:
    cell = (cell or "").strip()
    return float(cell) if cell else math.nan


def read(path: str) -> list[PredictedSlice]:
    """The slices of a prediction CSV, in the file's order.

    Raises:
      PredictionCsvError: a required column is missing, a sector is out of
        0..125 or repeated, or a number does not parse (file and line named).
    """
    n = constants.NUM_SECTORS
    slices: dict[tuple[str, str], dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise PredictionCsvError(f"{path}: missing column(s) {missing}")
        values = [TOS_MS, LMA_PROBABILITY, COMBINED_TOS_MS]
        values += [c for c in OPTIONAL_COLUMNS if c in header]
        for line, row in enumerate(reader, start=2):
            key = (row["subject_id"], row["slice_id"])
            try:
                sector = int(row["sector"])
                cells = {c: _float(row[c]) for c in values}
                location = _float(row["slice_location"])
            except (TypeError, ValueError) as e:
                raise PredictionCsvError(f"{path}:{line}: {e}") from None
            if not 0 <= sector < n:
                raise PredictionCsvError(
                    f"{path}:{line}: sector {sector} not in 0..{n - 1}"
                )
            orient = tuple((row.get(c) or "").strip() for c in ORIENTATION_COLUMNS)
            s = slices.setdefault(
                key,
                {"location": location, "seen": np.zeros(n, bool), "orient": orient}
                | {c: np.full(n, np.nan) for c in values},
            )
            if s["orient"] != orient:
                raise PredictionCsvError(
                    f"{path}:{line}: the orientation of slice {key} differs "
                    "between its rows"
                )
            if s["seen"][sector]:
                raise PredictionCsvError(
                    f"{path}:{line}: sector {sector} of {key} repeated"
                )
            s["seen"][sector] = True
            for c in values:
                s[c][sector] = cells[c]

    def present(a: np.ndarray | None) -> np.ndarray | None:
        return a if a is not None and np.isfinite(a).any() else None

    def orientation(cells: tuple[str, str, str], key) -> dict:
        if not any(cells):
            return {}
        try:
            offset = float(cells[1])
        except ValueError:
            raise PredictionCsvError(
                f"{path}: slice {key}: orientation_offset is not a number"
            ) from None
        return {
            "orientation_sector0": cells[0],
            "orientation_offset": offset,
            "orientation_direction": cells[2],
        }

    return [
        PredictedSlice(
            subject_id=subject,
            slice_id=slice_id,
            slice_location=None if math.isnan(s["location"]) else s["location"],
            tos_ms=s[TOS_MS],
            lma_probability=s[LMA_PROBABILITY],
            combined_tos_ms=s[COMBINED_TOS_MS],
            true_tos_ms=present(s.get(TRUE_TOS_MS)),
            scar_fraction=present(s.get(SCAR_FRACTION)),
            **orientation(s["orient"], (subject, slice_id)),
        )
        for (subject, slice_id), s in slices.items()
    ]


def by_subject(slices: Iterable[PredictedSlice]) -> dict[str, list[PredictedSlice]]:
    """Slices grouped by subject, keeping the order of first appearance."""
    out: dict[str, list[PredictedSlice]] = {}
    for s in slices:
        out.setdefault(s.subject_id, []).append(s)
    return out
