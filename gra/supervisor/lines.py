"""Append-only JSON-lines files that hold whole lines or nothing (gra.rundir reads them).

Outputs and the journal must never keep half a record: a crash mid-write is
cut on the next open, and a failed write (disk full, file system gone
read-only) is rolled back before the error is raised, so the run can stop
cleanly and resume once the disk is fixed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gra.errors import CorruptRecordError, OutputError
from gra.rundir.jsonl import cut_torn_tail

__all__ = ["CorruptRecordError", "LineFile", "OutputError"]


class LineFile:
    """Unbuffered, so a failed write can be undone with one ftruncate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            cut_torn_tail(path)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._unsynced = False
        except OSError as exc:
            raise OutputError(f"{path}: cannot open for writing: {exc.strerror}") from exc

    def append(self, line: bytes, *, sync: bool = True) -> None:
        """Write one whole line; with ``sync=False`` it is made durable by a later ``sync()``."""
        data = memoryview(line + b"\n")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise OutputError(f"{self.path}: write failed: {exc.strerror}") from exc
        self._unsynced = not sync

    def sync(self) -> None:
        """Make every line written so far durable (one fsync, only if needed)."""
        if not self._unsynced:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise OutputError(f"{self.path}: sync failed: {exc.strerror}") from exc
        self._unsynced = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
