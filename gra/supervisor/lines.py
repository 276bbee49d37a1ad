"""Append-only JSON-lines files that hold whole lines or nothing.

Outputs and the journal must never keep half a record: a crash mid-write is
cut on the next open, and a failed write (disk full, file system gone
read-only) is rolled back before the error is raised, so the run can stop
cleanly and resume once the disk is fixed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from gra.errors import CorruptRecordError, OutputError

T = TypeVar("T")


def _decode_lines(path: Path, decoder: msgspec.json.Decoder[T]) -> Iterator[T]:
    """Every non-blank line of ``path`` decoded, naming the first bad one."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise CorruptRecordError(path, number, str(exc)) from None


def cut_torn_tail(path: Path) -> None:
    """Drop a last line that lacks its newline (a write cut short)."""
    if not path.exists():
        return
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        # Walk back to the last newline; records are small, so read the tail.
        block = min(size, 1 << 20)
        while True:
            handle.seek(size - block)
            tail = handle.read(block)
            end = tail.rfind(b"\n")
            if end >= 0 or block == size:
                keep = size - block + end + 1 if end >= 0 else 0
                break
            block = min(size, block * 2)
        if keep != size:
            handle.truncate(keep)


def iter_records(path: Path, record_type: type[T]) -> Iterator[T]:
    """Every whole line of ``path`` decoded as ``record_type``, one at a time (a torn
    tail is cut): outputs grow to gigabytes over long runs."""
    if not path.exists():
        return
    cut_torn_tail(path)
    yield from _decode_lines(path, msgspec.json.Decoder(record_type))


class _Id(msgspec.Struct):
    id: str


_id_decoder = msgspec.json.Decoder(_Id)


def read_ids(path: Path) -> set[str]:
    """The ``id`` of every record in ``path``, decoding nothing else."""
    if not path.exists():
        return set()
    cut_torn_tail(path)
    return {record.id for record in _decode_lines(path, _id_decoder)}


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
