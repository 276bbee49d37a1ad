"""What every benchmark script shares: the machine and code a result measured,
result files, the table of checks, and starting and reaping peer processes.

The machines gra runs on are often shared and noisy, so every figure with a
target is a ratio against a baseline measured in the same run; absolute
numbers are recorded beside it. A result file says which machine, load and
commit it came from, so that two results can be compared or told apart.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import zmq

# The test doubles' entry point, started as a file (``spawn_double``).
DOUBLES = Path(__file__).resolve().with_name("doubles.py")


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two result files taken on different machines."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 0
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgspec": msgspec.__version__,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "source": source_state(),
    }


def source_state(root: Path | None = None) -> dict[str, Any]:
    """Which code a result measured: the git commit, whether the tree was clean, and
    if not, the paths that differed and a digest of the difference (tracked changes
    and untracked files), so that two results can be told apart or matched.

    ``commit`` is None outside a git checkout (an installed package).
    """
    root = root or Path(__file__).resolve().parents[1]

    def git(*args: str) -> bytes | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "clean": None, "dirty_paths": [], "diff_sha256": None}
    status = (git("status", "--porcelain", "--untracked-files=all") or b"").decode(errors="replace")
    dirty = sorted(line[3:] for line in status.splitlines() if line.strip())
    digest = hashlib.sha256(git("diff", "HEAD", "--binary") or b"")
    for line in status.splitlines():
        if line.startswith("??"):
            with contextlib.suppress(OSError):
                digest.update(line[3:].encode() + b"\0" + (root / line[3:]).read_bytes())
    return {
        "commit": commit.decode().strip(),
        "clean": not dirty,
        "dirty_paths": dirty[:200],
        "dirty_count": len(dirty),
        "diff_sha256": digest.hexdigest() if dirty else None,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def rss_bytes() -> int:
    """Resident set size of this process now (not the peak)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function  # type: ignore[no-any-return]


_MALLINFO2 = _mallinfo2() if sys.platform.startswith("linux") else None


def memory_parts() -> dict[str, int]:
    """Where this process's memory is, beyond its RSS: blocks Python's allocator
    holds (``sys.getallocatedblocks``) and, on glibc, bytes malloc has handed out
    (libzmq's buffers among them) and bytes it holds free. A leak of Python
    objects grows the first; native growth the second; fragmentation the third."""
    parts = {"rss": rss_bytes(), "py_blocks": sys.getallocatedblocks()}
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        parts["malloc_in_use"] = int(info.uordblks + info.hblkhd)
        parts["malloc_free"] = int(info.fordblks)
    return parts


def utc_stamp() -> str:
    """UTC time, sortable as text: result file names order by when they were taken."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_result(results_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """One JSON file per run, never overwritten: results accumulate as history."""
    results_dir.mkdir(parents=True, exist_ok=True)
    # The code measured: read when the run started (``machine_info``) and again now;
    # a tree that changed during the run is flagged, not hidden.
    data = dict(data)
    machine = data.get("machine")
    at_start = machine.get("source") if isinstance(machine, dict) else None
    now = source_state()
    data["source"] = at_start or now
    data["source_changed_during_run"] = at_start is not None and (
        (at_start["commit"], at_start.get("diff_sha256")) != (now["commit"], now["diff_sha256"])
    )
    path = results_dir / f"{name}-{utc_stamp()}.json"
    n = 1
    while path.exists():
        n += 1
        path = results_dir / f"{name}-{utc_stamp()}-{n}.json"
    path.write_text(json.dumps(_json_safe(data), indent=2, default=str) + "\n")
    return path


def _json_safe(value: Any) -> Any:
    """NaN and infinities (no measurement) become null: strict JSON readers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class Check:
    """One row of a result table: a measured value, its baseline, and the target."""

    metric: str
    value: str
    baseline: str
    ratio: float | None
    target: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("pass" if self.passed else "FAIL")


def format_table(checks: Sequence[Check], value_name: str, baseline_name: str) -> str:
    """The checks as aligned text columns: what a script prints and a result file keeps."""
    header = ("metric", value_name, baseline_name, "ratio", "target", "result")
    rows = [header] + [
        (
            c.metric,
            c.value,
            c.baseline,
            "-" if c.ratio is None else f"{c.ratio:.3f}",
            c.target,
            c.verdict,
        )
        for c in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def spawn_double(
    role: str, spec: dict[str, Any], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start one of ``doubles.py``'s peers (``echo-gra``, ``echo-raw``, ``sim-agents``)
    in its own process, so that the measured process does only the supervisor's half.

    The file is run by path: it needs gra, not this checkout on ``sys.path``.
    """
    spec = {**spec, "parent": os.getpid()}
    stderr = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(
            [sys.executable, str(DOUBLES), role, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        if stderr is not None:
            stderr.close()


def reap(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """Let peers exit by themselves for ``grace_s``, then SIGTERM (they report), then SIGKILL."""

    def wait_all(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))

    wait_all(grace_s)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    wait_all(5.0 if grace_s else 0.0)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


__all__ = [
    "DOUBLES",
    "Check",
    "format_table",
    "machine_info",
    "memory_parts",
    "reap",
    "rss_bytes",
    "source_state",
    "spawn_double",
    "utc_stamp",
    "write_result",
]
