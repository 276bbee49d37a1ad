"""One run per output directory: an exclusive lock held for the whole run.

Two supervisors writing one directory duplicate records and corrupt the
summary, so ``gra run``, ``gra run --resume`` and ``gra review`` take
``OUT/.lock`` before they write anything there, and refuse to start while
another process holds it.

The lock is ``fcntl.flock`` on an open file, not the file's existence: the
kernel releases it when the holding process exits, however it dies (SIGKILL,
a power cut), so a stale lock of a dead process cannot exist by
construction; the file stays behind, and holds the pid and host of the last
holder only to name it in the refusal. (flock does not lock across NFS
clients on every system: put concurrent runs' outputs on a local disk.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gra.errors import OutputDirError, OutputDirInUse
from gra.rundir import LOCK


def usable_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` if needed; refuse one that is a file, under a file, or unwritable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"{out_dir}: cannot use as output directory: not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "not a directory" if exc.errno in (errno.ENOTDIR, errno.EEXIST) else exc.strerror
        raise OutputDirError(f"{out_dir}: cannot use as output directory: {why}") from None


@contextmanager
def lock_out_dir(out_dir: Path) -> Iterator[Path]:
    """Hold ``out_dir``'s exclusive lock for the body; yield the lock file's path."""
    usable_out_dir(out_dir)
    path = out_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputDirError(f"{out_dir}: cannot use as output directory: {exc.strerror}") from None
    try:
        _take(fd, out_dir)
        _name_holder(fd)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _take(fd: int, out_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        raise OutputDirInUse(
            f"{out_dir} is in use by another gra run ({holder}); "
            "wait for it to end or choose another --out"
        ) from None


def _name_holder(fd: int) -> None:
    """Write ``PID HOST`` for a refused process's message; best effort only."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same


def _read_holder(fd: int) -> str:
    try:
        fields = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        fields = []
    if not fields:
        return "pid unknown"
    return f"pid {fields[0]} on {fields[1]}" if len(fields) > 1 else f"pid {fields[0]}"
