"""Reading a records folder's manifest.json (the reading side of `records.py`).

The tf.data pipeline, training and evaluation only need to know which shards
a split has and the train-split statistics; importing this module instead of
`records` keeps the shard writer out of them. The manifest's fields are
described in docs/data.md.
"""

from __future__ import annotations

import json
import os

from lma_tf.data import features
from lma_tf.errors import LmaError, UsageError

MANIFEST = "manifest.json"  # written last: a folder without one is incomplete
SPLITS = ("train", "val", "test")


def manifest_path(records_dir: str) -> str:
    """Where the manifest of `records_dir` is."""
    return os.path.join(records_dir, MANIFEST)


def load_manifest(records_dir: str) -> dict:
    """Reads `records_dir/manifest.json`, refusing incomplete or foreign dirs.

    Raises:
      FileNotFoundError: no manifest: not a records folder, or its writing
        was interrupted.
      UsageError (a ValueError): records of another schema version.
    """
    path = manifest_path(records_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: not a records directory, or its writing was "
            "interrupted (rerun `lma-tf convert`)"
        )
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("schema_version") != features.SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema_version {manifest.get('schema_version')} != "
            f"{features.SCHEMA_VERSION} expected by this lma_tf; rebuild the "
            "records with `lma-tf convert`"
        )
    return manifest


class RecordsIntegrityError(LmaError):
    """A shard differs from what the manifest says (truncated, replaced, missing)."""


# (real path, size, mtime, inode) -> records counted: a shard is counted once
# per process, however often a dataset of it is built (once per epoch).
_counted: dict[tuple, int] = {}


def _count_records(path: str, compression: str) -> int:
    """Records in one shard, by a pass over it (checksums verified).

    Each record must also parse as a tf.train.Example: TensorFlow's own
    parse error quotes the record's bytes and fails to decode them
    (UnicodeDecodeError) instead of naming the shard.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _counted:
        return _counted[key]
    n = 0
    try:
        with tf.init_scope():  # eager even when called while tracing
            for raw in tf.data.TFRecordDataset(path, compression_type=compression):
                try:
                    tf.train.Example.FromString(raw.numpy())
                except DecodeError:
                    raise RecordsIntegrityError(
                        f"{path}: record {n} is not a tf.train.Example; rerun "
                        "`lma-tf convert`"
                    ) from None
                n += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise RecordsIntegrityError(
            f"{path}: corrupt shard after {n} records "
            f"({e.message.splitlines()[0]}); rerun `lma-tf convert`"
        ) from None
    _counted[key] = n
    return n


def verify_split(records_dir: str, split: str) -> int:
    """Checks that a split's shards hold what the manifest says; returns the count.

    Per shard: present, of the recorded size and number of records (manifests
    of older versions record neither: only the split's total is checked).
    Each shard is read once per process and remembered while unchanged.

    Raises:
      RecordsIntegrityError: naming the first shard that differs, or the
        split whose total differs.
    """
    manifest = load_manifest(records_dir)
    info = manifest["splits"][split]
    compression = manifest.get("compression", "")
    counts = info.get("shard_num_slices") or {}
    sizes = info.get("shard_bytes") or {}
    total = 0
    for name in info["shards"]:
        path = os.path.join(records_dir, name)
        if not os.path.isfile(path):
            raise RecordsIntegrityError(
                f"{path}: shard listed in the manifest is missing; rerun "
                "`lma-tf convert`"
            )
        size = os.path.getsize(path)
        if name in sizes and size != sizes[name]:
            raise RecordsIntegrityError(
                f"{path}: {size} bytes, the manifest says {sizes[name]}: the shard "
                "was truncated or replaced; rerun `lma-tf convert`"
            )
        n = _count_records(path, compression)
        if name in counts and n != counts[name]:
            raise RecordsIntegrityError(
                f"{path}: {n} records, the manifest says {counts[name]}; rerun "
                "`lma-tf convert`"
            )
        total += n
    if total != info["num_slices"]:
        raise RecordsIntegrityError(
            f"{records_dir}: split {split!r} holds {total} records in its shards, "
            f"the manifest says {info['num_slices']}; rerun `lma-tf convert`"
        )
    return total
