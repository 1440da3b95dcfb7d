"""Atomic file writes: a temporary name in the target folder, then os.replace.

A reader (or a rerun after a kill) never sees half a file under the final
name: either the old content or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a hidden temporary path next to `path`; moves it there on success."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str, data: bytes) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def write_text(path: str, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | tuple | set):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(
    path: str, obj: Any, *, allow_nan: bool = True, sort_keys: bool = False
) -> str:
    """Indented JSON (numpy values converted), written atomically."""
    text = json.dumps(
        obj, indent=2, allow_nan=allow_nan, sort_keys=sort_keys, default=json_default
    )
    return write_text(path, text + "\n")


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> str:
    """Compressed .npz under exactly `path` (numpy would append .npz to a name)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path
