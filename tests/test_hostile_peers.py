"""Red team: peers that try to forge data, against a live supervisor on 127.0.0.1.

A rogue on a plain tcp bus, the holder of one authorised CURVE key claiming
other models, an admitted agent spraying results for tasks it was never given,
and a flood of junk: nothing forged reaches the outputs, and the log stays small.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import structlog
import zmq
import zmq.asyncio

from gra.bus import Dealer, Router
from gra.bus.security import create_keys
from gra.config import ConfigError, load_config
from gra.log_budget import LogBudget
from gra.protocols.messages import Hello, Reject, Result, Task, TaskError, Usage, Welcome
from gra.protocols.roles import Checks, ReviewOutput, Scores
from gra.rundir import write_summary
from gra.supervisor.admission import Admission, Member
from gra.supervisor.outputs import RunStats
from tests.conftest import scripted_config
from tests.test_fleet import _free_port, check_outputs, make_conductor

FORGED = "FORGED-BY-ROGUE"


def hello(agent_id: str, model: str, roles: tuple[str, ...] = ("reviewer",), **kw) -> Hello:
    return Hello(agent_id, model, roles, kw.pop("capacity", 1), "rogue", 1, "rogue-host", **kw)


def forged_review() -> bytes:
    review = ReviewOutput(Checks(True, True, True), Scores(10, 10, 10, 10, 10, 10), FORGED, FORGED)
    return msgspec.msgpack.encode(review)


def models_in_records(out: Path) -> set[str]:
    models: set[str] = set()
    for name in ("accepted.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            record = json.loads(line)
            models.add(record["generator"]["model"])
            models.update(r["model"] for r in record["reviews"])
    return models


# ---- admission: the rules, without processes -------------------------------


def admission_for(tmp_path: Path, *, curve: bool) -> Admission:
    keys = tmp_path / "keys"
    if curve:
        create_keys(keys, ["remote-1"])
    config = load_config(
        scripted_config(
            tmp_path,
            ["a", "b"],
            remote=("remote",),
            endpoint=f"tcp://127.0.0.1:{_free_port()}",
            curve_keys=keys if curve else None,
            remote_keys={"remote": "remote-1"} if curve else None,
            allow_unauthenticated=not curve,
        )
    )
    return Admission.from_config(config, {"a-0": "a", "b-0": "b"}, "secret-token")


def test_plain_tcp_without_curve_is_refused_unless_allowed(tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ConfigError, match=r"bus.endpoint: tcp://.*curve_keys"):
        load_config(scripted_config(tmp_path, ["a", "b"], endpoint=endpoint))
    config = load_config(
        scripted_config(tmp_path, ["a", "b"], endpoint=endpoint, allow_unauthenticated=True)
    )
    assert config.bus.allow_unauthenticated


def test_remote_entry_on_curve_must_name_its_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_keys(keys, ["remote-1"])
    path = scripted_config(
        tmp_path,
        ["a", "b"],
        remote=("remote",),
        endpoint=f"tcp://127.0.0.1:{_free_port()}",
        curve_keys=keys,
    )
    with pytest.raises(ConfigError, match=r"agents\[2\]\.key"):
        load_config(path)


def test_admission_refuses_what_the_config_does_not_grant(tmp_path: Path) -> None:
    admission = admission_for(tmp_path, curve=False)
    ident = b"x"
    assert isinstance(admission.admit(hello("x", "made-up"), None, ident, []), str)
    # A local agent id without the run's token, or with it but another model.
    assert "token" in str(admission.admit(hello("a-0", "a"), None, ident, []))
    good = admission.admit(hello("a-0", "a", token="secret-token"), None, ident, [])
    assert not isinstance(good, str) and good.model == "a"
    wrong = admission.admit(hello("a-0", "b", token="secret-token"), None, ident, [])
    assert "hosts 'a'" in str(wrong)
    # A local model cannot be claimed from outside.
    assert "local agents only" in str(admission.admit(hello("a-9", "a"), None, ident, []))
    # The remote seat: one replica, the entry's roles.
    seat = admission.admit(hello("r-1", "remote"), None, b"r-1", [])
    assert not isinstance(seat, str)
    second = admission.admit(hello("r-2", "remote"), None, b"r-2", [Member(b"r-1", "r-1", seat)])
    assert "already has its 1" in str(second)
    # The same connection saying hello again is not a second agent.
    again = admission.admit(hello("r-1", "remote"), None, b"r-1", [Member(b"r-1", "r-1", seat)])
    assert again is seat
    assert admission.missing([Member(b"r-1", "r-1", seat)]) == [
        "local model 'a': 0 of 1 agent(s)",
        "local model 'b': 0 of 1 agent(s)",
    ]


def test_admission_binds_models_to_curve_keys(tmp_path: Path) -> None:
    admission = admission_for(tmp_path, curve=True)
    assert not isinstance(admission.admit(hello("r-1", "remote"), "remote-1", b"r-1", []), str)
    assert "key 'other'" in str(admission.admit(hello("r-1", "remote"), "other", b"r-1", []))
    # The local agents' token is not enough over another key.
    local = admission.admit(hello("a-0", "a", token="secret-token"), "remote-1", b"a-0", [])
    assert "not the local key" in str(local)
    ok = admission.admit(hello("a-0", "a", token="secret-token"), "local", b"a-0", [])
    assert not isinstance(ok, str)


# ---- untrusted numbers --------------------------------------------------------


def test_usage_numbers_from_agents_are_validated(tmp_path: Path) -> None:
    stats = RunStats()
    stats.add_usage("m", "reviewer", Usage(10, 20, 1.5, 1))
    for bad in (
        Usage(seconds=math.nan),
        Usage(seconds=math.inf),
        Usage(prompt_tokens=-1),
        Usage(completion_tokens=2**63 - 1),
        Usage(calls=-5),
        Usage(seconds=-2.0),
    ):
        stats.add_usage("m", "reviewer", bad)
    # A resumed summary.json that someone edited badly.
    stats.usage["m"]["generator"]["seconds"] = math.nan
    summary = stats.summary()
    assert summary.invalid_usage_reports == 6
    assert summary.models["m"].prompt_tokens == 10
    assert summary.models["m"].seconds == 1.5
    write_summary(tmp_path, summary)

    def strict(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    json.loads((tmp_path / "summary.json").read_text(), parse_constant=strict)


# ---- a flood of junk ------------------------------------------------------------


def test_log_budget_counts_what_it_does_not_write() -> None:
    now = [0.0]
    budget = LogBudget(burst=3, window_s=10.0, clock=lambda: now[0])
    assert [budget.take("e")[0] for _ in range(5)] == [True, True, True, False, False]
    assert budget.take("other") == (True, 0)
    now[0] = 10.0
    assert budget.take("e") == (True, 2)  # the next window reports what was held back
    budget.take("e"), budget.take("e"), budget.take("e")
    assert budget.drain() == {"e": 1}
    assert budget.drain() == {}


async def test_junk_flood_logs_a_count_not_a_line_per_frame() -> None:
    context = zmq.asyncio.Context()
    router = Router(context, f"tcp://127.0.0.1:{_free_port()}")
    junk = context.socket(zmq.DEALER)
    junk.setsockopt(zmq.LINGER, 0)
    junk.connect(router.bound)
    try:
        with structlog.testing.capture_logs() as logs:
            for i in range(5000):
                await junk.send(b"\xc1junk" + str(i).encode())
            while router.dropped < 5000:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(router.recv_batch(), 0.2)
            router.close()
    finally:
        junk.close(0)
        context.term()
    lines = [e for e in logs if e["event"] == "frame_dropped"]
    counted = sum(e["count"] for e in logs if e["event"] == "frames_dropped_unlogged")
    assert len(lines) <= 40
    assert len(lines) + counted == 5000


# ---- live attacks -------------------------------------------------------------


async def refused(dealer: Dealer) -> str:
    while True:
        frame = await asyncio.wait_for(dealer.recv(), 20)
        if isinstance(frame, Reject):
            return frame.reason
        assert not isinstance(frame, Welcome), "a forged hello was admitted"


async def test_rogue_on_plain_tcp_cannot_seat_models(tmp_path: Path, double_env) -> None:
    """The rogue connects first and claims made-up models and a local one: all refused."""
    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    config = scripted_config(
        tmp_path, ["a", "b", "c"], target=8, endpoint=endpoint, allow_unauthenticated=True
    )
    conductor = make_conductor(config, tmp_path / "out")
    context = zmq.asyncio.Context()
    reasons: list[str] = []

    async def rogue() -> None:
        while conductor.router is None:
            await asyncio.sleep(0.01)
        claims = [("r-x", "x"), ("r-y", "y"), ("r-z", "z"), ("r-w", "w"), ("a-7", "a")]
        claims += [("a-0", "a")]  # a local agent's id, without its token
        for agent_id, model in claims:
            dealer = Dealer(context, endpoint, agent_id)
            await dealer.send(hello(agent_id, model, ("generator", "reviewer"), capacity=4096))
            try:
                reasons.append(await refused(dealer))
            finally:
                dealer.close()

    attack = asyncio.create_task(rogue())
    try:
        summary = await asyncio.wait_for(conductor.run(), 120)
        await attack
    finally:
        context.term()
    assert len(reasons) == 6, reasons
    assert "not in this fleet" in reasons[0]
    assert "local agents only" in reasons[4]
    assert summary.refused_hellos >= 5  # a-0 may lose the identity race to the real one
    check_outputs(tmp_path / "out", summary)
    assert summary.counts["accepted"] >= 8
    assert models_in_records(tmp_path / "out") <= {"a", "b", "c"}
    assert set(summary.agents) == {"a-0", "b-0", "c-0"}


async def test_one_key_holder_cannot_claim_more_than_its_seat(tmp_path: Path, double_env) -> None:
    """The holder of the one authorised remote key opens several connections claiming
    several models (and the local ones): it gets the one seat its key names."""
    keys = tmp_path / "keys"
    create_keys(keys, ["remote-1"])
    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    config = scripted_config(
        tmp_path,
        ["a", "b"],
        target=6,
        remote=("remote",),
        endpoint=endpoint,
        curve_keys=keys,
        remote_keys={"remote": "remote-1"},
    )
    conductor = make_conductor(config, tmp_path / "out", expected_remote=1)
    curve = (keys / "agents" / "remote-1.key_secret", keys / "supervisor.key")
    context = zmq.asyncio.Context()
    reasons: list[str] = []

    async def key_holder() -> None:
        while conductor.router is None:
            await asyncio.sleep(0.01)
        claims = [("k-1", "x"), ("k-2", "y"), ("k-3", "a"), ("a-5", "b"), ("k-4", "remote")]
        for agent_id, model in claims:
            if model == "remote":  # a second agent on the key's one seat, once it is taken
                while not any(a.agent_id == "remote-0" for a in conductor.fleet.live()):
                    await asyncio.sleep(0.01)
            dealer = Dealer(context, endpoint, agent_id, curve=curve)
            await dealer.send(hello(agent_id, model, capacity=4096))
            try:
                reasons.append(await refused(dealer))
            finally:
                dealer.close()

    command = [sys.executable, "-m", "gra", "agent", "--connect", endpoint]
    command += ["--backend", "plugin", "--factory", "tests.doubles:scripted"]
    command += ["--model", "remote", "--agent-id", "remote-0"]
    command += ["--curve-secret", str(curve[0]), "--server-key", str(curve[1])]
    attack = asyncio.create_task(key_holder())
    agent = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        summary = await asyncio.wait_for(conductor.run(), 120)
        await attack
    finally:
        agent.kill()
        agent.wait()
        context.term()
    assert len(reasons) == 5, reasons
    assert all("not in this fleet" in r for r in reasons[:2]), reasons
    assert all("local agents only" in r for r in reasons[2:4]), reasons
    assert "already has its 1 agent" in reasons[4]
    assert summary.refused_hellos == 5
    assert set(summary.agents) == {"a-0", "b-0", "remote-0"}
    check_outputs(tmp_path / "out", summary)
    assert models_in_records(tmp_path / "out") <= {"a", "b", "remote"}


async def test_results_for_tasks_never_given_are_dropped(tmp_path: Path, double_env) -> None:
    """An admitted agent learns the task ids in use from its own tasks and sprays
    forged reviews for the ids around them, racing the real agents' results."""
    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    config = scripted_config(
        tmp_path,
        ["a", "b", "c"],
        target=20,
        remote=("rogue",),
        endpoint=endpoint,
        allow_unauthenticated=True,
    )
    conductor = make_conductor(config, tmp_path / "out", expected_remote=1)
    context = zmq.asyncio.Context()
    body = msgspec.Raw(forged_review())
    sent = [0]

    async def rogue() -> None:
        while conductor.router is None:
            await asyncio.sleep(0.01)
        dealer = Dealer(context, endpoint, "rogue-0")
        await dealer.send(hello("rogue-0", "rogue", ("reviewer",), capacity=8))
        newest = (1, 1)
        given: set[str] = set()  # its own tasks: a result for those would be its honest say
        try:
            while True:
                try:
                    frames = await asyncio.wait_for(dealer.recv_batch(), 0.005)
                except TimeoutError:
                    frames = []
                for frame in frames:
                    if isinstance(frame, Task):
                        given.add(frame.task_id)
                        found = re.fullmatch(r"r1-(\d+)\.t(\d+)", frame.task_id)
                        if found:
                            newest = max(newest, (int(found[2]), int(found[1])))
                        # Its own task goes back: the rogue only forges.
                        await dealer.send(TaskError(frame.task_id, "busy"))
                task, instance = newest
                for i in range(max(1, instance - 3), instance + 6):
                    for t in range(max(1, task - 10), task + 30):
                        task_id = f"r1-{i:06d}.t{t}"
                        if task_id not in given:
                            dealer.send_now(Result(task_id, body, Usage()))
                            sent[0] += 1
                await asyncio.sleep(0)
        finally:
            dealer.close()

    attack = asyncio.create_task(rogue())
    try:
        summary = await asyncio.wait_for(conductor.run(), 180)
    finally:
        attack.cancel()
        await asyncio.gather(attack, return_exceptions=True)
        context.term()
    assert sent[0] > 10_000
    check_outputs(tmp_path / "out", summary)
    # The rogue's forgeries can land only on its own seats (its spray can race a
    # task it is being given): what a record attributes to a model, that model wrote.
    for name in ("accepted.jsonl", "rejected.jsonl"):
        for line in (tmp_path / "out" / name).read_text().splitlines():
            record = json.loads(line)
            for review in record["reviews"]:
                assert (FORGED in review["feedback"]) == (review["model"] == "rogue"), record
            assert FORGED not in json.dumps(record["adjudication"])
    assert summary.late_results_ignored > 1000
