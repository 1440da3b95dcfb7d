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
from lma_tf.errors import UsageError

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
