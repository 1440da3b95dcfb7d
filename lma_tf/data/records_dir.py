"""The output folder of the records writer: one writer at a time, its own files only.

`lock` takes an exclusive `flock` on `<folder>/.lma-tf-convert.lock`, so a
second conversion into the same folder fails at once, naming the holder's
pid, instead of interleaving shards with the first. `Run` manages what a
conversion may leave behind: before creating anything it records, in the
marker file `<folder>/.lma-tf-convert.pending`, the token of its temporary
names and the shards of the previous records; a later run deletes exactly
those (never another `.tmp-*` file or folder of the user's). The marker goes
once the new manifest is in place. See docs/data.md ("Files").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator

from lma_tf import atomic, textsafe
from lma_tf.errors import LmaError

LOCK_NAME = ".lma-tf-convert.lock"
MARKER_NAME = ".lma-tf-convert.pending"
TMP_PREFIX = ".tmp-lma-tf-"
MANIFEST = "manifest.json"
SHARD_RE = re.compile(r"^(train|val|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?$")
_TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")

_held: set[str] = set()  # folders this process holds the lock of


class FolderBusyError(LmaError):
    """Another conversion is writing into the same output folder."""


@contextlib.contextmanager
def lock(output_dir: str) -> Iterator[None]:
    """Holds the writer's lock on `output_dir` (created if missing).

    Re-entrant within one process. The lock file keeps the holder's pid
    while held and is emptied on release (so reruns leave identical
    folders). A folder this call created is removed again if the body
    fails, so a failed first conversion leaves nothing behind.

    Raises:
      FolderBusyError: another process holds the lock.
    """
    key = os.path.realpath(output_dir)
    if key in _held:
        yield
        return
    created = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_NAME)
    # O_NOFOLLOW: a planted link must not make us truncate a file elsewhere.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise LmaError(
            f"cannot create the lock file {textsafe.clean(path)} "
            f"({e.strerror or type(e).__name__})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise FolderBusyError(
            f"{textsafe.clean(output_dir)} is being written by another "
            f"`lma-tf convert` (pid {textsafe.clean(holder)}); wait for it to "
            "finish, or choose another --output_dir"
        ) from None
    ok = False
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held.add(key)
        yield
        ok = True
    finally:
        _held.discard(key)
        os.ftruncate(fd, 0)
        if not ok and created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if not ok and created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only if nothing else is in it


class Run:
    """One conversion's files in `output_dir` (call under `lock`).

    `begin` clears what earlier runs of this tool left (recorded, never
    guessed); `tmp_path` names this run's temporary files; `finish` removes
    the previous records' shards that this run did not rewrite, writes the
    manifest and drops the marker.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.token = secrets.token_hex(8)
        self.previous: set[str] = set()  # shard names of earlier records

    def _path(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    def begin(self) -> None:
        """Records and removes earlier runs' leftovers and the old manifest."""
        os.makedirs(self.output_dir, exist_ok=True)
        old = _read_json(self._path(MARKER_NAME))
        tokens = [t for t in _strings(old.get("tokens")) if _TOKEN_RE.match(t)]
        self.previous = {n for n in _strings(old.get("shards")) if SHARD_RE.match(n)}
        manifest = _read_json(self._path(MANIFEST))
        for info in (manifest.get("splits") or {}).values():
            if isinstance(info, dict):
                shards = _strings(info.get("shards"))
                self.previous |= {n for n in shards if SHARD_RE.match(n)}
        # The marker first: a kill from here on still knows what is ours.
        self._write_marker([*tokens, self.token])
        _remove_regular(self._path(MANIFEST))
        for name in os.listdir(self.output_dir):
            for token in tokens:
                if _is_tmp_of(name, token):
                    _remove_regular(self._path(name))

    def tmp_path(self, name: str) -> str:
        """The temporary path of final file `name` in this run."""
        return self._path(f"{TMP_PREFIX}{self.token}-{name}")

    def finish(self, written: Iterable[str], manifest_text: str) -> None:
        """Removes stale shards, writes the manifest (last), drops the marker."""
        for name in sorted(self.previous - set(written)):
            _remove_regular(self._path(name))
        tmp = self.tmp_path(MANIFEST)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(manifest_text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(MANIFEST))
        _remove_regular(self._path(MARKER_NAME))

    def _write_marker(self, tokens: list[str]) -> None:
        atomic.write_json(
            self._path(MARKER_NAME),
            {"tokens": tokens, "shards": sorted(self.previous)},
            sort_keys=True,
        )


def _is_tmp_of(name: str, token: str) -> bool:
    prefix = f"{TMP_PREFIX}{token}-"
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    return rest == MANIFEST or bool(SHARD_RE.match(rest))


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _read_json(path: str) -> dict:
    """A small JSON object file, or {} if absent or unreadable."""
    try:
        if os.path.getsize(path) > 2**24:
            return {}
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _remove_regular(path: str) -> None:
    """Removes `path` if it is a file or a link (never a folder)."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)
