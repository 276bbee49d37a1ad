"""The scheduling core on its own: inputs in, actions out, with a clock the test
moves. No process, socket or file: each test runs in milliseconds."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gra.config import Config, load_config
from gra.data.pool import Pool, PoolItem
from gra.data.seeds import load_seeds
from gra.protocols.messages import (
    AGENT_EXIT_UNUSABLE,
    Cancel,
    Hello,
    Reject,
    Result,
    Task,
    Usage,
    Welcome,
)
from gra.protocols.roles import Checks, GeneratorOutput, ReviewOutput, Scores
from gra.supervisor.actions import (
    Action,
    AddCandidate,
    AppendJournal,
    FinishRound,
    Frames,
    Input,
    KillAgent,
    ProcessExited,
    RoundPostProcessed,
    Send,
    StartAgent,
    Tick,
)
from gra.supervisor.admission import Admission
from gra.supervisor.core import FleetFailed, SchedulingCore
from gra.supervisor.journal import InstanceFinished, InstanceStarted, TaskRetried
from gra.supervisor.sources import Generation
from tests.conftest import scripted_config

TOKEN = "run-token"
MODELS = ["a", "b", "c"]


def _config(
    tmp_path: Path, extra: str = "", rounds: int = 1, target: int = 1, startup_s: int = 60
) -> Config:
    path = scripted_config(tmp_path, MODELS, target=target, max_in_flight=1, rounds=rounds)
    text = path.read_text().replace("startup_timeout_s = 60", f"startup_timeout_s = {startup_s}")
    text += extra
    # The agents' annotations and the seeds' would add tasks these tests do not answer.
    path.write_text(text + "\n[annotate]\nenrich = false\nseeds = false\n")
    return load_config(path)


class Run:
    """A core with one local agent per model, and a clock that moves only when told."""

    def __init__(self, config: Config) -> None:
        assert config.seeds is not None
        seeds = load_seeds(config.resolve(config.seeds.path), config.seeds)
        pool = Pool(PoolItem(s.id, s.instruction, s.response, s.domain) for s in seeds)
        agents = {f"{m}-0": m for m in MODELS}
        self.core = SchedulingCore(
            config,
            Generation(config, pool, 1, 0, 0),
            Admission.from_config(config, agents, TOKEN),
            local_agents=agents,
            expected_agents=len(agents),
        )
        self.pool = pool
        self.now = 100.0
        self.started = self.core.start(self.now)

    def handle(self, *inputs: Input) -> list[Action]:
        return self.core.handle(inputs, self.now)

    def hello(self, agent_id: str, token: str = TOKEN) -> list[Action]:
        model = agent_id.split("-")[0]
        hello = Hello(agent_id, model, ("generator", "reviewer"), 1, "plugin", 1, "here")
        hello = msgspec.structs.replace(hello, token=token)
        identity = agent_id.encode()
        return self.handle(Frames([(identity, hello)], (identity,), self.now))

    def join_all(self) -> list[Action]:
        actions = [a for agent_id in sorted(self.core.local_agents) for a in self.hello(agent_id)]
        return actions + self.handle(Tick())

    def answer(self, send: Send, output: object) -> list[Action]:
        assert isinstance(send.message, Task)
        body = msgspec.Raw(msgspec.msgpack.encode(output))
        result = Result(send.message.task_id, body, Usage())
        return self.handle(Frames([(send.identity, result)], (send.identity,), self.now))


def _tasks(actions: list[Action], role: str | None = None) -> list[Send]:
    return [
        a
        for a in actions
        if isinstance(a, Send)
        and isinstance(a.message, Task)
        and (role is None or a.message.role == role)
    ]


def _journaled(actions: list[Action], kind: type) -> list[object]:
    return [a.entry for a in actions if isinstance(a, AppendJournal) and isinstance(a.entry, kind)]


ITEM = GeneratorOutput(
    ("a", "b", "c"), "Add two numbers in Python.", "def add(a, b):\n    return a + b"
)
GOOD = ReviewOutput(Checks(True, True, True), Scores(*[9] * 6), "fine", "none")


def test_agents_are_started_welcomed_and_given_work_once_the_fleet_is_up(tmp_path: Path) -> None:
    run = Run(_config(tmp_path))
    assert run.started == [StartAgent("a-0"), StartAgent("b-0"), StartAgent("c-0")]
    welcome = run.hello("a-0")
    assert [type(a.message) for a in welcome if isinstance(a, Send)] == [Welcome]
    refused = run.hello("b-0", token="forged")
    (reject,) = [a.message for a in refused if isinstance(a, Send)]
    assert isinstance(reject, Reject) and "token" in reject.reason
    assert not run.core.fleet_ready
    actions = run.hello("b-0") + run.hello("c-0") + run.handle(Tick())
    assert run.core.fleet_ready
    (generate,) = _tasks(actions, "generator")
    (started,) = _journaled(actions, InstanceStarted)
    assert generate.message.instance_id == started.instance


def test_a_fleet_that_never_comes_up_fails_the_run_when_the_startup_time_is_over(
    tmp_path: Path,
) -> None:
    run = Run(_config(tmp_path))
    run.hello("a-0")
    run.now += run.core.config.limits.startup_timeout_s - 1
    run.handle(Tick())  # not yet
    run.now += 2
    with pytest.raises(FleetFailed, match="did not come up in time"):
        run.handle(Tick())


def test_a_task_past_its_deadline_is_cancelled_and_sent_again(tmp_path: Path) -> None:
    run = Run(_config(tmp_path))
    (generate,) = _tasks(run.join_all(), "generator")
    run.now += run.core.config.limits.task_deadline_s + 6
    # Heartbeats keep the agents alive meanwhile; only the task is late.
    everyone = tuple(a.encode() for a in run.core.local_agents)
    run.handle(Frames([], everyone, run.now))
    actions = run.handle(Tick())
    cancels = [a for a in actions if isinstance(a, Send) and isinstance(a.message, Cancel)]
    assert [(c.identity, c.message.task_id) for c in cancels] == [
        (generate.identity, generate.message.task_id)
    ]
    (again,) = _tasks(actions, "generator")
    # The seat's model has one agent: the next attempt goes to it again.
    assert again.message.attempt == 2 and again.identity == generate.identity
    assert [e.task_id for e in _journaled(actions, TaskRetried)] == [generate.message.task_id]


def test_a_silent_local_agent_is_killed_and_its_task_moves(tmp_path: Path) -> None:
    run = Run(_config(tmp_path))
    (generate,) = _tasks(run.join_all(), "generator")
    bus = run.core.config.bus
    run.now += bus.heartbeat_interval_s * bus.heartbeat_misses + 1
    others = tuple(a.encode() for a in run.core.local_agents if a.encode() != generate.identity)
    # The others were heard from a moment ago, in a batch handled with the tick.
    actions = run.handle(Frames([], others, run.now - 0.1), Tick())
    assert KillAgent(generate.identity.decode()) in actions
    assert not _tasks(actions), "the seat waits for its model's agent to come back"
    # It does not: past the grace, with every model on the instance already, the
    # instance fails rather than wait for ever.
    run.now += run.core.config.limits.model_grace_s - 2
    assert not _journaled(run.handle(Frames([], others, run.now), Tick()), InstanceFinished)
    run.now += 3
    actions = run.handle(Frames([], others, run.now), Tick())
    (finished,) = _journaled(actions, InstanceFinished)
    assert finished.decision == "failed"


def test_an_agent_process_that_exits_is_restarted_and_an_unusable_model_stops_the_run(
    tmp_path: Path,
) -> None:
    run = Run(_config(tmp_path))
    (generate,) = _tasks(run.join_all(), "generator")
    agent_id = generate.identity.decode()
    actions = run.handle(ProcessExited(agent_id, 1))
    assert StartAgent(agent_id) in actions
    assert KillAgent(agent_id) not in actions  # it is gone already
    # Restarted, it says hello again and gets the task's next attempt.
    (again,) = _tasks(run.hello(agent_id), "generator")
    assert again.identity == generate.identity and again.message.attempt == 2
    with pytest.raises(FleetFailed) as failed:
        run.handle(ProcessExited(agent_id, AGENT_EXIT_UNUSABLE))
    assert failed.value.agent_id == agent_id


def test_a_finished_round_is_post_processed_once_and_the_next_round_draws_on_it(
    tmp_path: Path,
) -> None:
    run = Run(_config(tmp_path, rounds=2, target=1))
    (generate,) = _tasks(run.join_all(), "generator")
    actions = run.answer(generate, ITEM)
    for review in _tasks(actions, "reviewer"):
        actions += run.answer(review, GOOD)
    (candidate,) = [a for a in actions if isinstance(a, AddCandidate)]
    assert candidate.round == 1
    assert actions[-1] == FinishRound(1)
    # Nothing starts, and no second FinishRound, while the shell post-processes.
    assert not _tasks(run.handle(Tick()), "generator")
    assert not [a for a in run.handle(Tick()) if isinstance(a, FinishRound)]
    joining = PoolItem(candidate.record.id, ITEM.instruction, ITEM.response, "coding")
    actions = run.handle(RoundPostProcessed(1, [joining]))
    (started,) = _journaled(actions, InstanceStarted)
    assert started.round == 2 and _tasks(actions, "generator")
    assert run.pool.items[-1] == joining
    assert not run.core.done
    # The last round: once post-processed, nothing more starts and the run is done.
    (generate,) = _tasks(actions, "generator")
    actions = run.answer(generate, ITEM)
    for review in _tasks(actions, "reviewer"):
        actions += run.answer(review, GOOD)
    assert actions[-1] == FinishRound(2)
    actions = run.handle(RoundPostProcessed(2, []))
    assert actions == [], "the last round ended: nothing starts, nothing is post-processed again"
    assert run.core.done


def test_a_seat_waits_past_the_grace_for_a_local_agent_the_supervisor_is_restarting(
    tmp_path: Path,
) -> None:
    """A restarted local agent may take longer than ``model_grace_s`` to say hello
    again (an agent that serves its model starts a vLLM server first): its seats
    wait up to the startup timeout instead of failing their instances."""
    run = Run(_config(tmp_path, startup_s=300))
    (generate,) = _tasks(run.join_all(), "generator")
    agent_id = generate.identity.decode()
    others = tuple(a.encode() for a in run.core.local_agents if a != agent_id)
    assert StartAgent(agent_id) in run.handle(ProcessExited(agent_id, 1))
    limits = run.core.config.limits
    run.now += limits.model_grace_s + 5
    actions = run.handle(Frames([], others, run.now), Tick())
    assert not _journaled(actions, InstanceFinished), "the seat gave up on a restarting agent"
    (again,) = _tasks(run.hello(agent_id), "generator")
    assert again.identity == generate.identity and again.message.attempt == 2


def test_a_seat_stops_waiting_for_a_restarted_agent_that_never_comes_back(
    tmp_path: Path,
) -> None:
    run = Run(_config(tmp_path, startup_s=300))
    (generate,) = _tasks(run.join_all(), "generator")
    agent_id = generate.identity.decode()
    others = tuple(a.encode() for a in run.core.local_agents if a != agent_id)
    run.handle(ProcessExited(agent_id, 1))
    run.now += run.core.config.limits.startup_timeout_s + 1
    (finished,) = _journaled(run.handle(Frames([], others, run.now), Tick()), InstanceFinished)
    assert finished.decision == "failed"
