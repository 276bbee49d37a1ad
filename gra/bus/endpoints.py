"""Where sockets live: private ipc directories and endpoint parsing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

IPC_PREFIX = "ipc://"


def private_ipc_endpoint(name: str = "supervisor") -> str:
    """An ipc:// endpoint inside a fresh directory only this user can enter."""
    directory = Path(tempfile.mkdtemp(prefix="gra-"))
    directory.chmod(0o700)
    return f"{IPC_PREFIX}{directory / (name + '.sock')}"


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len(IPC_PREFIX) :]) if endpoint.startswith(IPC_PREFIX) else None


def prepare_bind(endpoint: str) -> None:
    """Make sure an ipc socket's directory exists and is private."""
    path = ipc_path(endpoint)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if path.exists():
        path.unlink()


def cleanup(endpoint: str) -> None:
    path = ipc_path(endpoint)
    if path is not None and path.exists():
        path.unlink(missing_ok=True)
        if path.parent.name.startswith("gra-"):
            with contextlib.suppress(OSError):
                path.parent.rmdir()
