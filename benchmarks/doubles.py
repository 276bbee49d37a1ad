"""The test doubles the benchmarks measure gra against: stand-ins for agents.

- ``echo-gra``: an agent that answers every Task at once, through gra's Dealer;
- ``echo-raw``: a plain pyzmq DEALER echoing bytes (the bus benchmark's baseline);
- ``sim-agents``: many simulated agents in one process, on the real wire
  protocol, whose "model" takes a fixed service time (the scheduler benchmark);
- ``NullLauncher``: the supervisor's launcher when every agent is remote.

The peers run in their own processes, started as ``python benchmarks/doubles.py
ROLE JSON`` (``harness.spawn_double``), so that the measured process does only
the supervisor's half of the work. This file imports gra and nothing of the
benchmarks, so it runs by path from anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from gra.bus.dealer import Dealer
from gra.protocols.messages import (
    Cancel,
    Heartbeat,
    Hello,
    Result,
    Shutdown,
    Task,
    TaskError,
    Usage,
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

_msgpack = msgspec.msgpack.Encoder()


def _die_with_parent() -> None:
    """Peers must never outlive the benchmark, even when it is SIGKILLed."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


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


# ---- the supervisor's side: a launcher that launches nothing --------------------


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


# ---- the peers' entry point ----------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/doubles.py ROLE JSON`` runs one peer until told to stop or
    its parent (the benchmark) is gone."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: doubles.py echo-gra|echo-raw|sim-agents JSON", file=sys.stderr)
        return 2
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
    "SIM_ROLES",
    "NullLauncher",
    "main",
    "result_body",
    "sim_bodies",
    "task_body",
]
