"""Subject-level k-fold records: one ordinary records folder per fold.

Cross-validation pools every subject of a records folder (all three of its
splits), deals the subjects into k folds by a hash of their id, and writes,
for fold i, a records folder whose test split is fold i, whose val split is
a hashed share of the other folds' subjects and whose train split is the
rest. Training, evaluation and inference then read a fold like any records
folder: nothing downstream knows about folds.

The assignment depends only on the subject ids (and k), never on the
experiment, so every experiment sees the same folds; subjects with scar are
dealt first, so each fold gets its share of them. Extra training records
(other subjects, e.g. more synthetic hearts) join every fold's train split
without changing the folds, so runs with and without them are scored on the
same held-out subjects. Examples are copied as
serialized bytes (no re-encoding); each fold's manifest carries the
normalisation statistics of its own train split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from lma_tf import __version__, atomic, constants
from lma_tf.data import features, records
from lma_tf.data import manifest as manifest_lib
from lma_tf.errors import UsageError

FOLDS_JSON = "folds.json"
_SALT = "lma_tf-crossval"


def subject_rank(subject_id: str, salt: str = _SALT) -> str:
    """The hex digest that orders subjects for dealing (stable across runs)."""
    return hashlib.sha256(f"{salt}\x1f{subject_id}".encode()).hexdigest()


def assign_folds(has_scar: Mapping[str, bool], num_folds: int) -> dict[str, int]:
    """Subject -> fold in [0, num_folds): hashed order, scar subjects dealt first.

    Dealing round robin (rather than fold = hash mod k) keeps the folds'
    sizes within one subject of each other, and their scar counts too.
    """
    if num_folds < 2:
        raise UsageError(f"--folds={num_folds}: need at least 2 folds")
    if len(has_scar) < num_folds:
        raise UsageError(
            f"{len(has_scar)} subjects cannot fill {num_folds} folds; use fewer folds"
        )
    scar = sorted((s for s, v in has_scar.items() if v), key=subject_rank)
    free = sorted((s for s, v in has_scar.items() if not v), key=subject_rank)
    return {s: i % num_folds for i, s in enumerate(scar + free)}


def validation_subjects(
    train_subjects: Sequence[str], has_scar: Mapping[str, bool], fraction: float
) -> set[str]:
    """A hashed, scar-stratified `fraction` (at least one) of `train_subjects`."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"val_fraction={fraction} must be in (0, 1)")
    chosen: set[str] = set()
    for flag in (True, False):
        group = sorted(
            (s for s in train_subjects if has_scar[s] == flag),
            key=lambda s: subject_rank(s, _SALT + "-val"),
        )
        chosen.update(group[: int(round(fraction * len(group)))])
    if not chosen and train_subjects:
        chosen.add(min(train_subjects, key=lambda s: subject_rank(s, _SALT + "-val")))
    return chosen


@dataclasses.dataclass
class _Example:
    subject_id: str
    key: tuple[str, str]
    raw: bytes
    slice: object  # DenseSlice, for the train-split statistics


def _read_all(records_dir: str) -> tuple[list[_Example], str]:
    """Every example of every split of `records_dir`, and its compression."""
    manifest = manifest_lib.load_manifest(records_dir)
    compression = manifest.get("compression", "")
    paths = [
        os.path.join(records_dir, name)
        for split in manifest_lib.SPLITS
        for name in manifest["splits"].get(split, {}).get("shards", [])
    ]
    if not paths:
        raise UsageError(f"{records_dir}: the records hold no slices")
    ds = tf.data.TFRecordDataset(paths, compression_type=compression)
    ds = ds.map(lambda x: (x, features.parse_example(x)))
    out = []
    for raw, parsed in ds.as_numpy_iterator():
        s = features.example_to_slice(parsed)
        out.append(_Example(s.subject_id, (s.subject_id, s.slice_id), raw, s))
    return out, compression


def _fingerprint(examples: Sequence[_Example]) -> str:
    keys = sorted(e.key for e in examples)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def _has_scar(examples: Sequence[_Example]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for e in examples:
        scar = e.slice.scar_fraction
        flag = scar is not None and bool(
            (np.asarray(scar) >= constants.SCAR_THRESHOLD).any()
        )
        out[e.subject_id] = out.get(e.subject_id, False) or flag
    return out


def _write_split(
    out_dir: str, split: str, items: Sequence[_Example], compression: str
) -> dict:
    items = sorted(items, key=lambda e: e.key)
    count = max(1, math.ceil(len(items) / 256)) if items else 0
    shards = []
    for i in range(count):
        name = records.shard_name(split, i, count, compression)
        with atomic.atomic_path(os.path.join(out_dir, name)) as tmp:
            with tf.io.TFRecordWriter(tmp, options=compression or None) as w:
                for e in items[i::count]:
                    w.write(e.raw)
        shards.append(name)
    return {
        "num_slices": len(items),
        "num_subjects": len({e.subject_id for e in items}),
        "num_labelled": sum(e.slice.tos_ms is not None for e in items),
        "num_with_scar": sum(e.slice.scar_fraction is not None for e in items),
        "subjects": sorted({e.subject_id for e in items}),
        "shards": shards,
    }


def _write_fold(
    out_dir: str,
    by_split: Mapping[str, list[_Example]],
    compression: str,
    info: dict,
) -> None:
    """One fold's shards, then its manifest (written last: the fold is complete)."""
    os.makedirs(out_dir, exist_ok=True)
    # Until the new manifest lands the folder is incomplete, and says so.
    old_manifest = manifest_lib.manifest_path(out_dir)
    if os.path.exists(old_manifest):
        os.remove(old_manifest)
    for name in os.listdir(out_dir):
        if ".tfrecord" in name:
            os.remove(os.path.join(out_dir, name))
    stats = records._Stats()  # the converter's own train-split statistics
    for e in by_split["train"]:
        stats.add(e.slice)
    splits = {
        split: _write_split(out_dir, split, by_split[split], compression)
        for split in manifest_lib.SPLITS
    }
    manifest = {
        "schema_version": features.SCHEMA_VERSION,
        "lma_tf_version": __version__,
        "feature_keys": sorted(features.FEATURE_SPEC),
        "compression": compression,
        "num_slices": sum(len(v) for v in by_split.values()),
        "num_rejects": 0,
        "splits": splits,
        "normalization": stats.to_dict(),
        "sources": [],
        "rejects": [],
        "crossval": info,
    }
    atomic.write_json(manifest_lib.manifest_path(out_dir), manifest, sort_keys=True)


def fold_dir(root: str, fold: int) -> str:
    """The records folder of `fold` under a cross-validation's folds root."""
    return os.path.join(root, f"fold{fold}")


def _read_extra(
    extra_train_dir: str, cohort: Sequence[_Example], records_dir: str
) -> list[_Example]:
    """The extra training examples; refuses subjects that the cohort also has.

    Their serialized bytes are copied as read (`TFRecordDataset` undoes the
    folder's compression), so the folds' shards take the cohort's.
    """
    try:
        extra, _ = _read_all(extra_train_dir)
    except (FileNotFoundError, UsageError) as e:
        raise UsageError(f"--extra_train_records={extra_train_dir}: {e}") from None
    shared = sorted({e.subject_id for e in extra} & {e.subject_id for e in cohort})
    if shared:
        names = ", ".join(shared[:5]) + (" ..." if len(shared) > 5 else "")
        raise UsageError(
            f"{extra_train_dir}: {len(shared)} subject(s) also in {records_dir} "
            f"({names}); extra training subjects must be other people (or other "
            "synthetic hearts: lma-tf synthesize --first_subject); ids are "
            "compared as stored, so convert both folders with the same "
            "pseudonymisation"
        )
    return extra


def _check_same_extra(path: str, old: dict, extra_source: str | None) -> None:
    """Refuses to reuse folds made with other (or no) extra training records:
    models already trained on them would be mixed with new ones."""
    before = old.get("extra_train_source")
    if before != extra_source:
        raise UsageError(
            f"{path}: these folds were made with extra training records "
            f"{before or '(none)'}, not {extra_source or '(none)'}; use another "
            "--output_dir for a run with other extra training records"
        )


def make_fold_records(
    records_dir: str,
    root: str,
    num_folds: int,
    val_fraction: float = 0.15,
    extra_train_dir: str = "",
) -> dict:
    """Writes (or reuses) the k fold records folders under `root`.

    Returns the assignment written to `root/folds.json`: subject -> fold,
    each fold's val subjects, and a fingerprint of the pooled slices. An
    existing set for the same slices, folds and val fraction is reused.
    `extra_train_dir`: a records folder whose every slice joins the train
    split of every fold (never val or test); the folds, and so the subjects
    each model is scored on, are those of `records_dir` alone.
    """
    examples, compression = _read_all(records_dir)
    extra = (
        _read_extra(extra_train_dir, examples, records_dir) if extra_train_dir else []
    )
    extra_source = os.path.abspath(extra_train_dir) if extra_train_dir else None
    # The cohort's own fingerprint, plus the extras' where there are any: a
    # cohort with extras never matches one folder holding both.
    fingerprint = _fingerprint(examples)
    if extra:
        fingerprint += "+" + _fingerprint(extra)
    path = os.path.join(root, FOLDS_JSON)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        _check_same_extra(path, old, extra_source)
        same = (old["fingerprint"], old["num_folds"], old["val_fraction"]) == (
            fingerprint,
            num_folds,
            val_fraction,
        )
        complete = all(
            os.path.exists(manifest_lib.manifest_path(fold_dir(root, i)))
            for i in range(num_folds)
        )
        if same and complete:
            return old
    has_scar = _has_scar(examples)
    folds = assign_folds(has_scar, num_folds)
    val = {}
    for i in range(num_folds):
        train_subjects = sorted(s for s, f in folds.items() if f != i)
        val[i] = validation_subjects(train_subjects, has_scar, val_fraction)
        by_split: dict[str, list[_Example]] = {k: [] for k in manifest_lib.SPLITS}
        for e in examples:
            if folds[e.subject_id] == i:
                by_split["test"].append(e)
            elif e.subject_id in val[i]:
                by_split["val"].append(e)
            else:
                by_split["train"].append(e)
        by_split["train"] += extra
        info = {"fold": i, "num_folds": num_folds, "source": records_dir}
        if extra_source:
            info["extra_train_source"] = extra_source
        _write_fold(fold_dir(root, i), by_split, compression, info)
    assignment = {
        "fingerprint": fingerprint,
        "num_folds": num_folds,
        "val_fraction": val_fraction,
        "source": os.path.abspath(records_dir),
        "num_subjects": len(folds),
        "num_slices": len(examples),
        "subjects_with_scar": sum(has_scar.values()),
        "folds": folds,
        "val_subjects": {str(i): sorted(v) for i, v in val.items()},
        "extra_train_source": extra_source,
        "extra_train_subjects": len({e.subject_id for e in extra}),
        "extra_train_slices": len(extra),
    }
    atomic.write_json(path, assignment, sort_keys=True)
    return assignment
