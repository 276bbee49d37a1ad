"""Faults over longer runs: agents killed again and again, a remote agent
frozen and woken, a network partition between hosts. Every item must end
accepted, rejected or failed exactly once, and the journal must agree."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import scripted_config
from tests.test_fleet import _free_port, check_outputs, make_conductor, read_jsonl

pytestmark = pytest.mark.slow


@pytest.mark.guarantee
async def test_repeated_sigkills_during_a_hundred_item_run(tmp_path: Path, double_env) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.05")
    config = scripted_config(tmp_path, ["a", "b", "c", "d", "e"], target=120, max_in_flight=6)
    conductor = make_conductor(config, tmp_path / "out")
    rng = random.Random(5)
    kills: list[str] = []

    async def chaos() -> None:
        while len(kills) < 10 and conductor.accepted < 100:
            await asyncio.sleep(0.7)
            # Only an agent that holds tasks: one still starting (slow CI) has nothing to lose.
            busy = [a for a in conductor.fleet.live() if a.pid and a.in_flight]
            if busy:
                victim = rng.choice(busy)
                kills.append(victim.agent_id)
                os.kill(victim.pid, signal.SIGKILL)

    monkey = asyncio.create_task(chaos())
    summary = await asyncio.wait_for(conductor.run(), 300)
    monkey.cancel()
    assert len(kills) >= 5, kills
    accepted, _ = check_outputs(tmp_path / "out", summary, max_in_flight=6)
    assert len(accepted) >= 120
    assert summary.agents_lost >= len(kills) - 1
    journal = read_jsonl(tmp_path / "out" / "journal.jsonl")
    assert any(e["t"] == "retry" for e in journal)


@pytest.mark.guarantee
async def test_frozen_remote_agent_is_replaced_and_its_late_results_ignored(
    tmp_path: Path, double_env
) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.3")
    port = _free_port()
    config = scripted_config(
        tmp_path,
        ["a", "b", "c"],
        target=40,
        remote=("remote",),
        endpoint=f"tcp://127.0.0.1:{port}",
        allow_unauthenticated=True,
    )
    conductor = make_conductor(config, tmp_path / "out", expected_remote=1)
    command = [sys.executable, "-m", "gra", "agent", "--connect", f"tcp://127.0.0.1:{port}"]
    command += ["--backend", "plugin", "--factory", "tests.doubles:scripted"]
    command += ["--model", "remote", "--agent-id", "remote-1"]
    remote = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    events: list[str] = []

    async def freeze_and_wake() -> None:
        while not any(a.agent_id == "remote-1" and a.in_flight for a in conductor.fleet.live()):
            await asyncio.sleep(0.02)
        remote.send_signal(signal.SIGSTOP)
        events.append("frozen")
        while any(a.agent_id == "remote-1" for a in conductor.fleet.live()):
            await asyncio.sleep(0.05)
        events.append("declared dead")
        await asyncio.sleep(0.5)
        remote.send_signal(signal.SIGCONT)
        events.append("woken")

    try:
        waker = asyncio.create_task(freeze_and_wake())
        summary = await asyncio.wait_for(conductor.run(), 180)
        await asyncio.wait_for(waker, 5)
    finally:
        remote.kill()
        remote.wait()
    assert events == ["frozen", "declared dead", "woken"]
    accepted, _ = check_outputs(tmp_path / "out", summary)
    assert len(accepted) >= 40
    assert summary.agents["remote-1"].alive, "the woken agent did not rejoin"
    assert summary.late_results_ignored >= 1


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def other_host() -> Iterator[tuple[str, str, str]]:
    """A second host: a network namespace joined to this one by a veth pair.

    Yields (namespace, this host's address, the link's far end to cut).
    """
    tag = uuid.uuid4().hex[:6]
    namespace, near, far = f"gra-{tag}", f"grh{tag}", f"gra{tag}"
    subnet = f"10.213.{int(tag[:2], 16)}"
    made = _ip("netns", "add", namespace)
    if made.returncode != 0:
        pytest.skip(f"cannot create network namespaces here: {made.stderr.strip()}")
    try:
        steps = [
            ("link", "add", near, "type", "veth", "peer", "name", far),
            ("link", "set", far, "netns", namespace),
            ("addr", "add", f"{subnet}.1/30", "dev", near),
            ("link", "set", near, "up"),
            ("-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", far),
            ("-n", namespace, "link", "set", far, "up"),
            ("-n", namespace, "link", "set", "lo", "up"),
        ]
        for step in steps:
            done = _ip(*step)
            assert done.returncode == 0, f"ip {' '.join(step)}: {done.stderr}"
        yield namespace, f"{subnet}.1", far
    finally:
        _ip("netns", "del", namespace)
        _ip("link", "del", near)


@pytest.mark.guarantee
async def test_network_partition_between_hosts(
    tmp_path: Path, double_env, other_host: tuple[str, str, str]
) -> None:
    namespace, address, far_end = other_host
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.2")
    port = _free_port()
    config = scripted_config(
        tmp_path,
        ["a", "b", "c"],
        target=100_000,
        remote=("remote",),
        endpoint=f"tcp://{address}:{port}",
        allow_unauthenticated=True,
    )
    conductor = make_conductor(config, tmp_path / "out", expected_remote=1)
    command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "gra", "agent"]
    command += ["--connect", f"tcp://{address}:{port}", "--agent-id", "far-1", "--model", "remote"]
    command += ["--backend", "plugin", "--factory", "tests.doubles:scripted"]
    remote = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    story: list[str] = []

    def far_agent():  # type: ignore[no-untyped-def]
        return next((a for a in conductor.fleet.agents.values() if a.agent_id == "far-1"), None)

    async def partition() -> None:
        while (agent := far_agent()) is None or agent.completed < 3:
            await asyncio.sleep(0.05)
        assert _ip("-n", namespace, "link", "set", far_end, "down").returncode == 0
        story.append("cut")
        while far_agent().alive:
            await asyncio.sleep(0.05)
        story.append("declared dead")
        await asyncio.sleep(1.0)
        assert _ip("-n", namespace, "link", "set", far_end, "up").returncode == 0
        story.append("restored")
        while not far_agent().alive:
            await asyncio.sleep(0.05)
        story.append("rejoined")
        done_at_rejoin = far_agent().completed
        while far_agent().completed < done_at_rejoin + 3:
            await asyncio.sleep(0.05)
        story.append("working again")
        conductor.request_stop()

    try:
        cutter = asyncio.create_task(partition())
        summary = await asyncio.wait_for(conductor.run(), 240)
        await asyncio.wait_for(cutter, 5)
    finally:
        remote.kill()
        remote.wait()
    assert story == ["cut", "declared dead", "restored", "rejoined", "working again"]
    assert summary.agents_lost >= 1
    _, rejected = check_outputs(tmp_path / "out", summary)
    assert not [r for r in rejected if r["decision"] == "failed"]
    candidates = read_jsonl(tmp_path / "out" / "round-1" / "candidates.jsonl")
    involved = {r["generator"]["model"] for r in candidates} | {
        review["model"] for r in candidates for review in r["reviews"]
    }
    assert "remote" in involved
