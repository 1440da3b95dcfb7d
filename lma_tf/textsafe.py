"""Text and file names derived from data, made safe to print and to write.

Ids and paths come from user files: a newline in a slice id must not forge
a log line, an id like `../x` must not name a file outside its folder, and a
file name that is not valid UTF-8 must not crash the program that prints it.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def _unicode(text: object) -> str:
    """`text` as printable str: bad UTF-8 (bytes, or surrogate-escaped) as `\\xNN`."""
    if isinstance(text, bytes | bytearray):
        return bytes(text).decode("utf-8", "backslashreplace")
    s = text if isinstance(text, str) else str(text)
    try:  # a file name os.* decoded with surrogateescape: show its real bytes
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def clean(text: object) -> str:
    """`text` with control characters escaped (`\\n` -> `\\x0a`) and bad UTF-8 shown."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", _unicode(text))


def is_utf8(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (False for undecodable file names)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_name(text: object, max_len: int = 120) -> str:
    """A file-name component from an id: [A-Za-z0-9._+-] only, never '.' or '..'."""
    s = _UNSAFE_NAME.sub("_", clean(text)).strip(".") or "_"
    return s[:max_len]


def is_inside(folder: str, path: str) -> bool:
    """Whether `path` (symbolic links resolved) lies in `folder` or below it."""
    root = os.path.realpath(folder)
    real = os.path.realpath(path)
    return os.path.commonpath([root, real]) == root


def inside(folder: str, name: str) -> str:
    """`folder/name` after checking that it stays inside `folder`."""
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        from lma_tf.errors import UsageError

        raise UsageError(f"refusing to write {clean(name)!r} outside {clean(folder)}")
    return path
