"""Text and file names derived from data, made safe to print and to write.

Ids and paths come from user files: a newline in a slice id must not forge
a log line, and an id like `../x` must not name a file outside its folder.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def clean(text: object) -> str:
    """`text` with control characters escaped (`\\n` -> `\\x0a`) and bad UTF-8 shown."""
    s = text if isinstance(text, str) else str(text)
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def safe_name(text: object, max_len: int = 120) -> str:
    """A file-name component from an id: [A-Za-z0-9._+-] only, never '.' or '..'."""
    s = _UNSAFE_NAME.sub("_", clean(text)).strip(".") or "_"
    return s[:max_len]


def inside(folder: str, name: str) -> str:
    """`folder/name` after checking that it stays inside `folder`."""
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        from lma_tf.errors import UsageError

        raise UsageError(f"refusing to write {clean(name)!r} outside {clean(folder)}")
    return path
