"""A local append-only journal of rows on their way to the database.

A process that answers before it writes (the gateway records its ledger rows on a thread
of its own) appends each row here first: one `write` to a file of its own, so a row whose
answer was sent survives the process being killed before the database took it. Once every
row appended so far is in the database the file is emptied. A process that starts replays
the journals of dead processes (a live one holds an exclusive lock on its file); the rows'
natural keys (a call's request id) make a replay insert each row once, however often it
runs.

The file is not fsync'd per row: it survives the process dying (SIGKILL, OOM), not the
machine losing power before the database committed the row (`sync` is called while the
database is refusing writes, so a long outage's rows are on disk).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("tars_opt.store")

SUFFIX = ".jsonl"


class Journal:
    """This process's journal file in `folder`, locked for as long as it is open."""

    def __init__(self, folder: Path, *, prefix: str = "journal") -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = folder / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self._next = 0
        self._open: set[int] = set()  # appended, not yet confirmed
        self.appended = 0

    def append(self, entry: dict[str, Any]) -> int:
        """Write `entry` as one line (in the OS's hands on return); its number, to `confirm`
        once the database has it."""
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            self._next += 1
            self._open.add(self._next)
            self.appended += 1
            return self._next

    def confirm(self, number: int) -> None:
        """Entry `number` is in the database (confirming twice is harmless); the file is
        emptied when no entry is left open."""
        with self._lock:
            self._open.discard(number)
            if not self._open and self._fd >= 0:
                os.ftruncate(self._fd, 0)

    @property
    def waiting(self) -> int:
        """Entries appended and not confirmed yet."""
        with self._lock:
            return len(self._open)

    def sync(self) -> None:
        """Put what is appended on disk (cheap to call again when nothing changed)."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        """Release the file: removed when every entry was confirmed, else kept (synced)
        for the next process to replay."""
        with self._lock:
            if self._fd < 0:
                return
            if self._open:
                os.fsync(self._fd)
                log.warning(
                    "rows kept in the journal for the next start to write",
                    extra={"journal": str(self.path), "rows": len(self._open)},
                )
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            os.close(self._fd)
            self._fd = -1


def _entries(path: Path, fd: int) -> Iterator[dict[str, Any]]:
    with os.fdopen(os.dup(fd), "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                # Only a process killed mid-write leaves a broken line, and only its last.
                log.warning("journal line unreadable, skipped", extra={"journal": str(path),
                                                                       "line": n})  # fmt: skip
                continue
            if isinstance(entry, dict):
                yield entry


def replay(folder: Path, write: Callable[[dict[str, Any]], None]) -> int:
    """Hand every entry of the journals dead processes left in `folder` to `write`, then
    remove them; a journal whose process is alive (locked) is left alone. Returns the
    number of entries written. When `write` raises, the journal being replayed is kept
    whole for the next try (`write` must be idempotent)."""
    if not folder.is_dir():
        return 0
    written = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # another process replayed it first
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive (or replaying it)
            if not path.exists():  # replayed and removed while we waited for the lock
                continue
            count = 0
            for entry in _entries(path, fd):
                write(entry)
                count += 1
            path.unlink()
            written += count
            if count:
                log.info("journal replayed", extra={"journal": str(path), "rows": count})
        finally:
            os.close(fd)
    return written
