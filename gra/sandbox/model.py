"""The limits a sandboxed program runs under and the result it comes back with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SandboxStatus = Literal["ok", "error", "timeout", "limit", "unavailable"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one run; the defaults suit a short checking program."""

    wall_s: float = 10.0  # wall-clock timeout; the whole process tree is killed
    cpu_s: int = 5  # RLIMIT_CPU, per process
    memory_mib: int = 512  # RLIMIT_AS, per process
    processes: int = 32  # RLIMIT_NPROC for the sandbox uid (threads count too)
    output_bytes: int = 64 * 1024  # stdout and stderr are each cut to this
    file_bytes: int = 1 << 20  # RLIMIT_FSIZE: the largest file it may write
    disk_bytes: int = 32 << 20  # room to write in its directory, and in its /tmp (memory-backed)


@dataclass(frozen=True)
class SandboxResult:
    """What a run did.

    status: ``ok`` exit 0; ``error`` non-zero exit or a fatal signal; ``timeout`` the wall
    clock ran out; ``limit`` a resource limit stopped it (CPU, memory, file size, output cut);
    ``unavailable`` the sandbox cannot run here and the program was not run.
    exit_code: the program's exit status, minus the signal number when a signal killed it,
    None when it timed out or never ran.
    """

    status: SandboxStatus
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    reason: str  # one readable line: "timed out after 10.0s", "CPU limit 5s", ...
    truncated: bool  # stdout or stderr was cut to output_bytes
