"""One real agent process against a real ROUTER socket driven by the test.

The test plays the supervisor's side of the wire by hand, so every step of
the agent's contract is visible: hello, welcome, heartbeats from their own
task while a task computes, re-registration when the supervisor goes
quiet, a task's result, an invalid request reported as a task error, and a
clean shutdown with a goodbye.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import zmq.asyncio

from gra.bus import Router, private_ipc_endpoint
from gra.protocols.messages import (
    Goodbye,
    Heartbeat,
    Hello,
    Result,
    Shutdown,
    Task,
    TaskError,
    Welcome,
)
from gra.protocols.roles import Example, GeneratedItem, GenerateRequest

pytestmark = pytest.mark.guarantee  # README, Reliability

AGENT_ID = "double-0"


def spawn_agent(endpoint: str, log_dir: Path, delay_s: float) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "gra", "agent",
        "--connect", endpoint, "--agent-id", AGENT_ID,
        "--backend", "plugin", "--factory", "tests.doubles:scripted",
        "--model", "double", "--role", "generator,reviewer",
        "--log-file", str(log_dir / "agent.jsonl"),
    ]  # fmt: skip
    import os

    env = dict(os.environ, GRA_DOUBLE_DELAY_S=str(delay_s))
    return subprocess.Popen(command, env=env, stderr=(log_dir / "stderr").open("wb"))


async def next_frame(router: Router, kind: type, timeout: float = 20.0) -> tuple[bytes, object]:
    deadline = time.monotonic() + timeout
    while True:
        identity, frame = await asyncio.wait_for(router.recv(), deadline - time.monotonic())
        if isinstance(frame, kind):
            return identity, frame


def generate_task(task_id: str, body: object) -> Task:
    return Task(task_id, "i-1", "generator", 1, 30.0, msgspec.Raw(msgspec.msgpack.encode(body)))


async def test_agent_contract_on_the_wire(router: Router, tmp_path: Path) -> None:
    agent = spawn_agent(router.bound, tmp_path, delay_s=2.0)
    try:
        identity, hello = await next_frame(router, Hello)
        assert identity == AGENT_ID.encode()
        assert isinstance(hello, Hello)
        assert hello.model == "double" and hello.roles == ("generator", "reviewer")
        assert hello.capacity == 1 and hello.pid == agent.pid
        assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=3))

        # A 2 s task: heartbeats must keep flowing while it computes.
        request = GenerateRequest("coding", (Example("Add two numbers.", "a + b"),))
        assert await router.send(identity, generate_task("t-1", request))
        beats, result = 0, None
        while result is None:
            await router.send(identity, Heartbeat(sent_at=time.time()))
            _, frame = await asyncio.wait_for(router.recv(), 10)
            if isinstance(frame, Heartbeat):
                beats += 1
            elif isinstance(frame, Result):
                result = frame
        assert beats >= 3, f"only {beats} heartbeats during a 2 s task"
        assert result.task_id == "t-1" and result.usage.calls == 1
        item = msgspec.msgpack.decode(bytes(result.body), type=GeneratedItem)
        assert "adds two numbers" in item.instruction

        # A request that does not decode is a task error, not a dead agent.
        assert await router.send(identity, generate_task("t-2", {"nonsense": 1}))
        _, error = await next_frame(router, TaskError)
        assert isinstance(error, TaskError) and error.task_id == "t-2"
        assert "undecodable" in error.reason

        # Supervisor goes quiet: after 3 missed beats the agent registers again.
        _, again = await next_frame(router, Hello, timeout=5)
        assert isinstance(again, Hello) and again.agent_id == AGENT_ID

        assert await router.send(identity, Shutdown(drain=True, reason="test over"))
        _, goodbye = await next_frame(router, Goodbye)
        assert isinstance(goodbye, Goodbye)
        assert agent.wait(timeout=20) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


async def test_malformed_frames_are_dropped_and_counted(router: Router) -> None:
    context = zmq.asyncio.Context()
    sender = context.socket(zmq.DEALER)
    sender.setsockopt(zmq.LINGER, 0)
    sender.setsockopt(zmq.IDENTITY, b"stranger")
    sender.connect(router.bound)
    try:
        good = msgspec.msgpack.encode(Heartbeat(sent_at=1.0))
        for junk in (b"", b"\xc1", good[:-2], msgspec.msgpack.encode({"kind": "nope"})):
            await sender.send(junk)
        await sender.send_multipart([b"two", b"parts"])
        await sender.send(good)
        identity, frame = await asyncio.wait_for(router.recv(), 5)
        assert identity == b"stranger" and frame == Heartbeat(sent_at=1.0)
        assert router.dropped == 5
        assert router.drop_reasons == {"undecodable": 4, "frame_count": 1}
    finally:
        sender.close(0)
        context.term()


async def test_send_to_unknown_peer_reports_false(router: Router) -> None:
    assert await router.send(b"nobody", Heartbeat(sent_at=0.0)) is False


async def test_a_result_finished_while_the_supervisor_is_away_is_delivered_later(
    tmp_path: Path,
) -> None:
    # Finished work is not dropped while the supervisor is away: the reply waits
    # in the agent (queued by its socket, or retried while the pipe is full).
    context = zmq.asyncio.Context()
    endpoint = private_ipc_endpoint("test")
    first = Router(context, endpoint)
    agent = spawn_agent(endpoint, tmp_path, delay_s=1.0)
    second = None
    try:
        await next_frame(first, Hello)
        await first.send(AGENT_ID.encode(), Welcome(0.2, 50))
        body = GenerateRequest("coding", (Example("Add 1 and 2.", "3"),))
        assert await first.send(AGENT_ID.encode(), generate_task("t-away", body))
        await asyncio.sleep(0.3)  # the task has arrived and is computing
        first.close()
        await asyncio.sleep(2.5)  # the task finishes with nobody to answer to
        second = Router(context, endpoint)
        _, result = await next_frame(second, Result, timeout=20.0)
        assert isinstance(result, Result) and result.task_id == "t-away"
    finally:
        agent.kill()
        agent.wait()
        if second is not None:
            second.close()
        context.term()


async def test_a_sigterm_during_teardown_keeps_a_clean_exit(router: Router, tmp_path: Path) -> None:
    """The launcher sends SIGTERM to an agent that has not exited two seconds after
    its Shutdown; on a loaded machine that agent may be tearing down (freeing a
    model). The stop was clean, so its exit code must stay 0, not -15."""
    import os

    # A teardown that takes 3 s, after the agent said goodbye (an atexit hook runs
    # after the agent's command returns, as freeing a model's memory would).
    starter = (
        "import atexit, sys, time; atexit.register(time.sleep, 3); "
        "from gra.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    command = [
        sys.executable, "-c", starter, "agent",
        "--connect", router.bound, "--agent-id", AGENT_ID,
        "--backend", "plugin", "--factory", "tests.doubles:scripted",
        "--model", "double", "--role", "generator",
    ]  # fmt: skip
    agent = subprocess.Popen(command, env=dict(os.environ, GRA_DOUBLE_DELAY_S="0"))
    try:
        identity, _ = await next_frame(router, Hello, timeout=60)
        assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=3))
        assert await router.send(identity, Shutdown(drain=False, reason="run finished"))
        await next_frame(router, Goodbye)
        await asyncio.sleep(1.0)  # inside the 3 s teardown
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
