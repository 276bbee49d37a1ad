"""gra's bus (Router here, Dealer in an echo peer) against raw pyzmq ROUTER/DEALER.

A typical task frame goes through gra's Router in this process and an echoing
agent's Dealer in another (``doubles.py``), and a raw pyzmq pair with default
options echoes the same bytes with the same number in flight. Raw and gra
alternate, trial by trial, and medians are judged, because the machine is
shared: only ratios within one run are fair.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from benchmarks.doubles import task_body
from benchmarks.harness import Check, format_table, machine_info, reap, spawn_double, utc_stamp
from gra.bus.endpoints import cleanup, private_ipc_endpoint
from gra.bus.router import Router
from gra.protocols.messages import Hello, Result, Shutdown, Task, Welcome

_msgpack = msgspec.msgpack.Encoder()


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# ---- the drivers (this process, the supervisor's side) ----------------------


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
    """Sizes of one bus benchmark run: quick for `gra bench`, full for the README."""

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
        spawn_double("echo-gra", {**spec, "endpoint": gra_endpoint}),
        spawn_double("echo-raw", {**spec, "endpoint": raw_endpoint}),
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
        reap(peers)
    finally:
        reap(peers, 0.0)
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


__all__ = ["FULL_BUS", "QUICK_BUS", "BusSettings", "Drive", "run_bus_benchmark"]
