"""DENSE slices -> validated, subject-split, sharded TFRecords + manifest.json.

The library behind `lma-tf convert` (`lma_tf/cli/convert.py`); the record
schema and the manifest's fields are described in docs/data.md, and reading a
manifest back is `manifest.load_manifest`. Every rejected slice is reported
(file, slice, reason) and recorded in the manifest; good slices are never
lost because of bad ones. Writes are atomic: shards and the manifest are
written under temporary names and renamed once complete, and the manifest of
a previous run is removed before any shard is touched, so an interrupted run
never leaves a directory that looks complete. The output folder is locked
for the run and only files the tool recorded as its own are deleted
(`records_dir`); the same inputs always give byte-identical shards and
manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tqdm

from lma_tf import __version__, textsafe
from lma_tf.data import features, records_dir
from lma_tf.data.collect import collect_slices, report_to_stderr
from lma_tf.data.manifest import MANIFEST, SPLITS, load_manifest
from lma_tf.data.slices import DenseSlice, Reject
from lma_tf.errors import LmaError, UsageError
from lma_tf.rules import lma_labels

# MANIFEST, SPLITS and load_manifest live in `manifest` (the reading side);
# they stay importable from here for the writer's callers.
__all__ = [
    "MANIFEST",
    "SPLITS",
    "RecordsError",
    "RecordsOptions",
    "assign_split",
    "check_salt",
    "check_split",
    "collect_slices",
    "load_manifest",
    "make_records",
    "pseudonymize",
    "report_to_stderr",
    "shard_name",
    "write_records",
]


class RecordsError(LmaError):
    """The records could not be made (no valid slice, or a reject in strict mode)."""


@dataclasses.dataclass
class RecordsOptions:
    """What `make_records` does; mirrors the flags of `lma-tf convert`.

    Raises UsageError (a ValueError) on a value that cannot work.
    """

    output_dir: str
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    num_shards: int = 0  # per split; 0 = about one shard per 256 slices
    compression: str = ""  # "" or "GZIP"
    allow_pickle: bool = False
    strict: bool = False
    pseudonymize_salt: str = dataclasses.field(default="", repr=False)
    seed: int = 0
    progress: bool = True
    allow_outside_paths: bool = False

    def __post_init__(self) -> None:
        check_split(self.split)
        if self.pseudonymize_salt:
            check_salt(self.pseudonymize_salt)
        if self.compression not in ("", "GZIP"):
            raise UsageError(f"compression must be '' or 'GZIP': {self.compression!r}")
        if self.num_shards < 0:
            raise UsageError(f"num_shards must be >= 0, got {self.num_shards}")


def check_split(split: Sequence[float], name: str = "split") -> None:
    """Raises UsageError unless `split` is train,val,test fractions summing to 1.

    Each fraction lies in [0, 1]; a 0 leaves that split empty. `name` (e.g.
    the flag, "--split") starts the message.
    """
    if (
        len(split) != 3
        or not all(0.0 <= f <= 1.0 for f in split)
        or not math.isclose(sum(split), 1.0, abs_tol=1e-6)
    ):
        given = ",".join(f"{f:g}" for f in split)
        raise UsageError(
            f"{name}={given}: must be three fractions train,val,test, each in "
            "[0, 1], that sum to 1 (e.g. 0.7,0.15,0.15; not percentages)"
        )


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(subject_id: str, fractions: Sequence[float], seed: int) -> str:
    """Split of a subject from a seeded hash of its id.

    Hash-based rather than a shuffled list, so a subject keeps its split when
    others are added to the cohort.
    """
    u = _unit_hash(str(seed), subject_id)
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    # Rounding left u above the last edge: the last non-empty split.
    return [n for n, f in zip(SPLITS, fractions) if f > 0][-1]


def pseudonymize(subject_id: str, salt: str) -> str:
    """Salted, irreversible subject pseudonym (records often leave the hospital)."""
    return "S" + hashlib.sha256(f"{salt}\x1f{subject_id}".encode()).hexdigest()[:16]


# A salt must resist trying every possibility: a subject id and its
# pseudonym (e.g. one patient who knows both) give away a short salt in
# seconds, and then every other pseudonym of the cohort. 16 random bytes
# (32 hex digits, 128 bits) cannot be searched.
MIN_SALT_BYTES = 16
SALT_ENV = "LMA_TF_SALT"
_MAX_SALT_FILE_BYTES = 4096


def check_salt(salt: str, name: str = "pseudonymize salt") -> None:
    """Raises UsageError unless `salt` is strong enough (MIN_SALT_BYTES).

    A salt of hex digits needs 2 x MIN_SALT_BYTES of them (each carries half
    a byte); any other needs MIN_SALT_BYTES bytes of UTF-8 and 8 different
    characters. The message never shows the salt.
    """
    strength = (
        len(salt) // 2
        if re.fullmatch(r"[0-9a-fA-F]+", salt)
        else len(salt.encode("utf-8", "surrogatepass"))
    )
    if strength < MIN_SALT_BYTES or len(set(salt)) < 8:
        raise UsageError(
            f"{name} too weak ({len(salt)} characters): use at least "
            f"{MIN_SALT_BYTES} random bytes, e.g. the {2 * MIN_SALT_BYTES} hex "
            "digits of `python -c 'import secrets; print(secrets.token_hex(16))'`; "
            "anyone who knows one subject id and its pseudonym can find a short "
            "salt by trying them all"
        )


def resolve_salt(
    flag: str = "", path: str = "", environ: Mapping[str, str] | None = None
) -> tuple[str, list[str]]:
    """(salt, warnings) from --pseudonymize_salt, --pseudonymize_salt_file or
    the LMA_TF_SALT environment variable, in that order; "" if none.

    The flag is accepted with a warning: other users of the machine see it in
    `ps` and shell history. The file holds the salt on one line (trailing
    newline ignored). Raises UsageError on two sources or a weak salt.
    """
    environ = os.environ if environ is None else environ
    if flag and path:
        raise UsageError(
            "give --pseudonymize_salt or --pseudonymize_salt_file, not both"
        )
    warnings = []
    if flag:
        warnings.append(
            "--pseudonymize_salt is visible to other users of this machine (ps, "
            f"shell history); prefer --pseudonymize_salt_file or {SALT_ENV}"
        )
        salt, name = flag, "--pseudonymize_salt"
    elif path:
        path = os.path.expanduser(path)
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_SALT_FILE_BYTES + 1)
        except OSError as e:
            raise UsageError(
                f"--pseudonymize_salt_file={textsafe.clean(path)}: cannot read it "
                f"({e.strerror or type(e).__name__})"
            ) from None
        if len(data) > _MAX_SALT_FILE_BYTES:
            raise UsageError(
                f"--pseudonymize_salt_file={textsafe.clean(path)}: more than "
                f"{_MAX_SALT_FILE_BYTES} bytes; it must hold the salt alone"
            )
        salt = data.decode("utf-8", "replace").rstrip("\r\n")
        name = f"the salt in {textsafe.clean(path)}"
    else:
        salt, name = environ.get(SALT_ENV, ""), SALT_ENV
    if salt:
        check_salt(salt, name)
    return salt, warnings


def shard_name(split: str, index: int, count: int, compression: str) -> str:
    """`train-00000-of-00004.tfrecord[.gz]`: the name of one shard of a split."""
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{count:05d}{suffix}"


class _Stats:
    """Running train-split statistics for normalisation (float64 sums)."""

    def __init__(self) -> None:
        self.n = self.s = self.ss = 0.0
        self.tn = self.ts = self.tss = 0.0
        self.lma_pos = self.lma_n = 0.0
        self.frames: list[int] = []

    def add(self, s: DenseSlice) -> None:
        """Counts one train slice."""
        x = s.strain_matrix.astype(np.float64)
        self.n += x.size
        self.s += x.sum()
        self.ss += np.square(x).sum()
        self.frames.append(s.num_frames)
        if s.tos_ms is not None:
            t = s.tos_ms.astype(np.float64)
            self.tn += t.size
            self.ts += t.sum()
            self.tss += np.square(t).sum()
            lab = lma_labels(s.tos_ms, s.scar_fraction)
            self.lma_pos += lab.sum()
            self.lma_n += lab.size

    def to_dict(self) -> dict:
        """The manifest's `normalization` entry (None where nothing was seen)."""

        def mean_std(n, s, ss):
            if n == 0:
                return None, None
            m = s / n
            return m, math.sqrt(max(ss / n - m * m, 0.0))

        sm, ssd = mean_std(self.n, self.s, self.ss)
        tm, tsd = mean_std(self.tn, self.ts, self.tss)
        return {
            "strain_mean": sm,
            "strain_std": ssd,
            "tos_mean_ms": tm,
            "tos_std_ms": tsd,
            "lma_positive_fraction": self.lma_pos / self.lma_n if self.lma_n else None,
            "num_frames_min": min(self.frames) if self.frames else None,
            "num_frames_max": max(self.frames) if self.frames else None,
            "num_frames_mean": float(np.mean(self.frames)) if self.frames else None,
        }


def _write_shard(
    path: str, tmp: str, slices: Iterable[DenseSlice], compression: str, bar
) -> int:
    """Writes one shard via `tmp`; returns its number of records.

    Examples are serialised deterministically (sorted map keys), so the same
    slices always give the same bytes.
    """
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp, options=compression or None) as w:
            for s in slices:
                w.write(
                    features.slice_to_example(s).SerializeToString(deterministic=True)
                )
                count += 1
                bar.update(1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return count


def _assign_splits(
    slices: Sequence[DenseSlice], options: RecordsOptions
) -> dict[str, list[DenseSlice]]:
    """The slices of each split, pseudonymised if asked (ids and source)."""
    by_split: dict[str, list[DenseSlice]] = {k: [] for k in SPLITS}
    for s in slices:
        split = assign_split(s.subject_id, options.split, options.seed)
        if options.pseudonymize_salt:
            salt = options.pseudonymize_salt
            # Slice ids and file names often embed the patient id too.
            s = dataclasses.replace(
                s,
                subject_id=pseudonymize(s.subject_id, salt),
                slice_id=pseudonymize(f"{s.subject_id}\x1f{s.slice_id}", salt),
                source="",
            )
        by_split[split].append(s)
    return by_split


def _write_split(
    split: str,
    slices: Sequence[DenseSlice],
    options: RecordsOptions,
    run: records_dir.Run,
    bar,
) -> dict:
    """Writes one split's shards; returns its manifest entry."""
    items = sorted(slices, key=lambda s: s.key)
    if options.num_shards:
        count = options.num_shards
    else:
        count = max(1, math.ceil(len(items) / 256))
    count = max(1, min(count, len(items))) if items else 0
    shards, counts, sizes = [], {}, {}
    for i in range(count):
        name = shard_name(split, i, count, options.compression)
        path = os.path.join(options.output_dir, name)
        counts[name] = _write_shard(
            path, run.tmp_path(name), items[i::count], options.compression, bar
        )
        sizes[name] = os.path.getsize(path)
        shards.append(name)
    subjects = sorted({s.subject_id for s in items})
    return {
        "num_slices": len(items),
        "num_subjects": len(subjects),
        "num_labelled": sum(s.tos_ms is not None for s in items),
        "num_with_scar": sum(s.scar_fraction is not None for s in items),
        "subjects": subjects,
        "shards": shards,
        "shard_num_slices": counts,
        "shard_bytes": sizes,
    }


def write_records(
    slices: Sequence[DenseSlice],
    rejects: Sequence[Reject],
    options: RecordsOptions,
    source_summary: Sequence[dict] = (),
) -> dict:
    """Splits by subject, writes the shards and the manifest; returns it.

    Holds the output folder's lock (`records_dir.lock`) and deletes only
    what earlier runs of this tool recorded as theirs (`records_dir.Run`).
    """
    with records_dir.lock(options.output_dir):
        run = records_dir.Run(options.output_dir)
        run.begin()
        by_split = _assign_splits(slices, options)
        stats = _Stats()
        for s in by_split["train"]:
            stats.add(s)
        bar = tqdm.tqdm(
            total=len(slices),
            desc="writing",
            unit="slice",
            disable=not options.progress,
        )
        with bar:
            splits_info = {
                split: _write_split(split, by_split[split], options, run, bar)
                for split in SPLITS
            }
        manifest = {
            "schema_version": features.SCHEMA_VERSION,
            "lma_tf_version": __version__,
            "feature_keys": sorted(features.FEATURE_SPEC),
            "compression": options.compression,
            "split_fractions": list(options.split),
            "seed": options.seed,
            "pseudonymized": bool(options.pseudonymize_salt),
            "num_slices": len(slices),
            "num_rejects": len(rejects),
            "splits": splits_info,
            "normalization": stats.to_dict(),
            "sources": [_redact_source(x, options) for x in source_summary],
            "rejects": [_redact_reject(r, options) for r in rejects],
        }
        written = [n for info in splits_info.values() for n in info["shards"]]
        run.finish(written, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _redact_source(summary: dict, options: RecordsOptions) -> dict:
    if not options.pseudonymize_salt:
        return {**summary, "path": textsafe.clean(summary["path"])}
    return {**summary, "path": pseudonymize(summary["path"], options.pseudonymize_salt)}


def _redact_reject(r: Reject, options: RecordsOptions) -> dict:
    """A reject for the manifest; pseudonymised manifests keep no names.

    The full line (file, slice, reason) still goes to stderr on the machine
    that ran the conversion.
    """
    if not options.pseudonymize_salt:
        return r.to_dict()
    salt = options.pseudonymize_salt
    reason = re.sub(r"'[^']*'|\S*[/\\]\S*", "<redacted>", r.reason)
    return {
        "file": pseudonymize(r.file, salt),
        "slice_id": pseudonymize(r.slice_id, salt) if r.slice_id else "",
        "reason": reason,
    }


def make_records(inputs: Sequence[str], options: RecordsOptions) -> dict:
    """End to end: read, validate, split, write. Returns the manifest.

    The output folder is locked for the whole run: a second conversion into
    it fails at once (`records_dir.FolderBusyError`) rather than mixing its
    shards with this one's.

    Raises:
      RecordsError: in strict mode on any reject, or when no slice is valid.
    """
    with records_dir.lock(options.output_dir):
        slices, rejects, summary = collect_slices(
            inputs,
            options.allow_pickle,
            options.progress,
            report_to_stderr,
            allow_outside_paths=options.allow_outside_paths,
        )
        if options.strict and rejects:
            raise RecordsError(
                f"--strict: {len(rejects)} slice(s) rejected, first: "
                f"{rejects[0].line()}"
            )
        if not slices:
            raise RecordsError(
                f"no valid slice found in {[textsafe.clean(i) for i in inputs]} "
                f"({len(rejects)} rejected; see the REJECT lines above)"
            )
        manifest = write_records(slices, rejects, options, summary)
    for split, frac in zip(SPLITS, options.split):
        if frac > 0 and manifest["splits"][split]["num_slices"] == 0:
            # Hash splits are lumpy on few subjects; say so before training fails.
            tqdm.tqdm.write(
                f"WARNING: split {split!r} is empty ({manifest['num_slices']} slices "
                "in all); add subjects or change --seed/--split",
                file=sys.stderr,
            )
    return manifest
