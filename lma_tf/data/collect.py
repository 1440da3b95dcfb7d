"""Reading and validating every slice under some inputs, without TensorFlow.

Shared by the records writer (`records.make_records`) and batch prediction
(`lma_tf.serving.predict`), so that both read and refuse exactly the same
slices; numpy/scipy/h5py only, for the TensorFlow-free serving path.
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Sequence

from lma_tf import textsafe
from lma_tf.data import sources
from lma_tf.data.formats.common import describe
from lma_tf.data.slices import DenseSlice, Reject, SliceError, validate_slice
from lma_tf.errors import UsageError


def _nothing_to_read(inputs: Sequence[str], limit: int = 10_000) -> str:
    """Why the inputs hold no slice file: what was there, and what is read."""
    seen: collections.Counter = collections.Counter()
    for root in inputs:
        for _, _, names in itertools.islice(os.walk(root), limit):
            seen.update(os.path.splitext(n)[1].lower() or "(none)" for n in names)
    there = ", ".join(f"{n} {ext}" for ext, n in seen.most_common(5)) or "no files"
    return (
        f"no slice file in {[textsafe.clean(i) for i in inputs]} (found: "
        f"{textsafe.clean(there)}); supported inputs are "
        f"{', '.join(sources.SLICE_EXTENSIONS)} files and CSV record sheets "
        f"({sources.MANIFEST_NAME}); DICOM images must first be analysed with "
        "DENSEanalysis and exported as .mat (docs/data.md)"
    )


def report_to_stderr(r: Reject) -> None:
    """The reject line on stderr, without breaking a progress bar."""
    tqdm = sys.modules.get("tqdm")  # no bar can be showing if it is not loaded
    if tqdm is not None:
        tqdm.tqdm.write(r.line(), file=sys.stderr)
    else:
        sys.stderr.write(r.line() + "\n")


def progress_bar(files: Iterable, progress: bool, **kwargs) -> Iterable:
    """`files` under a tqdm bar when `progress`; tqdm is imported only then
    (its import costs more than reading a patient's files)."""
    if not progress:
        return files
    import tqdm

    return tqdm.tqdm(files, **kwargs)


def collect_slices(
    inputs: Sequence[str],
    allow_pickle: bool = False,
    progress: bool = True,
    report: Callable[[Reject], None] | None = None,
    *,
    allow_outside_paths: bool = False,
) -> tuple[list[DenseSlice], list[Reject], list[dict]]:
    """Reads and validates every slice under `inputs`.

    Inputs that discovery refuses (unreadable folders, links outside the
    inputs unless `allow_outside_paths`, names that are not UTF-8) are
    rejects too: nothing is skipped without a reason.

    Returns:
      (good slices sorted by subject and slice, rejects, per-source summary).
    """
    found = sources.scan(list(inputs), allow_outside_paths)
    good: dict[tuple[str, str], DenseSlice] = {}
    rejects: list[Reject] = []
    summary: list[dict] = []

    def reject(r: Reject) -> None:
        rejects.append(r)
        if report is not None:
            report(r)

    for r in found.rejects:
        reject(r)
    files = found.files
    if not files and not found.rejects:
        raise UsageError(_nothing_to_read(inputs))
    for path in progress_bar(files, progress, desc="reading", unit="file"):
        kept = refused = 0
        for item in sources.read_source(path, allow_pickle, found.scope):
            if isinstance(item, Reject):
                reject(item)
                refused += 1
                continue
            try:
                s = validate_slice(item)
            except Exception as e:  # one bad slice never stops the run
                reason = str(e) if isinstance(e, SliceError) else describe(e)
                reject(Reject(item.source or path, item.slice_id, reason))
                refused += 1
                continue
            if s.key in good:
                first = good[s.key].source
                reject(
                    Reject(
                        s.source or path,
                        s.slice_id,
                        f"duplicate slice id {s.slice_id!r} of subject "
                        f"{s.subject_id!r} (first seen in {first})",
                    )
                )
                refused += 1
                continue
            good[s.key] = s
            kept += 1
        summary.append({"path": path, "slices": kept, "rejects": refused})
    return [good[k] for k in sorted(good)], rejects, summary
