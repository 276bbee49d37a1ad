"""Benchmarks of gra's bus and scheduler, as ratios measured in one run.

The machines gra runs on (and is tested on) are often shared and noisy, so
every figure with a target is a ratio against a baseline measured in the
same run: raw pyzmq for the bus, the bound implied by service times and
capacities for the scheduler. Absolute numbers are printed and recorded, but
only ratios are judged.

``run_quick_benchmarks()`` runs small versions of both (well under a minute
in all) and is what ``gra bench`` calls. ``benchmarks/bench_bus.py`` and
``benchmarks/bench_scheduler.py`` run the same code with larger sizes.

The peers run in separate processes, started as ``python -m gra.bench ROLE
JSON`` (``echo-gra``, ``echo-raw``, ``sim-agents``), so that the measured
process does only the supervisor's half of the work.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import hashlib
import itertools
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import zmq
import zmq.asyncio

from gra.bus.dealer import Dealer
from gra.bus.endpoints import cleanup, private_ipc_endpoint
from gra.bus.router import Router
from gra.protocols.messages import (
    Cancel,
    Heartbeat,
    Hello,
    Result,
    Shutdown,
    Task,
    TaskError,
    Usage,
    Welcome,
)
from gra.protocols.roles import (
    AdjudicationOutput,
    Annotation,
    Checks,
    Example,
    GenerateRequest,
    GeneratorOutput,
    RefinedResponse,
    ReviewOutput,
    Scores,
)

if TYPE_CHECKING:
    from gra.supervisor.conductor import Conductor

_msgpack = msgspec.msgpack.Encoder()

# ---- shared machinery --------------------------------------------------------


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


def _die_with_parent() -> None:
    """Peers must never outlive the benchmark, even when it is SIGKILLed."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _spawn(role: str, spec: dict[str, Any], log: Path | None = None) -> subprocess.Popen[bytes]:
    spec = {**spec, "parent": os.getpid()}
    stderr = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "gra.bench", role, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        if stderr is not None:
            stderr.close()


def _reap(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
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


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# ---- bus: payloads -----------------------------------------------------------


def task_body(size: int) -> bytes:
    """A generate request (the biggest task gra sends) padded to ``size`` bytes of msgpack."""
    empty = GenerateRequest("coding", (Example("", ""),))
    pad = max(0, size - len(_msgpack.encode(empty)) - 4)
    half = pad // 2
    request = GenerateRequest("coding", (Example("i" * half, "r" * (pad - half)),))
    return _msgpack.encode(request)


def result_body(size: int) -> bytes:
    """A generator output padded to ``size`` bytes of msgpack: a typical reply."""
    empty = GeneratorOutput(("a", "b", "c"), "x", "y")
    pad = max(2, size - len(_msgpack.encode(empty)) - 4)
    half = pad // 2
    output = GeneratorOutput(("a", "b", "c"), "i" * half, "r" * (pad - half))
    return _msgpack.encode(output)


# ---- bus: the echo peers (child processes) -----------------------------------


async def _echo_gra(spec: dict[str, Any]) -> None:
    """An agent that answers every Task with a Result, through gra's own Dealer."""
    context = zmq.asyncio.Context()
    dealer = Dealer(context, spec["endpoint"], "gra-echo")
    body = msgspec.Raw(result_body(spec["payload_bytes"]))
    usage = Usage(10, 10, 0.0, 1)
    parent = spec["parent"]
    hello = Hello("gra-echo", "echo", ("generator",), 4096, "echo", os.getpid(), "localhost")
    dealer.send_now(hello)

    async def orphan_watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        os._exit(1)

    watch = asyncio.create_task(orphan_watch())
    try:
        while True:
            # The agent runtime's fast path: drain what is queued, reply without awaiting.
            for frame in await dealer.recv_batch():
                if type(frame) is Task:
                    # A refused reply (full pipe) shows up as lost on the driver's side.
                    dealer.send_now(Result(frame.task_id, body, usage))
                elif type(frame) is Shutdown:
                    return
    finally:
        watch.cancel()
        dealer.close()
        context.term()


def _echo_raw(spec: dict[str, Any]) -> None:
    """The baseline: a plain pyzmq DEALER echoing every message back, default options."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"raw-echo")
    sock.setsockopt(zmq.RCVTIMEO, 1000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(spec["endpoint"])
    sock.send(b"hello")
    parent = spec["parent"]
    try:
        while True:
            try:
                message = sock.recv(copy=False)
            except zmq.Again:
                if os.getppid() != parent:
                    return
                continue
            if len(message) == 4 and message.bytes == b"stop":
                return
            sock.send(message, copy=False)
    finally:
        sock.close()
        context.term()


# ---- bus: the drivers (this process, the supervisor's side) ------------------


@dataclass
class Drive:
    """One closed-loop run: ``in_flight`` messages outstanding until ``total`` were sent."""

    side: str
    in_flight: int
    sent: int = 0
    received: int = 0
    # Sends the socket refused outright (gra: ``send`` returned False): known, not lost.
    refused: int = 0
    seconds: float = 0.0
    stalled: bool = False
    rtts_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def rtt_ms(self, q: float) -> float:
        return _percentile(sorted(self.rtts_ns), q) / 1e6

    @property
    def mean_rtt_ms(self) -> float:
        return statistics.fmean(self.rtts_ns) / 1e6 if self.rtts_ns else math.nan

    @property
    def little_ratio(self) -> float:
        """Mean round trip over Little's law's prediction (in flight / rate)."""
        return self.mean_rtt_ms / (1e3 * self.in_flight / self.rate) if self.rate else math.nan

    def summary(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "in_flight": self.in_flight,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "refused": self.refused,
            "stalled": self.stalled,
            "seconds": round(self.seconds, 4),
            "msgs_per_s": round(self.rate, 1),
            "rtt_ms": {
                "p50": round(self.rtt_ms(50), 4),
                "p99": round(self.rtt_ms(99), 4),
                "mean": round(self.mean_rtt_ms, 4),
                "max": round(max(self.rtts_ns, default=0) / 1e6, 4),
            },
            "little_ratio": round(self.little_ratio, 4),
        }


_drive_ids = itertools.count(1)


async def _drive_gra(
    router: Router, peer: bytes, body: bytes, in_flight: int, total: int, stall_s: float
) -> Drive:
    """Keep ``in_flight`` Tasks outstanding through gra's Router; time each round trip.

    Uses the supervisor's fast path: ``recv_batch`` to drain what has arrived,
    and ``send_now`` (a non-blocking send that is never awaited) to refill.
    """
    drive = Drive("gra", in_flight)
    # Task ids are unique across drives: a late reply to an earlier drive is ignored.
    prefix = f"d{next(_drive_ids)}-"
    raw_body = msgspec.Raw(body)
    sent_at: dict[str, int] = {}
    clock = time.perf_counter_ns
    started = clock()
    last_progress = started

    def send_next() -> None:
        task = Task(
            f"{prefix}{drive.sent + drive.refused}",
            "bench-000001",
            "generator",
            1,
            600.0,
            raw_body,
        )
        at = clock()
        if router.send_now(peer, task):
            sent_at[task.task_id] = at
            drive.sent += 1
        else:
            drive.refused += 1

    async def run() -> None:
        nonlocal last_progress
        while drive.sent + drive.refused < min(in_flight, total):
            send_next()
        while drive.received < drive.sent:
            for _, frame in await router.recv_batch():
                if type(frame) is not Result:
                    continue
                at = sent_at.pop(frame.task_id, None)
                if at is None:
                    continue
                last_progress = clock()
                drive.rtts_ns.append(last_progress - at)
                drive.received += 1
                if drive.sent + drive.refused < total:
                    send_next()

    runner = asyncio.create_task(run())
    while not runner.done():
        await asyncio.wait({runner}, timeout=0.25)
        if not runner.done() and clock() - last_progress > stall_s * 1e9:
            drive.stalled = True
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
    if not drive.stalled:
        runner.result()
    drive.seconds = (last_progress - started) / 1e9
    return drive


def _drive_raw(
    sock: zmq.Socket[bytes], peer: bytes, size: int, in_flight: int, total: int, stall_s: float
) -> Drive:
    """The same closed loop over a plain pyzmq ROUTER with default options."""
    drive = Drive("raw", in_flight)
    # 4 bytes of drive id, 8 of sequence number: a late reply to an earlier drive is ignored.
    tag = next(_drive_ids).to_bytes(4, "little")
    filler = b"x" * max(0, size - 12)
    sent_at = [0] * total
    clock = time.perf_counter_ns
    sock.setsockopt(zmq.RCVTIMEO, int(stall_s * 1000))
    started = last_progress = clock()
    while drive.sent < min(in_flight, total):
        sent_at[drive.sent] = clock()
        # A ROUTER without ROUTER_MANDATORY drops silently when the pipe is full.
        sock.send_multipart([peer, tag + drive.sent.to_bytes(8, "little") + filler])
        drive.sent += 1
    while drive.received < drive.sent:
        try:
            _, data = sock.recv_multipart()
        except zmq.Again:
            drive.stalled = True
            break
        if data[:4] != tag:
            continue
        last_progress = clock()
        drive.rtts_ns.append(last_progress - sent_at[int.from_bytes(data[4:12], "little")])
        drive.received += 1
        if drive.sent < total:
            sent_at[drive.sent] = clock()
            sock.send_multipart([peer, tag + drive.sent.to_bytes(8, "little") + filler])
            drive.sent += 1
    drive.seconds = (last_progress - started) / 1e9
    return drive


@dataclass(frozen=True)
class BusSettings:
    payload_bytes: int = 1024
    throughput_in_flight: int = 100
    throughput_messages: int = 20_000
    latency_messages: int = 3_000
    deep_in_flight: int = 1_000
    deep_messages: int = 20_000
    # Each measurement alternates raw and gra this many times; medians are judged.
    trials: int = 2
    warmup_messages: int = 2_000
    stall_s: float = 3.0


QUICK_BUS = BusSettings(
    throughput_messages=10_000, latency_messages=2_000, deep_messages=10_000, stall_s=1.0
)
FULL_BUS = BusSettings(
    throughput_messages=100_000, latency_messages=10_000, deep_messages=50_000, trials=5
)


async def _bus_benchmark(settings: BusSettings) -> dict[str, Any]:
    gra_endpoint = private_ipc_endpoint("bench-gra")
    raw_endpoint = private_ipc_endpoint("bench-raw")
    context = zmq.asyncio.Context()
    router = Router(context, gra_endpoint)
    raw_context = zmq.Context()
    raw = raw_context.socket(zmq.ROUTER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(raw_endpoint)
    spec = {"payload_bytes": settings.payload_bytes}
    peers = [
        _spawn("echo-gra", {**spec, "endpoint": gra_endpoint}),
        _spawn("echo-raw", {**spec, "endpoint": raw_endpoint}),
    ]
    try:
        identity, hello = await asyncio.wait_for(router.recv(), 30)
        if not isinstance(hello, Hello):
            raise RuntimeError(f"echo peer sent {type(hello).__name__} first")
        await router.send(identity, Welcome(1.0, 5))
        raw.setsockopt(zmq.RCVTIMEO, 30_000)
        raw_peer, _ = raw.recv_multipart()
        body = task_body(settings.payload_bytes)
        probe = Task("t0", "bench-000001", "generator", 1, 600.0, msgspec.Raw(body))
        frame_bytes = len(_msgpack.encode(probe))

        async def gra(in_flight: int, total: int) -> Drive:
            return await _drive_gra(router, identity, body, in_flight, total, settings.stall_s)

        def raw_drive(in_flight: int, total: int) -> Drive:
            return _drive_raw(raw, raw_peer, frame_bytes, in_flight, total, settings.stall_s)

        await gra(settings.throughput_in_flight, settings.warmup_messages)
        raw_drive(settings.throughput_in_flight, settings.warmup_messages)
        runs: dict[str, dict[str, list[Drive]]] = {}
        plan = {
            "throughput": (settings.throughput_in_flight, settings.throughput_messages),
            "latency": (1, settings.latency_messages),
            "deep": (settings.deep_in_flight, settings.deep_messages),
        }
        for name, (in_flight, total) in plan.items():
            runs[name] = {"gra": [], "raw": []}
            for trial in range(settings.trials):
                # Alternate who goes first so slow drifts in machine load hit both alike.
                order = ("raw", "gra") if trial % 2 == 0 else ("gra", "raw")
                for side in order:
                    if side == "gra":
                        drive = await gra(in_flight, total)
                    else:
                        drive = raw_drive(in_flight, total)
                    runs[name][side].append(drive)
                    if drive.stalled:
                        # Lost messages never come back: drain what is late before going on.
                        await asyncio.sleep(0.5)
                        _drain_raw(raw)
        await router.send(identity, Shutdown(drain=False, reason="benchmark done"))
        raw.send_multipart([raw_peer, b"stop"])
        _reap(peers)
    finally:
        _reap(peers, 0.0)
        router.close()
        raw.close()
        context.term()
        raw_context.term()
        cleanup(raw_endpoint)
    return _bus_report(settings, frame_bytes, runs)


def _drain_raw(sock: zmq.Socket[bytes]) -> None:
    with contextlib.suppress(zmq.Again):
        while True:
            sock.recv_multipart(flags=zmq.NOBLOCK)


def _median(drives: list[Drive], value: Callable[[Drive], float]) -> float:
    return statistics.median(value(d) for d in drives)


def _bus_report(
    settings: BusSettings, frame_bytes: int, runs: dict[str, dict[str, list[Drive]]]
) -> dict[str, Any]:
    def rate(d: Drive) -> float:
        return d.rate

    def p50(d: Drive) -> float:
        return d.rtt_ms(50)

    def p99(d: Drive) -> float:
        return d.rtt_ms(99)

    def little(d: Drive) -> float:
        return d.little_ratio

    tp, lat, deep = runs["throughput"], runs["latency"], runs["deep"]
    checks: list[Check] = []
    g, r = _median(tp["gra"], rate), _median(tp["raw"], rate)
    checks.append(
        Check(
            f"msgs/s, {settings.throughput_in_flight} in flight",
            f"{g:,.0f}",
            f"{r:,.0f}",
            g / r,
            ">= 0.5",
            g / r >= 0.5,
        )
    )
    g, r = _median(lat["gra"], p50), _median(lat["raw"], p50)
    checks.append(Check("p50 rtt ms, 1 in flight", f"{g:.3f}", f"{r:.3f}", g / r, "-", None))
    g, r = _median(lat["gra"], p99), _median(lat["raw"], p99)
    checks.append(
        Check("p99 rtt ms, 1 in flight", f"{g:.3f}", f"{r:.3f}", g / r, "<= 2.0", g / r <= 2.0)
    )
    d = settings.deep_in_flight
    g, r = _median(deep["gra"], rate), _median(deep["raw"], rate)
    checks.append(Check(f"msgs/s, {d} in flight", f"{g:,.0f}", f"{r:,.0f}", g / r, "-", None))
    gs, gr = sum(x.sent for x in deep["gra"]), sum(x.received for x in deep["gra"])
    rs, rr = sum(x.sent for x in deep["raw"]), sum(x.received for x in deep["raw"])
    refused = sum(x.refused for x in deep["gra"])
    checks.append(
        Check(
            f"lost of sent, {d} in flight",
            f"{gs - gr}/{gs}" + (f" (+{refused} refused)" if refused else ""),
            f"{rs - rr}/{rs}",
            None,
            "gra: 0",
            gs == gr and refused == 0,
        )
    )
    g, r = _median(deep["gra"], little), _median(deep["raw"], little)
    checks.append(
        Check(
            f"mean rtt / Little's law, {d} in flight",
            f"{g:.3f}",
            f"{r:.3f}",
            None,
            "gra <= 1.2",
            g <= 1.2,
        )
    )
    return {
        "benchmark": "bus",
        "settings": asdict(settings),
        "frame_bytes": frame_bytes,
        "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
        "table": format_table(checks, "gra", "raw"),
        "passed": all(c.passed for c in checks if c.passed is not None),
        "runs": {
            name: {side: [x.summary() for x in drives] for side, drives in sides.items()}
            for name, sides in runs.items()
        },
    }


def run_bus_benchmark(settings: BusSettings = QUICK_BUS) -> dict[str, Any]:
    """gra's Router/Dealer against raw pyzmq DEALER/ROUTER, both echoing over ipc://."""
    started = time.monotonic()
    info = machine_info()
    report = asyncio.run(_bus_benchmark(settings))
    info["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"machine": info, "utc": utc_stamp(), **report, "wall_s": time.monotonic() - started}


# ---- scheduler: simulated agents (child processes) ---------------------------

_SCORES = Scores(9, 9, 9, 9, 9, 9)
SIM_ROLES = ("generator", "reviewer", "adjudicator", "annotator")


def sim_bodies(item_bytes: int = 600) -> dict[str, msgspec.Raw]:
    """A valid, msgpack-encoded output for each role; every review scores 9 (no adjudication)."""
    half = max(1, item_bytes // 2)
    return {
        "generator": msgspec.Raw(
            _msgpack.encode(
                GeneratorOutput(("sums", "functions", "python"), "i" * half, "r" * half)
            )
        ),
        "reviewer": msgspec.Raw(
            _msgpack.encode(ReviewOutput(Checks(True, True, True), _SCORES, "clear", "none"))
        ),
        "adjudicator": msgspec.Raw(_msgpack.encode(AdjudicationOutput(_SCORES, "fine"))),
        "refiner": msgspec.Raw(_msgpack.encode(RefinedResponse("r" * half))),
        "annotator": msgspec.Raw(
            _msgpack.encode(Annotation("coding", ("sums", "functions", "python"), "Adds numbers."))
        ),
    }


class _SimAgent:
    """One agent on the real wire protocol; its 'model' takes a fixed service time.

    A task is a timer, not a coroutine: the simulated fleet should add as little
    latency of its own as it can, since the benchmark charges it all to the
    supervisor.
    """

    def __init__(
        self, context: zmq.asyncio.Context, endpoint: str, agent_id: str, model: str
    ) -> None:
        self.agent_id = agent_id
        self.model = model
        self.dealer = Dealer(context, endpoint, agent_id)
        self.running: dict[str, asyncio.TimerHandle] = {}
        self.served = 0
        self.refused = 0

    async def run(self, capacity: int, service_s: float, bodies: dict[str, msgspec.Raw]) -> None:
        hello = Hello(
            self.agent_id,
            self.model,
            SIM_ROLES,
            capacity,
            "sim",
            os.getpid(),
            socket.gethostname(),
        )
        await self.dealer.send(hello)
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await self.dealer.recv()
                kind = type(frame)
                if kind is Task:
                    self.running[frame.task_id] = loop.call_later(
                        service_s, self._reply, frame, service_s, bodies
                    )
                elif kind is Cancel:
                    if (running := self.running.pop(frame.task_id, None)) is not None:
                        running.cancel()
                elif kind is Shutdown:
                    return
        finally:
            for running in self.running.values():
                running.cancel()

    def _reply(self, task: Task, service_s: float, bodies: dict[str, msgspec.Raw]) -> None:
        self.running.pop(task.task_id, None)
        body = bodies.get(task.role)
        reply: Result | TaskError = (
            Result(task.task_id, body, Usage(10, 10, service_s, 1))
            if body is not None
            else TaskError(task.task_id, f"sim agent does not serve {task.role!r}")
        )
        if self.dealer.send_now(reply):
            self.served += 1
        else:
            self.refused += 1


async def _sim_host(spec: dict[str, Any]) -> None:
    """Many simulated agents in one process: cheap enough to run a thousand on two cores."""
    agents_spec: list[list[str]] = spec["agents"]
    context = zmq.asyncio.Context()
    context.set(zmq.MAX_SOCKETS, len(agents_spec) + 64)
    agents = [_SimAgent(context, spec["endpoint"], a, m) for a, m in agents_spec]
    bodies = sim_bodies(spec["item_bytes"])
    parent = spec["parent"]

    async def heartbeats() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(spec["heartbeat_s"])
            now = time.time()
            for agent in agents:
                await agent.dealer.send(Heartbeat(now, len(agent.running)))

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stopped = asyncio.create_task(stop.wait())
    beat = asyncio.create_task(heartbeats())
    serving = asyncio.gather(*(a.run(spec["capacity"], spec["service_s"], bodies) for a in agents))
    try:
        await asyncio.wait({beat, serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        beat.cancel()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        report = spec.get("report")
        if report:
            Path(report).write_text(
                json.dumps(
                    {
                        "served": sum(a.served for a in agents),
                        "refused": sum(a.refused for a in agents),
                        "cpu_s": time.process_time(),
                    }
                )
            )
        for agent in agents:
            agent.dealer.close()
        context.term()


# ---- scheduler: the measured supervisor --------------------------------------


class NullLauncher:
    """Every agent is remote here: nothing to start, watch or stop."""

    def start(self, spec: Any, endpoint: str) -> None:
        pass

    def exited(self) -> dict[str, int]:
        return {}

    def kill(self, agent_id: str) -> None:
        pass

    def stop(self, grace_s: float) -> None:
        pass


@dataclass(frozen=True)
class SchedulerSettings:
    name: str = "main"
    instances: int = 3_000
    models: int = 4
    agents_per_model: int = 8
    capacity: int = 4
    service_s: float = 0.1
    reviewers: int = 3
    # gra's default: every accepted item is annotated (keywords, summary) by a random model.
    enrich: bool = True
    # Instances in progress, as a multiple of what the capacity can keep busy
    # with no queueing (stages x capacity / tasks per instance); above 1 keeps a backlog.
    in_flight_factor: float = 2.0
    max_in_flight: int | None = None
    # Processes hosting the simulated agents (default: one per 500 agents).
    processes: int | None = None
    # Sample the supervisor's RSS every this many finished instances.
    rss_every: int | None = None
    heartbeat_s: float = 1.0
    item_bytes: int = 600
    # Diagnose memory growth between 10% and 90% of the instances: a census of
    # the supervisor's objects by type and of the conductor's containers by length,
    # taken at both points (a pause of a fraction of a second each); with
    # ``trace_frames`` > 0, also tracemalloc from the first point (slows the
    # supervisor, enough to lose agents of a large fleet on a busy machine).
    trace_memory: bool = False
    trace_frames: int = 0
    # Stop the run (as if the target were reached) after this long; rates stay valid.
    # Checked whenever the conductor journals or waits, so an overloaded one overshoots.
    time_limit_s: float | None = None

    @property
    def agents(self) -> int:
        return self.models * self.agents_per_model

    @property
    def host_processes(self) -> int:
        return self.processes or max(1, math.ceil(self.agents / 500))

    @property
    def rss_interval(self) -> int:
        return self.rss_every or max(1, self.instances // 50)

    @property
    def committee(self) -> int:
        return max(1, min(self.reviewers, self.models - 1))

    @property
    def tasks_per_instance(self) -> int:
        return 1 + self.committee + int(self.enrich)

    @property
    def stages(self) -> int:
        """Service times one instance takes at least: generate, review, (annotate)."""
        return 2 + int(self.enrich)

    @property
    def total_capacity(self) -> int:
        return self.agents * self.capacity

    @property
    def in_flight(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(
            1,
            math.ceil(
                self.in_flight_factor * self.stages * self.total_capacity / self.tasks_per_instance
            ),
        )

    def bounds(self) -> dict[str, float]:
        """Items/s no scheduler can beat: capacity-bound, and bound by instances in flight.

        Every instance is one generate, then ``committee`` parallel reviews, then
        (with ``enrich``) one annotation, each taking ``service_s``; every review
        scores 9, so nothing is adjudicated or rejected. All models serve all
        roles with equal capacity, so uniform draws spread the load evenly and the
        whole capacity is usable.
        """
        capacity = self.total_capacity / (self.service_s * self.tasks_per_instance)
        in_flight = self.in_flight / (self.stages * self.service_s)
        return {"capacity": capacity, "in_flight": in_flight, "bound": min(capacity, in_flight)}


QUICK_SCHEDULER = (
    SchedulerSettings(instances=3_000, time_limit_s=30),
    SchedulerSettings(
        name="many_agents",
        # Long enough for many instance lifetimes: instances finish in waves at
        # first, and a short window over them over- or under-states the rate.
        instances=2_000,
        agents_per_model=50,
        capacity=1,
        service_s=0.5,
        time_limit_s=20,
    ),
)
FULL_SCHEDULER = (
    SchedulerSettings(instances=100_000, time_limit_s=1_800),
    SchedulerSettings(
        name="many_agents",
        # 150 s: the drain after the last generation (2 service times, when agents
        # run out of work) is ~1% of the whole run, and libzmq's per-peer chunks
        # are mostly allocated by 10% in.
        instances=30_000,
        agents_per_model=250,
        capacity=1,
        service_s=1.0,
        time_limit_s=400,
    ),
)

_SEED_DOMAINS = ("coding", "math", "writing", "science")


def _write_job(settings: SchedulerSettings, directory: Path) -> Path:
    seeds = directory / "seeds.jsonl"
    with seeds.open("w") as handle:
        for i in range(16):
            row = {
                "id": f"seed-{i:02d}",
                "domain": _SEED_DOMAINS[i % len(_SEED_DOMAINS)],
                "instruction": f"Write a function that returns the {i}-th square number.",
                "response": f"def square_{i}(n):\n    return n * n",
                # Annotated already, so the run goes straight to generation.
                "keywords": ["squares", "functions", f"n{i}"],
                "summary": "Square a number.",
            }
            handle.write(json.dumps(row) + "\n")
    lines = [
        "[run]",
        f"target = {settings.instances}",
        f"max_instances = {settings.instances}",
        f"max_in_flight = {settings.in_flight}",
        "seed = 0",
        "[seeds]",
        'path = "seeds.jsonl"',
        "[protocol]",
        f"reviewers = {settings.reviewers}",
        "[limits]",
        "startup_timeout_s = 120",
        "[bus]",
        f"heartbeat_interval_s = {settings.heartbeat_s}",
        "heartbeat_misses = 5",
        "[dedup]",
        "enabled = false",
        "[annotate]",
        f"enrich = {'true' if settings.enrich else 'false'}",
    ]
    for m in range(settings.models):
        lines += ["[[agents]]", f'model = "sim-{m}"', "remote = true"]
        lines += [f"replicas = {settings.agents_per_model}"]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class SchedulerObserver:
    """Times instance starts and finishes exactly, as the conductor journals them.

    It wraps the journal's ``append`` on this one object (gra is not changed)
    and keeps O(1) state per event, plus one RSS sample every ``every``
    finished instances: anything that grew per instance would itself show up
    in the supervisor's RSS.
    """

    def __init__(
        self,
        conductor: Conductor,
        t0: float,
        every: int,
        limit_s: float | None = None,
        snapshot_at: Sequence[int] = (),
        trace_frames: int = 0,
    ) -> None:
        from gra.supervisor.journal import InstanceFinished, InstanceStarted

        self._started_type, self._finished_type = InstanceStarted, InstanceFinished
        self._append = conductor.journal.append
        conductor.journal.append = self.append  # type: ignore[method-assign]
        self.t0 = t0
        self.every = every
        # The time limit is checked here too: the watcher task starves while the
        # conductor's main loop has a backlog, but every result it handles is journaled.
        self._deadline = t0 + limit_s if limit_s else math.inf
        self._stop = conductor.request_stop
        self.time_limit_hit = False
        self.first_start: float | None = None
        self.last_finish: float | None = None
        self.finished = 0
        self.curve: list[dict[str, float]] = [{"finished": 0, "t": 0.0, **memory_parts()}]
        # Memory censuses taken when these many instances have finished.
        self._conductor = conductor
        self._snapshot_at = set(snapshot_at)
        self._trace_frames = trace_frames
        self.snapshots: list[dict[str, Any]] = []

    def append(self, entry: Any, *, sync: bool = False) -> None:
        self._append(entry, sync=sync)
        if not self.time_limit_hit and time.monotonic() > self._deadline:
            self.time_limit_hit = True
            self._stop()
        kind = type(entry)
        if kind is self._finished_type:
            self.finished += 1
            self.last_finish = now = time.monotonic() - self.t0
            if self.finished % self.every == 0:
                self.curve.append({"finished": self.finished, "t": now, **memory_parts()})
            if self.finished in self._snapshot_at:
                self.snapshots.append(
                    memory_census(self._conductor, self.finished, self._trace_frames)
                )
        elif kind is self._started_type and self.first_start is None:
            self.first_start = time.monotonic() - self.t0

    def steady_rate(self) -> float:
        """Instances/s between 10% and 90% of those finished: no ramp-up, no tail."""
        n = self.finished
        lo = next((c for c in self.curve if c["finished"] >= 0.1 * n), None)
        hi = next((c for c in reversed(self.curve) if c["finished"] <= 0.9 * n), None)
        if lo is None or hi is None or hi["t"] <= lo["t"]:
            return 0.0
        return (hi["finished"] - lo["finished"]) / (hi["t"] - lo["t"])


class _PeakQueue(asyncio.Queue[Any]):
    """The conductor's inbox, noting how many inputs (batches of frames, ticks) ever
    waited in it at once."""

    def __init__(self, peaks: dict[str, int]) -> None:
        super().__init__()
        self._peaks = peaks

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        if self.qsize() > self._peaks["inbox"]:
            self._peaks["inbox"] = self.qsize()


async def _watch(conductor: Conductor, peaks: dict[str, int], limit_s: float | None) -> None:
    """Peaks of the conductor's queues; past ``limit_s`` the run is stopped (resumable)."""
    deadline = time.monotonic() + limit_s if limit_s else math.inf
    while True:
        peaks["pending_tasks"] = max(peaks["pending_tasks"], len(conductor.pending))
        peaks["in_flight_tasks"] = max(peaks["in_flight_tasks"], len(conductor.inflight))
        if time.monotonic() > deadline and not peaks["time_limit_hit"]:
            peaks["time_limit_hit"] = 1
            conductor.request_stop()
        await asyncio.sleep(0.05)


async def _scheduler_run(settings: SchedulerSettings, workdir: Path) -> dict[str, Any]:
    from gra.config import load_config
    from gra.data.seeds import load_seeds
    from gra.supervisor.conductor import Conductor

    directory = workdir / settings.name
    (directory / "out").mkdir(parents=True)
    config_path = _write_job(settings, directory)
    config = load_config(config_path)
    assert config.seeds is not None
    seeds = load_seeds(config.resolve(config.seeds.path), config.seeds)
    endpoint = private_ipc_endpoint("bench-supervisor")
    conductor = Conductor(
        config,
        seeds,
        directory / "out",
        endpoint,
        NullLauncher(),
        [],
        config_path=str(config_path),
        expected_remote=settings.agents,
    )
    agents = [
        [f"sim-{m}-{i:04d}", f"sim-{m}"]
        for i in range(settings.agents_per_model)
        for m in range(settings.models)
    ]
    n_processes = settings.host_processes
    reports = [directory / f"sim-{p}.json" for p in range(n_processes)]
    rss_start = rss_bytes()
    t0 = time.monotonic()
    snapshot_at: tuple[int, ...] = ()
    if settings.trace_memory:
        snapshot_at = (max(1, settings.instances // 10), max(2, settings.instances * 9 // 10))
    observer = SchedulerObserver(
        conductor,
        t0,
        settings.rss_interval,
        settings.time_limit_s,
        snapshot_at,
        settings.trace_frames,
    )
    hosts = [
        _spawn(
            "sim-agents",
            {
                "endpoint": endpoint,
                "agents": agents[p::n_processes],
                "capacity": settings.capacity,
                "service_s": settings.service_s,
                "heartbeat_s": settings.heartbeat_s,
                "item_bytes": settings.item_bytes,
                "report": str(reports[p]),
            },
            directory / f"sim-{p}.stderr",
        )
        for p in range(n_processes)
    ]
    peaks = {"pending_tasks": 0, "in_flight_tasks": 0, "inbox": 0, "time_limit_hit": 0}
    if isinstance(getattr(conductor, "_inbox", None), asyncio.Queue):
        # The watcher only runs when the main loop waits, i.e. when the inbox is
        # empty; so the inbox reports its own peak.
        conductor._inbox = _PeakQueue(peaks)
    watcher = asyncio.create_task(_watch(conductor, peaks, settings.time_limit_s))
    cpu0 = time.process_time()
    try:
        summary = await conductor.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        cpu = time.process_time() - cpu0
        t_end = time.monotonic() - t0
        _reap(hosts, 10.0)
        if settings.trace_memory:
            import tracemalloc

            tracemalloc.stop()  # a no-op if it never started
    sims = [json.loads(p.read_text()) for p in reports if p.exists()]
    # Committee-accepted items of an unfinished round (a time-limited run) are candidates.
    accepted = summary["counts"]["accepted"] + conductor.rounds.candidates
    report = scheduler_report(
        settings,
        summary,
        observer,
        peaks,
        {
            "returned_s": t_end,
            "supervisor_cpu_s": cpu,
            "rss_start": rss_start,
            "accepted": accepted,
        },
        sims,
    )
    if settings.trace_memory:
        report["memory_growth"] = memory_growth(observer.snapshots)
    return report


def _container_sizes(root: Any, prefix: str, depth: int, out: dict[str, int]) -> None:
    """len() of every container attribute of ``root``, and of their attributes' down
    to ``depth`` levels: which structure holds a per-instance entry shows by name."""
    try:
        attributes = vars(root)
    except TypeError:
        attributes = {
            slot: getattr(root, slot)
            for cls in type(root).__mro__
            for slot in getattr(cls, "__slots__", ())
            if isinstance(slot, str) and hasattr(root, slot)
        }
    for name, value in attributes.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict | list | set | frozenset | tuple | asyncio.Queue):
            out[key] = value.qsize() if isinstance(value, asyncio.Queue) else len(value)
            if isinstance(value, dict) and value and depth > 0:
                # One entry's containers too (e.g. per-agent or per-model lists).
                sample = next(iter(value.values()))
                if not isinstance(sample, int | float | str | bytes):
                    inner: dict[str, int] = {}
                    _container_sizes(sample, "", 0, inner)
                    for k in inner:
                        out[f"{key}[*].{k}"] = sum(
                            len(c) if hasattr(c, "__len__") else 0
                            for c in (getattr(e, k, None) for e in list(value.values())[:100_000])
                            if c is not None
                        )
        elif depth > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            _container_sizes(value, f"{key}.", depth - 1, out)


def memory_census(conductor: Any, finished: int, trace_frames: int = 0) -> dict[str, Any]:
    """The supervisor's memory at one point: RSS, live objects by type (gc), the
    conductor's containers by length, and a tracemalloc snapshot when asked."""
    import gc

    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    sizes: dict[str, int] = {}
    _container_sizes(conductor, "", 2, sizes)
    snapshot = None
    if trace_frames > 0:
        import tracemalloc

        # Tracing starts at the first point: what is still held at the last is
        # what the run kept, and the fleet's start is not slowed.
        if not tracemalloc.is_tracing():
            tracemalloc.start(trace_frames)
        snapshot = tracemalloc.take_snapshot()
    return {
        "finished": finished,
        "rss": rss_bytes(),
        "types": types,
        "sizes": sizes,
        "tracemalloc": snapshot,
    }


def memory_growth(censuses: Sequence[dict[str, Any]], top: int = 15) -> dict[str, Any]:
    """What grew between the first and the last census, per instance finished in
    between: object counts by type, the conductor's containers by length, and
    (when traced) Python bytes by allocating line; set against the RSS growth over
    the same instances, whose remainder is native (libzmq, the allocator)."""
    if len(censuses) < 2:
        return {"censuses": len(censuses), "types": [], "containers": []}
    first, last = censuses[0], censuses[-1]
    instances = max(1, last["finished"] - first["finished"])
    types = [
        {"type": name, "count_diff": diff, "per_instance": round(diff / instances, 4)}
        for name, diff in sorted(
            ((n, last["types"].get(n, 0) - first["types"].get(n, 0)) for n in last["types"]),
            key=lambda item: -abs(item[1]),
        )[:top]
        if diff
    ]
    containers = [
        {
            "container": name,
            "length_first": first["sizes"].get(name, 0),
            "length_last": length,
            "per_instance": round((length - first["sizes"].get(name, 0)) / instances, 4),
        }
        for name, length in sorted(
            last["sizes"].items(),
            key=lambda item: -abs(item[1] - first["sizes"].get(item[0], 0)),
        )[:top]
        if length != first["sizes"].get(name, 0)
    ]
    result: dict[str, Any] = {
        "between_finished": [first["finished"], last["finished"]],
        "rss_bytes_grown": last["rss"] - first["rss"],
        "rss_bytes_per_instance": round((last["rss"] - first["rss"]) / instances, 2),
        "types": types,
        "containers": containers,
    }
    if first["tracemalloc"] is not None and last["tracemalloc"] is not None:
        stats = last["tracemalloc"].compare_to(first["tracemalloc"], "lineno")
        grown = sum(stat.size_diff for stat in stats)
        result["python_bytes_per_instance"] = round(grown / instances, 2)
        result["by_line"] = [
            {
                "allocated_at": f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}",
                "size_diff": stat.size_diff,
                "count_diff": stat.count_diff,
                "bytes_per_instance": round(stat.size_diff / instances, 2),
            }
            for stat in sorted(stats, key=lambda stat: stat.size_diff, reverse=True)[:top]
        ]
    return result


def scheduler_report(
    settings: SchedulerSettings,
    summary: dict[str, Any],
    observer: SchedulerObserver,
    peaks: dict[str, int],
    run: dict[str, float],
    sims: list[dict[str, float]],
) -> dict[str, Any]:
    n = observer.finished
    steady = observer.steady_rate()
    bounds = settings.bounds()
    curve = observer.curve
    # Flatness is judged from 10% of the run (after warm-up) to its last instance.
    base = next((c for c in curve[1:] if c["finished"] >= 0.1 * n), None)
    last = curve[-1]
    growth = (last["rss"] - base["rss"]) / base["rss"] if base and last is not base else None
    tail = [c for c in curve if base and c["finished"] >= base["finished"]]
    slope = _slope([c["finished"] for c in tail], [c["rss"] for c in tail])
    # Each part of the memory, from 10% in to the end, per instance finished.
    span = last["finished"] - base["finished"] if base else 0
    parts_growth = {
        key: round((last[key] - base[key]) / span, 2)
        for key in last
        if base and span > 0 and key in base and key not in ("finished", "t")
    }
    latency = settings.stages * settings.service_s
    whole_bound = n / (n / bounds["bound"] + latency) if n else bounds["bound"]
    first, done = observer.first_start, observer.last_finish
    busy = done - first if first is not None and done is not None else 0.0
    return {
        "name": settings.name,
        "settings": asdict(settings)
        | {
            "agents": settings.agents,
            "host_processes": settings.host_processes,
            "max_in_flight": settings.in_flight,
            "tasks_per_instance": settings.tasks_per_instance,
            "stages": settings.stages,
            "total_capacity": settings.total_capacity,
        },
        "bounds_items_per_s": {k: round(v, 2) for k, v in bounds.items()},
        "achieved_items_per_s": round(steady, 2),
        "achieved_over_bound": round(steady / bounds["bound"], 4),
        # The whole run: first instance started to last finished (ramp and tail in).
        "overall_items_per_s": round(n / busy, 2) if busy > 0 else 0.0,
        "overall_over_bound": round(n / busy / bounds["bound"], 4) if busy > 0 else 0.0,
        # What no scheduler beats over a whole run of n instances: none finishes
        # before one instance's latency (its stages) has passed, then the bound.
        "whole_run_bound": round(whole_bound, 2),
        "overall_over_whole_run_bound": round(n / busy / whole_bound, 4) if busy > 0 else 0.0,
        "fleet_ready_s": None if first is None else round(first, 3),
        "instances_done_s": None if done is None else round(done, 3),
        "run_returned_s": round(run["returned_s"], 3),
        # Post-processing of the round (dedup is off: writing the accepted files) and shutdown.
        "end_of_round_s": None if done is None else round(run["returned_s"] - done, 3),
        "supervisor_cpu_s": round(run["supervisor_cpu_s"], 2),
        "supervisor_cpu_share": round(run["supervisor_cpu_s"] / run["returned_s"], 3),
        "sim_hosts_cpu_s": round(sum(s.get("cpu_s", 0.0) for s in sims), 2),
        "time_limit_hit": bool(peaks["time_limit_hit"]) or observer.time_limit_hit,
        "max_inbox": peaks["inbox"],
        "max_pending_tasks": peaks["pending_tasks"],
        "max_in_flight_tasks": peaks["in_flight_tasks"],
        "rss_start": run["rss_start"],
        "rss_after_run": rss_bytes(),
        "rss_every": observer.every,
        "rss_at_warmup": base["rss"] if growth is not None and base else None,
        # The sample flatness is judged from (10% in), every part of it.
        "memory_at_warmup": base if growth is not None and base else None,
        "rss_growth_after_warmup": None if growth is None else round(growth, 4),
        "rss_bytes_per_instance": None if math.isnan(slope) else round(slope, 3),
        # rss, py_blocks (a count), malloc_in_use, malloc_free: last minus 10% in.
        "memory_growth_per_instance": parts_growth,
        "rss_curve": [c | {"t": round(c["t"], 3)} for c in curve],
        "counts": summary["counts"],
        "accepted": int(run["accepted"]),
        "instances_finished": observer.finished,
        "instances_unfinished": summary.get("instances_unfinished"),
        "retries": summary["retries"],
        "agents_lost": summary["agents_lost"],
        "late_results_ignored": summary["late_results_ignored"],
        "bus_dropped_frames": summary.get("bus", {}).get("dropped_frames"),
        "sim_agents": {
            "served": sum(int(s["served"]) for s in sims),
            "refused": sum(int(s["refused"]) for s in sims),
        },
    }


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope; a leak shows as bytes per instance."""
    if len(xs) < 2:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan


def scheduler_checks(runs: list[dict[str, Any]]) -> list[Check]:
    checks = []
    for run in runs:
        s = run["settings"]
        bound = run["bounds_items_per_s"]["bound"]
        whole = run["overall_over_whole_run_bound"]
        latency = s["stages"] * s["service_s"]
        checks.append(
            Check(
                f"{run['name']}: items/s, whole run ({s['agents']} agents x {s['capacity']}, "
                f"{s['service_s']}s; bound incl. one instance's {latency:g}s latency)",
                f"{run['overall_items_per_s']:,.1f}",
                f"{run['whole_run_bound']:,.1f}",
                whole,
                ">= 0.95",
                whole >= 0.95,
            )
        )
        checks.append(
            Check(
                f"{run['name']}: items/s, whole run vs the steady bound",
                f"{run['overall_items_per_s']:,.1f}",
                f"{bound:,.1f}",
                run["overall_over_bound"],
                "(shown)",
                None,
            )
        )
        checks.append(
            Check(
                f"{run['name']}: items/s, 10%-90% of instances finished",
                f"{run['achieved_items_per_s']:,.1f}",
                f"{bound:,.1f}",
                run["achieved_over_bound"],
                "(shown)",
                None,
            )
        )
        accepted, finished = run["accepted"], run["instances_finished"]
        clean = accepted == finished > 0 and not run["retries"] and not run["agents_lost"]
        checks.append(
            Check(
                f"{run['name']}: accepted / finished"
                + (" (time limit)" if run["time_limit_hit"] else ""),
                str(accepted)
                + (
                    f" ({run['agents_lost']} agents lost, {run['retries']} retries)"
                    if run["agents_lost"] or run["retries"]
                    else ""
                ),
                str(finished),
                accepted / finished if finished else None,
                "all, no retries",
                clean,
            )
        )
        checks += memory_checks(run)
    return checks


# libzmq gives each pipe its messages in chunks of 256 (``message_pipe_granularity``)
# 64-byte ``zmq_msg_t``s, allocated as traffic crosses a chunk's end, and keeps one
# spare chunk: a peer's two pipes (in, out) settle at 4 chunks, 64 KiB, after about
# 512 messages each way (minutes, in a large fleet), then stay there. Measured:
# 61 KiB per peer in a 1,000-agent run that reached it (README, "Speed").
LIBZMQ_PEER_BYTES = 2 * 2 * 256 * 64


def memory_checks(run: dict[str, Any]) -> list[Check]:
    """Flatness from 10% in to the last instance, judged in every run: the blocks
    Python's allocator holds (every object gra keeps) strictly, the RSS with
    libzmq's per-peer allowance, which a run may reach before it ends."""
    start = run["memory_at_warmup"]
    if start is None:
        return []
    base, last = start["rss"], run["rss_curve"][-1]
    checks = []
    if "py_blocks" in last and "py_blocks" in start:
        blocks = last["py_blocks"] / start["py_blocks"]
        checks.append(
            Check(
                f"{run['name']}: Python heap blocks (gra's objects), last instance vs 10% in",
                f"{last['py_blocks']:,}",
                f"{start['py_blocks']:,}",
                blocks,
                "flat: <= 1.05",
                blocks <= 1.05,
            )
        )
    peers = run["settings"]["agents"]
    allowance = LIBZMQ_PEER_BYTES * peers
    grown = last["rss"] - base
    checks.append(
        Check(
            f"{run['name']}: RSS MiB, last instance vs 10% in",
            f"{last['rss'] / 2**20:.1f}",
            f"{base / 2**20:.1f}",
            last["rss"] / base,
            f"<= 1.05 + libzmq {allowance / 2**20:.1f} MiB ({peers} peers x 64 KiB)",
            grown <= 0.05 * base + allowance,
        )
    )
    return checks


def format_rss_curve(run: dict[str, Any], width: int = 40) -> str:
    """The RSS samples as text bars, so that a leak is visible at a glance."""
    curve = run["rss_curve"]
    if not curve:
        return ""
    top = max(c["rss"] for c in curve)
    low = min(c["rss"] for c in curve)
    if len(curve) < 2:
        return f"supervisor RSS, run {run['name']!r}: no instance finished, no curve"
    lines = [
        f"supervisor RSS, run {run['name']!r} (a sample every {run['rss_every']:,} instances):"
    ]
    step = max(1, len(curve) // 25)
    for c in curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else []):
        bar = "#" * max(1, round(width * (c["rss"] - low * 0.98) / max(1, top - low * 0.98)))
        lines.append(f"  {c['finished']:>8,}  {c['t']:>7.1f}s  {c['rss'] / 2**20:7.1f} MiB  {bar}")
    return "\n".join(lines)


async def _scheduler_benchmark(
    runs: Sequence[SchedulerSettings], workdir: Path
) -> list[dict[str, Any]]:
    from gra.logs import configure

    # As `gra run` does: every event to a JSON file, warnings to the console.
    configure(json_path=workdir / "supervisor.jsonl", level="warning", role="supervisor")
    results = []
    for settings in runs:
        results.append(await _scheduler_run(settings, workdir))
        await asyncio.sleep(0.5)  # let the previous fleet's processes go
    return results


def run_scheduler_benchmark(
    runs: Sequence[SchedulerSettings] = QUICK_SCHEDULER,
    *,
    workdir: Path | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """The real Conductor over simulated remote agents, against the theoretical bound."""
    started = time.monotonic()
    info = machine_info()
    base = workdir or Path(tempfile.mkdtemp(prefix="gra-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(_scheduler_benchmark(runs, base))
    finally:
        if not keep and workdir is None:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    info["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    checks = scheduler_checks(results)
    return {
        "benchmark": "scheduler",
        "machine": info,
        "utc": utc_stamp(),
        "workdir": str(base) if keep or workdir else None,
        "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
        "table": format_table(checks, "measured", "bound"),
        "passed": all(c.passed for c in checks if c.passed is not None),
        "runs": results,
        "wall_s": time.monotonic() - started,
    }


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def print_scheduler_report(report: dict[str, Any]) -> None:
    print(report["table"])
    for run in report["runs"]:
        s, b = run["settings"], run["bounds_items_per_s"]
        print(
            f"\n{run['name']}: {s['instances']:,} instances; {s['agents']} agents "
            f"({s['models']} models) in {s['host_processes']} process(es), capacity "
            f"{s['capacity']} each, service {s['service_s']}s, {s['tasks_per_instance']} tasks "
            f"per instance, max_in_flight {s['max_in_flight']}\n"
            f"  bound {b['bound']:,.1f}/s (capacity {b['capacity']:,.1f}, in flight "
            f"{b['in_flight']:,.1f}); whole run {run['overall_items_per_s']:,.1f}/s, "
            f"10%-90% {run['achieved_items_per_s']:,.1f}/s\n"
            f"  fleet ready {_secs(run['fleet_ready_s'])}, last instance "
            f"{_secs(run['instances_done_s'])}, end of round + shutdown "
            f"{_secs(run['end_of_round_s'])}; supervisor CPU "
            f"{run['supervisor_cpu_s']}s ({100 * run['supervisor_cpu_share']:.0f}% of wall), "
            f"simulated agents {run['sim_hosts_cpu_s']}s\n"
            f"  peaks: inbox {run['max_inbox']} inputs, pending tasks {run['max_pending_tasks']}, "
            f"in-flight tasks {run['max_in_flight_tasks']}"
            + ("; stopped at the time limit" if run["time_limit_hit"] else "")
            + "\n  RSS "
            + (
                f"{run['rss_bytes_per_instance']:+.1f} B/instance after warm-up, "
                if run["rss_bytes_per_instance"] is not None
                else ""
            )
            + f"{run['rss_after_run'] / 2**20:.1f} MiB after the run"
            + (
                "; from 10% in, per instance: "
                + ", ".join(f"{k} {v:+,.1f}" for k, v in run["memory_growth_per_instance"].items())
                if run["memory_growth_per_instance"]
                else ""
            )
        )
        print(format_rss_curve(run))
        growth = run.get("memory_growth")
        if growth and growth.get("between_finished"):
            n0, n1 = growth["between_finished"]
            print(
                f"  memory from {n0:,} to {n1:,} instances finished: RSS "
                f"{growth['rss_bytes_per_instance']:+,.1f} B/instance"
                + (
                    f", Python heap {growth['python_bytes_per_instance']:+,.1f} B/instance"
                    if "python_bytes_per_instance" in growth
                    else ""
                )
            )
            for row in growth["containers"][:6]:
                print(
                    f"    {row['container']}: {row['length_first']:,} -> {row['length_last']:,}"
                    f" ({row['per_instance']:+.3f}/instance)"
                )
            for row in growth["types"][:6]:
                print(f"    {row['type']} objects: {row['count_diff']:+,}")
            for row in growth.get("by_line", [])[:6]:
                print(f"    {row['bytes_per_instance']:+9,.1f} B/instance  {row['allocated_at']}")


def run_quick_benchmarks(results_dir: Path | None = None) -> dict[str, Any]:
    """Both benchmarks at quick sizes (seconds each, under a minute in all); prints their tables.

    With ``results_dir`` each benchmark's result is also written there as JSON.
    """
    bus = run_bus_benchmark(QUICK_BUS)
    print("bus: gra Router/Dealer vs raw pyzmq, ipc://, separate echo process")
    print(bus["table"])
    scheduler = run_scheduler_benchmark(QUICK_SCHEDULER)
    print("\nscheduler: the Conductor over simulated agents")
    print_scheduler_report(scheduler)
    if results_dir is not None:
        bus["result_file"] = str(write_result(results_dir, "bus", bus))
        scheduler["result_file"] = str(write_result(results_dir, "scheduler", scheduler))
    return {"bus": bus, "scheduler": scheduler, "passed": bus["passed"] and scheduler["passed"]}


# ---- child process entry point -------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gra.bench ROLE JSON`` runs a peer; with no arguments, the quick benchmarks."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return 0 if run_quick_benchmarks()["passed"] else 1
    role, spec = args[0], json.loads(args[1])
    _die_with_parent()
    if os.getppid() != spec["parent"]:
        return 1
    match role:
        case "echo-gra":
            asyncio.run(_echo_gra(spec))
        case "echo-raw":
            _echo_raw(spec)
        case "sim-agents":
            asyncio.run(_sim_host(spec))
        case _:
            print(f"unknown role {role!r}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "FULL_BUS",
    "FULL_SCHEDULER",
    "QUICK_BUS",
    "QUICK_SCHEDULER",
    "BusSettings",
    "Check",
    "SchedulerObserver",
    "SchedulerSettings",
    "format_table",
    "machine_info",
    "memory_checks",
    "print_scheduler_report",
    "run_bus_benchmark",
    "run_quick_benchmarks",
    "run_scheduler_benchmark",
    "scheduler_checks",
    "scheduler_report",
    "source_state",
    "write_result",
]
