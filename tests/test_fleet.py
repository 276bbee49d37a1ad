"""A fleet of real agent processes on real sockets, driven by a real supervisor.

Agents are backed by the scripted test double so the tests are about the
fleet (registration, heartbeats, death, retries, shutdown), not the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rich.console import Console

from gra.bus import private_ipc_endpoint
from gra.bus.router import Router
from gra.config import load_config
from gra.data.seeds import load_seeds
from gra.protocols.messages import Message, Result, Task
from gra.protocols.peer_review import Adjudicated, Enriched, Generated, Reviewed
from gra.rundir import Summary
from gra.status import read_status, render_status
from gra.supervisor.actions import Action, Frames, Input
from gra.supervisor.conductor import Conductor
from gra.supervisor.job import agent_specs, prepare_out_dir
from gra.supervisor.journal import Entry, InstanceChanged
from gra.supervisor.launcher import LocalLauncher
from tests.conftest import pid_alive, scripted_config


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count_lines(path: Path) -> int:
    return len(read_jsonl(path)) if path.exists() else 0


def make_conductor(config_path: Path, out: Path, expected_remote: int = 0) -> Conductor:
    config = load_config(config_path)
    prepare_out_dir(out, resume=False)
    return Conductor(
        config,
        load_seeds(config.resolve(config.seeds.path), config.seeds),
        out,
        config.bus.endpoint or private_ipc_endpoint(),
        LocalLauncher(out / "logs"),
        agent_specs(config),
        expected_remote=expected_remote,
    )


def check_outputs(
    out: Path, summary: Summary | dict, max_in_flight: int = 4
) -> tuple[list[dict], list[dict]]:
    if not isinstance(summary, Summary):  # read back from summary.json
        summary = msgspec.convert(summary, Summary)
    accepted = read_jsonl(out / "accepted.jsonl")
    rejected = read_jsonl(out / "rejected.jsonl")
    ids = [r["id"] for r in accepted + rejected]
    assert len(ids) == len(set(ids)), "an instance was written twice"
    # A run stopped mid-round keeps its committee-accepted items as candidates
    # until the round is post-processed on resume.
    candidates = [r["id"] for p in out.glob("round-*/candidates.jsonl") for r in read_jsonl(p)]
    assert len(candidates) == len(set(candidates)), "a candidate was written twice"
    waiting = set(candidates) - set(ids)
    counts = summary.counts
    assert counts["accepted"] == len(accepted)
    assert counts["rejected_instruction_check"] + counts["rejected_score"] + counts[
        "rejected_adjudication"
    ] + counts["failed"] == len(rejected)
    journal = read_jsonl(out / "journal.jsonl")
    # Seed annotations are journaled too, but produce pool metadata, not records.
    finished = [
        e["instance"] for e in journal if e["t"] == "finish" and e["stage"] != "seed_annotation"
    ]
    assert sorted(finished) == sorted([*ids, *waiting]), "journal and outputs disagree"
    started = {
        e["instance"]
        for e in journal
        if e["t"] == "start" and e.get("kind", "item") != "seed_annotation"
    }
    assert set(ids) | waiting <= started
    # Instances in progress when the target was reached stay resumable, and are counted.
    assert len(started - set(ids) - waiting) == summary.instances_unfinished
    assert summary.instances_unfinished <= max_in_flight
    return accepted, rejected


async def test_fleet_registers_runs_and_shuts_down_cleanly(tmp_path: Path, double_env) -> None:
    config = scripted_config(tmp_path, ["a", "b", "c", "d"], target=8)
    conductor = make_conductor(config, tmp_path / "out")
    summary = await asyncio.wait_for(conductor.run(), 120)

    agents = summary.agents
    assert sorted(agents) == ["a-0", "b-0", "c-0", "d-0"]
    assert all(a.completed > 0 for a in agents.values()), agents
    accepted, _ = check_outputs(tmp_path / "out", summary)
    assert len(accepted) >= 8
    for record in accepted:
        reviewers = [r["model"] for r in record["reviews"]]
        assert len(reviewers) == 3 and record["generator"]["model"] not in reviewers
        assert record["decision"] == "accepted" and record["mean"] == 9.0
    # `gra status` shows the finished fleet from the directory alone.
    console = Console(record=True, width=200)
    render_status(read_status(tmp_path / "out"), console)
    shown = console.export_text()
    assert shown.startswith(f"stopped  accepted {len(accepted)}/8")
    assert all(agent_id in shown for agent_id in agents)
    # Graceful shutdown: every agent process has exited and been reaped.
    launcher = conductor.launcher
    assert isinstance(launcher, LocalLauncher)
    for agent_id, process in launcher.processes.items():
        assert process.returncode == 0, f"{agent_id} exited with {process.returncode}"
        assert not pid_alive(process.pid)


async def test_unset_max_in_flight_keeps_every_agent_busy(tmp_path: Path, double_env) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.2")
    config = scripted_config(tmp_path, ["a", "b", "c"], target=30, max_in_flight=None, capacity=3)
    conductor = make_conductor(config, tmp_path / "out")
    run = asyncio.create_task(conductor.run())
    busiest = most_instances = 0
    while not run.done():
        busiest = max(busiest, len(conductor.core.inflight))
        most_instances = max(most_instances, len(conductor.core.instances))
        await asyncio.sleep(0.01)
    summary = await run
    check_outputs(tmp_path / "out", summary, max_in_flight=4 * 9)
    assert busiest == 9, "the fleet's 9 task slots were never all busy at once"
    assert most_instances <= 4 * 9


async def test_a_freed_agent_gets_its_next_task_before_its_result_is_processed(
    tmp_path: Path, double_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One task slot per agent and a backlog: when a result comes in, the next
    # task waiting for that agent's model is sent first, and the result is
    # processed (journaled) after, while the agent already works.
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.05")
    config = scripted_config(tmp_path, ["a", "b", "c"], target=12, max_in_flight=9, capacity=1)
    conductor = make_conductor(config, tmp_path / "out")
    order: list[tuple[str, str, str]] = []  # (what, model, instance)
    send_now = Router.send_now

    def record_send(router: Router, identity: bytes, message: Message) -> bool:
        if isinstance(message, Task):
            order.append(("sent", identity.decode().split("-")[0], message.instance_id))
        return send_now(router, identity, message)

    monkeypatch.setattr(Router, "send_now", record_send)
    append = conductor.journal.append

    def record_append(entry: Entry, *, sync: bool = False) -> None:
        if isinstance(entry, InstanceChanged) and isinstance(
            entry.event, Generated | Reviewed | Enriched | Adjudicated
        ):
            order.append(("processed", entry.event.model, entry.instance))
        append(entry, sync=sync)

    monkeypatch.setattr(conductor.journal, "append", record_append)
    summary = await asyncio.wait_for(conductor.run(), 120)
    check_outputs(tmp_path / "out", summary, max_in_flight=9)
    refilled_first = 0
    for model in ("a", "b", "c"):
        sends = [i for i, (what, m, _) in enumerate(order) if what == "sent" and m == model]
        for this, after in itertools.pairwise(sends):
            done = order.index(("processed", model, order[this][2]), this)
            refilled_first += after < done
    assert refilled_first > 0, "every agent waited for its result to be processed"


@pytest.mark.guarantee
async def test_agent_killed_mid_task_is_replaced(
    tmp_path: Path, double_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.6")
    # A killed agent is restarted, but loads for seconds first, as a real model's does:
    # its tasks go on without it.
    double_env.setenv("GRA_DOUBLE_RESTART_S", json.dumps(dict.fromkeys("abcd", 5)))
    double_env.setenv("GRA_DOUBLE_DIR", str(tmp_path))
    replicas = dict.fromkeys("abcd", 2)
    config = scripted_config(tmp_path, list("abcd"), target=10, max_in_flight=4, replicas=replicas)
    conductor = make_conductor(config, tmp_path / "out")
    killed: dict[str, Any] = {}
    sent: list[tuple[str, Task]] = []  # (agent, task), in the order sent
    answered: set[tuple[str, str]] = set()  # (agent, task) of every result that came in
    send_now = Router.send_now

    def record_send(router: Router, identity: bytes, message: Message) -> bool:
        if isinstance(message, Task):
            sent.append((identity.decode(), message))
        return send_now(router, identity, message)

    monkeypatch.setattr(Router, "send_now", record_send)
    handle = conductor.core.handle

    def record_results(inputs: Sequence[Input], now: float) -> list[Action]:
        for item in inputs:
            if isinstance(item, Frames):
                answered.update(
                    (identity.decode(), frame.task_id)
                    for identity, frame in item.frames
                    if isinstance(frame, Result)
                )
        return handle(inputs, now)

    monkeypatch.setattr(conductor.core, "handle", record_results)

    async def kill_one_busy_agent() -> None:
        while True:
            await asyncio.sleep(0.05)
            finished = conductor.core.counters.finished
            busy = [a for a in conductor.fleet.live() if a.in_flight and finished >= 1]
            if busy:
                victim = busy[0]
                killed.update(agent=victim.agent_id, tasks=set(victim.in_flight), pid=victim.pid)
                os.kill(victim.pid, signal.SIGKILL)
                return

    killer = asyncio.create_task(kill_one_busy_agent())
    summary = await asyncio.wait_for(conductor.run(), 180)
    await killer
    assert killed, "no agent was ever busy"
    assert summary.agents_lost >= 1
    accepted, rejected = check_outputs(tmp_path / "out", summary)
    journal = read_jsonl(tmp_path / "out" / "journal.jsonl")
    retried = [e for e in journal if e["t"] == "retry" and e["task_id"] in killed["tasks"]]
    assert {e["task_id"] for e in retried} == killed["tasks"], "a killed agent's task was dropped"
    assert all(entry["agent"] == killed["agent"] for entry in retried)
    records = {r["id"]: r for r in accepted + rejected}
    tasks = {task.task_id: (agent, task) for agent, task in sent}
    for task_id in killed["tasks"]:
        agent, task = tasks[task_id]
        assert agent == killed["agent"]
        # The same step, sent again as the next attempt: to whom, and who answered.
        again = [
            (to, t)
            for to, t in sent
            if (t.instance_id, t.role, t.attempt, bytes(t.body))
            == (task.instance_id, task.role, task.attempt + 1, bytes(task.body))
        ]
        assert len(again) == 1, f"{task_id} was sent again {len(again)} times, not once"
        ((to, retry),) = again
        assert to != killed["agent"], f"{task_id} waited for the killed agent to come back"
        assert (to, retry.task_id) in answered, f"{to} never finished {task_id}'s retry"
        record = records[task.instance_id]
        assert record["decision"] == "accepted", record["reason"]


@pytest.mark.guarantee
async def test_frozen_agent_is_declared_dead_and_its_work_moves(tmp_path: Path, double_env) -> None:
    """A hung agent (SIGSTOP) misses its heartbeats: it is declared dead, its tasks
    are done elsewhere, and it is killed and started again, and works again."""
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.3")
    # Five models and committees of three: the hung model's seats can be handed over.
    config = scripted_config(tmp_path, ["a", "b", "c", "d", "e"], target=1000)
    conductor = make_conductor(config, tmp_path / "out")
    frozen: dict[str, Any] = {}
    story: list[str] = []

    def agent() -> Any:
        return next(a for a in conductor.fleet.agents.values() if a.agent_id == frozen["agent"])

    async def until(what: str, done: Any) -> None:
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, f"never {what}: {story}"
            await asyncio.sleep(0.05)
        story.append(what)

    async def freeze_one_busy_agent() -> None:
        try:
            await until("busy", lambda: [a for a in conductor.fleet.live() if a.in_flight])
            victim = next(a for a in conductor.fleet.live() if a.in_flight)
            frozen.update(agent=victim.agent_id, pid=victim.pid, tasks=set(victim.in_flight))
            held = {
                flight.pending.instance_id
                for task_id in frozen["tasks"]
                if (flight := conductor.core.inflight.get(task_id))
            }
            os.kill(victim.pid, signal.SIGSTOP)
            await until("declared dead", lambda: not agent().alive)
            await until("killed", lambda: not pid_alive(frozen["pid"]))
            await until("restarted", lambda: agent().alive and agent().pid != frozen["pid"])
            completed = agent().completed
            await until("working again", lambda: agent().completed > completed)
            # Stopping now would leave the moved work unfinished (for a resume),
            # so wait for the instances it held to finish elsewhere.
            instances = conductor.core.instances
            await until("its instances finished", lambda: not held & instances.keys())
        finally:
            conductor.request_stop()

    freezer = asyncio.create_task(freeze_one_busy_agent())
    try:
        summary = await asyncio.wait_for(conductor.run(), 180)
    finally:
        await freezer
        with contextlib.suppress(ProcessLookupError, KeyError):
            os.kill(frozen["pid"], signal.SIGCONT)
    assert story == [
        "busy",
        "declared dead",
        "killed",
        "restarted",
        "working again",
        "its instances finished",
    ]
    assert summary.agents_lost >= 1
    assert summary.agents[frozen["agent"]].restarts == 1
    out = tmp_path / "out"
    accepted, rejected = check_outputs(out, summary)
    assert not [r for r in rejected if r["decision"] == "failed"]
    # Its work moved: every task it held was sent again, and its instance finished.
    journal = read_jsonl(out / "journal.jsonl")
    retried = [e for e in journal if e["t"] == "retry" and e["task_id"] in frozen["tasks"]]
    assert {e["task_id"] for e in retried} == frozen["tasks"]
    assert all("missed heartbeats" in e["reason"] for e in retried)
    candidates = read_jsonl(out / "round-1" / "candidates.jsonl")
    finished = {r["id"] for r in [*accepted, *rejected, *candidates]}
    assert {e["instance"] for e in retried} <= finished


def _spawned_pids(out: Path) -> list[int]:
    log = out / "logs" / "supervisor.jsonl"
    if not log.exists():
        return []
    return [e["pid"] for e in read_jsonl(log) if e.get("event") == "agent_spawned"]


@pytest.mark.guarantee
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_stopped_supervisor_leaves_no_orphans(tmp_path: Path, double_env, sig: int) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.5")
    config = scripted_config(tmp_path, ["a", "b", "c"], target=1000)
    out = tmp_path / "out"
    # A file, not a pipe: a pipe nobody reads fills up and blocks the supervisor's logging.
    stderr = tmp_path / "supervisor.stderr"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        stderr=stderr.open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while count_lines(out / "round-1" / "candidates.jsonl") < 1:
            assert time.monotonic() < deadline, "the run never accepted anything"
            assert supervisor.poll() is None, stderr.read_text()
            time.sleep(0.1)
        pids = _spawned_pids(out)
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        supervisor.send_signal(sig)
        supervisor.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if pid_alive(p)], "agents outlived their supervisor"
        if sig == signal.SIGINT:
            assert supervisor.returncode == 130
            assert "--resume" in stderr.read_text()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


@pytest.mark.guarantee
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_kill_stops_a_run_as_cleanly_as_ctrl_c(tmp_path: Path, double_env, sig: int) -> None:
    """`kill PID` is how a service manager or a batch scheduler stops a run: the
    fleet is shut down, outputs and journal are closed whole, the summary is written,
    and the exit code and message are those of Ctrl-C; the run then resumes."""
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.3")
    config = scripted_config(tmp_path, ["a", "b", "c"], target=1000)
    out = tmp_path / "out"
    stderr = tmp_path / "supervisor.stderr"
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"]
    supervisor = subprocess.Popen(command, stderr=stderr.open("wb"))
    try:
        deadline = time.monotonic() + 60
        while count_lines(out / "round-1" / "candidates.jsonl") < 2:
            assert time.monotonic() < deadline, "the run never accepted anything"
            assert supervisor.poll() is None, stderr.read_text()
            time.sleep(0.1)
        pids = _spawned_pids(out)
        supervisor.send_signal(sig)
        assert supervisor.wait(timeout=60) == 130, stderr.read_text()[-2000:]
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    said = stderr.read_text()
    assert "gra: interrupted; continue with --resume" in said and "Traceback" not in said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["running"] is False and summary["instances_started"] >= 2
    for agent_id in summary["agents"]:  # told to stop, not orphaned and killed
        events = [e["event"] for e in read_jsonl(out / "logs" / f"agent-{agent_id}.jsonl")]
        assert "shutdown_requested" in events and events[-1] == "agent_stopped", agent_id
    assert not [p for p in pids if pid_alive(p)]
    for name in ("journal.jsonl", "rejected.jsonl", "round-1/candidates.jsonl"):
        text = (out / name).read_text() if (out / name).exists() else ""
        assert not text or text.endswith("\n"), f"{name} ends in a partial line"
    target = count_lines(out / "round-1" / "candidates.jsonl") + 2
    resumed = subprocess.run(
        [*command, "--resume", "--target", str(target)], capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_remote_agent_joins_over_tcp(tmp_path: Path, double_env) -> None:
    port = _free_port()
    config = scripted_config(
        tmp_path,
        ["a", "b"],
        target=6,
        remote=("remote",),
        endpoint=f"tcp://127.0.0.1:{port}",
        allow_unauthenticated=True,
    )
    conductor = make_conductor(config, tmp_path / "out", expected_remote=1)
    remote = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gra",
            "agent",
            "--connect",
            f"tcp://127.0.0.1:{port}",
            "--backend",
            "plugin",
            "--factory",
            "tests.doubles:scripted",
            "--model",
            "remote",
            "--agent-id",
            "remote-host-1",
        ],
        stderr=(tmp_path / "remote.stderr").open("wb"),  # a pipe nobody reads can fill up
    )
    try:
        summary = await asyncio.wait_for(conductor.run(), 120)
        assert remote.wait(timeout=30) == 0, (tmp_path / "remote.stderr").read_text()[-2000:]
    finally:
        if remote.poll() is None:
            remote.kill()
            remote.wait()
    assert summary.agents["remote-host-1"].completed > 0
    accepted, _ = check_outputs(tmp_path / "out", summary)
    involved = {r["generator"]["model"] for r in accepted} | {
        rv["model"] for r in accepted for rv in r["reviews"]
    }
    assert "remote" in involved


@pytest.mark.guarantee
def test_resume_after_supervisor_sigkill(tmp_path: Path, double_env) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.15")
    config = scripted_config(tmp_path, ["a", "b", "c", "d"], target=25, max_in_flight=4)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"]
    first = subprocess.Popen(command, stderr=(tmp_path / "first.stderr").open("wb"))
    try:
        deadline = time.monotonic() + 60
        while count_lines(out / "round-1" / "candidates.jsonl") < 5:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        first.kill()
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    journal = read_jsonl(out / "journal.jsonl")
    started_before = {e["instance"] for e in journal if e["t"] == "start"}
    finished_before = {e["instance"] for e in journal if e["t"] == "finish"}
    assert started_before - finished_before, "nothing was in flight when the supervisor died"

    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    accepted, _ = check_outputs(out, summary)
    assert len(accepted) >= 25
    ids = {r["id"] for r in accepted}
    # Instances cut off mid-flight were finished by the resumed run, not dropped.
    assert (started_before - finished_before) <= ids | {
        r["id"] for r in read_jsonl(out / "rejected.jsonl")
    }
