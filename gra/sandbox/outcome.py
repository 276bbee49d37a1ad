"""Bounded output capture, and turning how a run ended into a SandboxResult."""

from __future__ import annotations

import re
import signal

from gra.sandbox.model import SandboxLimits, SandboxResult, SandboxStatus

CHUNK = 64 * 1024
_REASON_CHARS = 200
# A limit makes the program fail with a recognisable error rather than a signal (Python
# ignores SIGXFSZ, fork fails with EAGAIN at RLIMIT_NPROC). Any line counts: a fork bomb's
# children interleave their tracebacks.
_LIMIT_ERRORS = (
    ("memory limit {memory_mib} MiB", re.compile(r"^[\w.]*MemoryError\b.*|.*\[Errno 12\].*", re.M)),
    (
        "process limit {processes}",
        re.compile(r"^BlockingIOError: \[Errno 11\].*|.*can't start new thread.*", re.M),
    ),
    ("file size limit {file_bytes} bytes", re.compile(r".*\[Errno 27\] File too large.*", re.M)),
    ("disk limit {disk_bytes} bytes", re.compile(r".*\[Errno 28\] No space left.*", re.M)),
)


class Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest, which is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:_REASON_CHARS] if lines else ""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def unavailable(reason: str, wall_s: float = 0.0) -> SandboxResult:
    """The program did not run (or the sandbox around it broke), so says nothing about it."""
    return SandboxResult("unavailable", None, "", "", wall_s, reason, False)


def classify(
    *,
    limits: SandboxLimits,
    started: bool,
    timed_out: bool,
    returncode: int | None,
    stdout: Capture,
    stderr: Capture,
    wall_s: float,
) -> SandboxResult:
    """Name how the run ended.

    ``returncode`` is bubblewrap's, which passes the program's exit code on and reports a
    program killed by signal N as 128 + N (so a program that exits with such a code reads as
    killed by that signal).
    """
    out, err = stdout.text(), stderr.text()
    truncated = stdout.truncated or stderr.truncated

    def result(status: SandboxStatus, exit_code: int | None, reason: str) -> SandboxResult:
        return SandboxResult(status, exit_code, out, err, wall_s, reason, truncated)

    if timed_out:
        return result("timeout", None, f"timed out after {limits.wall_s:g}s")
    if not started or returncode is None:
        detail = _last_line(err) or f"exit code {returncode}"
        return unavailable(f"the sandbox failed to start: {detail}", wall_s)
    code = returncode
    signum = -code if code < 0 else code - 128 if 128 < code < 128 + signal.NSIG else 0
    if signum:
        exit_code = -signum
        if signum == signal.SIGXCPU:
            return result("limit", exit_code, f"CPU limit {limits.cpu_s}s")
        if signum == signal.SIGXFSZ:
            return result("limit", exit_code, f"file size limit {limits.file_bytes} bytes")
        if signum == signal.SIGKILL:
            why = f"killed by SIGKILL (CPU limit {limits.cpu_s}s or out of memory)"
            return result("limit", exit_code, why)
        return result("error", exit_code, f"killed by {_signal_name(signum)}")
    last = _last_line(err)
    if code != 0:
        for template, pattern in _LIMIT_ERRORS:
            found = pattern.search(err)
            if found:
                detail = found.group(0).strip()[:_REASON_CHARS]
                return result("limit", code, f"{template.format(**vars(limits))}: {detail}")
        return result("error", code, f"exit code {code}" + (f": {last}" if last else ""))
    if truncated:
        cut = " and ".join(
            name for name, capture in (("stdout", stdout), ("stderr", stderr)) if capture.truncated
        )
        return result("limit", 0, f"output limit {limits.output_bytes} bytes: {cut} cut")
    return result("ok", 0, "exit code 0")
