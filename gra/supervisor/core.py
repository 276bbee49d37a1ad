"""The scheduling core: every decision of a run, with no I/O of its own.

``SchedulingCore.handle(inputs, now)`` takes what happened (frames, a tick, a
process that ended, a round post-processed) and returns what to do (send a
frame, start or kill an agent, journal an entry, write a record, finish a
round). It owns the run's state (instances, queued and in-flight tasks, the
fleet, model health) and reads no clock: ``now`` comes with each call. The
protocol's own decisions come from ``InstanceState``; this module does the
waiting, timing out, retrying and handing over. The shell that owns sockets,
processes and files is ``gra.supervisor.conductor``; tests drive the core
alone with inputs and read its actions. (It logs through structlog, as
vLLM's engine core does: the log is a record of decisions, not an effect the
run depends on.)

A batch of inputs is handled before one dispatch: under load, work per input
shrinks as batches grow.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog

from gra.config import Config
from gra.errors import FleetFailed, RunError
from gra.log_budget import LogBudget
from gra.protocols.assignment import BalancedDraw
from gra.protocols.builtin_roles import BUILTIN_ROLES
from gra.protocols.checks import CheckStep
from gra.protocols.messages import (
    AGENT_EXIT_UNUSABLE,
    PROTOCOL_VERSION,
    Cancel,
    Goodbye,
    Heartbeat,
    Hello,
    Reject,
    Result,
    Task,
    TaskError,
    Usage,
    Welcome,
)
from gra.protocols.peer_review import (
    Adjudicate,
    AdjudicatorDrawn,
    Annotate,
    AnnotatorDrawn,
    CheckerDrawn,
    DrawAdjudicator,
    DrawAnnotator,
    DrawChecker,
    Generate,
    InstanceEvent,
    InstanceState,
    Outcome,
    PlanVerification,
    ProtocolError,
    Replaced,
    Review,
    RunCheck,
    TaskStep,
    VerificationPlanned,
    Verify,
    WriteTests,
    step_seat,
)
from gra.protocols.reproducible import step_seed
from gra.protocols.rolespec import role_table
from gra.rundir import AgentState
from gra.supervisor.actions import (
    Action,
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
    Unreachable,
)
from gra.supervisor.admission import Admission, Member
from gra.supervisor.busy import BusyWindow
from gra.supervisor.fleet import AgentInfo, Fleet
from gra.supervisor.health import ModelHealth
from gra.supervisor.journal import (
    InstanceChanged,
    InstanceFinished,
    InstanceStarted,
    TaskRetried,
)
from gra.supervisor.outputs import RunStats
from gra.supervisor.queues import Key, TaskQueues
from gra.supervisor.sources import Finished, Generation, InstanceSource, SeedAnnotations
from gra.verify.domain import verifiable_domain

log = structlog.get_logger("gra.supervisor")

_encoder = msgspec.msgpack.Encoder()
_DEADLINE_GRACE_S = 5.0
# Without max_in_flight: instances in progress per task slot of the live fleet, at most.
_AUTO_IN_FLIGHT_PER_SLOT = 4


def _task_key(state: InstanceState, step: TaskStep) -> tuple[int, str, str, int]:
    """(review round, role, model, seat): one task per step of an instance."""
    return (state.round, step.role, step.model, step_seat(step))


@dataclass
class PendingTask:
    task_id: str
    instance_id: str
    step: TaskStep
    attempt: int = 1
    avoid: set[str] = field(default_factory=set)
    # When the step's model was first found with no live agent.
    hostless_since: float | None = None
    # The review round the step belongs to: a revision makes it moot.
    review_round: int = 1

    @property
    def key(self) -> Key:
        return (self.step.model, self.step.role)


def _pending_key(pending: PendingTask) -> tuple[int, str, str, int]:
    """The instance's task key for ``pending``, in the review round it was made for."""
    step = pending.step
    return (pending.review_round, step.role, step.model, step_seat(step))


@dataclass
class InflightTask:
    pending: PendingTask
    agent: AgentInfo
    deadline: float


@dataclass
class LiveInstance:
    state: InstanceState
    synthesis_round: int
    seed_ids: list[str]
    kind: str = "item"
    # (review round, role, model, seat) -> id of the task doing that step now
    tasks: dict[tuple[int, str, str, int], str] = field(default_factory=dict)
    # Since when a single seat (adjudicator, annotator) waits for its only models to return.
    seat_wait_since: float | None = None


@dataclass(frozen=True)
class Progress:
    accepted: int
    finished: int
    started: int
    target: int
    max_instances: int
    agents_alive: int
    in_flight_tasks: int


@dataclass
class Counters:
    """How far the run has come (carried over by a resumed run)."""

    started: int = 0
    finished: int = 0


class SchedulingCore:
    def __init__(
        self,
        config: Config,
        source: InstanceSource,
        admission: Admission,
        *,
        checks: tuple[CheckStep[Any], ...] = (),
        annotations: SeedAnnotations | None = None,
        local_agents: Collection[str] = (),
        expected_agents: int = 0,
        stats: RunStats | None = None,
        counters: Counters | None = None,
        unfinished: Sequence[tuple[InstanceStarted, list[InstanceEvent]]] = (),
    ) -> None:
        self.config = config
        self.source = source
        self.annotations = annotations
        self.checks = checks
        # Every role the core may dispatch: its output type and the event its output becomes.
        self.roles = role_table(*BUILTIN_ROLES.values(), *(check.role for check in checks))
        self.admission = admission
        self.local_agents = frozenset(local_agents)
        self.expected_agents = expected_agents
        self.stats = stats or RunStats()
        self.counters = counters or Counters()
        self._unfinished = list(unfinished)
        self.rng = random.Random(config.run.seed + self.counters.started)
        self.max_restarts = config.limits.agent_restarts
        self.fleet = Fleet()
        self.health = ModelHealth(
            config.limits.breaker_failures,
            config.limits.breaker_backoff_s,
            max(config.limits.breaker_backoff_s, 600.0),
        )
        self.assignment = BalancedDraw(config.protocol.assignment_slack)
        self.instances: dict[str, LiveInstance] = {}
        self.pending: TaskQueues[PendingTask] = TaskQueues()
        self.inflight: dict[str, InflightTask] = {}
        self._members: dict[bytes, Member] = {}
        self._log_budget = LogBudget()
        # Results of this batch whose agents got their credit back before
        # processing, by (task, the agent it was sent to).
        self._settled: dict[tuple[str, bytes], InflightTask] = {}
        self._task_ids = itertools.count(1)
        self.restarts: dict[str, int] = {}
        # Local agents started again and not yet back, with the model each hosts.
        self._restarting: dict[str, str] = {}
        # Instances whose adjudicator or annotator seat waits for a model to come back.
        self._seat_waiting: set[str] = set()
        self.fleet_ready = False
        self._fleet_deadline = 0.0
        self._stop_requested = False
        self._round_finishing = False
        self._all_rounds_done = False
        self.busy = BusyWindow()
        self._now = 0.0
        self._out: list[Action] = []

    # ---- the interface ------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The run begins: start the local agents; the fleet has until the startup
        timeout to come up."""
        self._fleet_deadline = now + self.config.limits.startup_timeout_s
        return [StartAgent(agent_id) for agent_id in sorted(self.local_agents)]

    def settle(self, inputs: Sequence[Input], now: float) -> list[Action]:
        """The first part of handling ``inputs``, for a shell that can act at once:
        the agents whose results are in ``inputs`` get their credit back and are
        sent the tasks already waiting, so they work while the batch is processed.
        ``handle`` does it too (a second time changes nothing)."""
        self._now = now
        self._out = []
        for item in inputs:
            if type(item) is Frames:
                self._hear(item)
        if self._settle_results(inputs):
            self._dispatch()
        out, self._out = self._out, []
        return out

    def handle(self, inputs: Sequence[Input], now: float) -> list[Action]:
        """Everything ``inputs`` lead to, in order. Raises RunError when the run
        cannot go on (the fleet is gone, no model left in rotation)."""
        early = self.settle(inputs, now)
        self._out = early
        for item in inputs:
            match item:
                case Frames(frames=frames, keys=keys):
                    for identity, frame in frames:
                        self._on_frame(identity, frame, keys)
                case Tick():
                    self._on_tick()
                case Unreachable(identity=identity):
                    self._agent_lost(identity, "unreachable")
                case ProcessExited(agent_id=agent_id, code=code):
                    self._agent_process_ended(agent_id, code)
                case RoundPostProcessed():
                    self._next_round(item)
        self._pump()
        self._finish_round_if_due()
        out, self._out = self._out, []
        return out

    @property
    def done(self) -> bool:
        """The last round reached its target, or has nothing left to start or finish.

        Instances still in progress when the last round ends are not waited
        for: their every step is in the journal, so `--resume` (with a higher
        target) carries them on, and the summary counts them as unfinished.
        Earlier rounds drain instead, because the next round builds on them.
        """
        if self._stop_requested or self._all_rounds_done:
            return True
        return self.fleet_ready and not self.source.rounds and self._round_over()

    def request_stop(self) -> None:
        """Stop as if the target were reached: what is in progress stays resumable."""
        self._stop_requested = True

    @property
    def accepted(self) -> int:
        """Accepted so far toward the target."""
        return self.source.accepted()

    def progress(self) -> Progress:
        return Progress(
            self.stats.counts["accepted"] if self._all_rounds_done else self.accepted,
            self.counters.finished,
            self.counters.started,
            self.source.target,
            self.source.max_instances,
            len(self.fleet.live()),
            len(self.inflight),
        )

    # ---- what the sources draw with ------------------------------------------

    def models(self, role: str) -> set[str]:
        """Models with a live agent for ``role`` that are in rotation (see ModelHealth)."""
        out = self.health.out_of_rotation(self._now)
        models = self.fleet.models(role)
        return models - out if out else models

    def draw_roles(
        self, generators: list[str], reviewers: list[str], role: str
    ) -> tuple[str, tuple[str, ...]]:
        return self.assignment.draw(
            generators,
            self.config.protocol,
            self.rng,
            reviewer_models=reviewers,
            free_generators=self._free_models(generators, role),
            free_reviewers=self._free_models(reviewers, "reviewer"),
        )

    def draw_committee(self, reviewers: list[str]) -> tuple[str, ...]:
        size = self.config.protocol.committee_size(len(reviewers), with_generator=False)
        return self.assignment.committee(
            reviewers, size, self.rng, self._free_models(reviewers, "reviewer")
        )

    # ---- inputs ---------------------------------------------------------------

    def _hear(self, frames: Frames) -> None:
        """Liveness is stamped at arrival, before anything is handled: a backlog in
        the shell must not make a healthy agent look silent."""
        for identity in frames.heard:
            agent = self.fleet.get(identity)
            if agent is not None and agent.alive and frames.at > agent.last_seen:
                agent.last_seen = frames.at

    def _settle_results(self, inputs: Sequence[Input]) -> bool:
        """Hand back the credit of every agent whose result is in ``inputs``.

        The freed agents are then refilled from the tasks already waiting, so an
        agent's next task does not wait while the batch is processed:
        processing happens while the agents already work. Returns whether any
        credit came back.
        """
        for item in inputs:
            if type(item) is not Frames:
                continue
            for identity, frame in item.frames:
                if type(frame) is Result:
                    flight = self._take_inflight(frame.task_id, identity)
                    if flight is not None:
                        self._settled[(frame.task_id, identity)] = flight
        return bool(self._settled)

    def _send(self, identity: bytes, message: Any) -> None:
        self._out.append(Send(identity, message))

    def _journal(self, entry: Any) -> None:
        self._out.append(AppendJournal(entry))

    def _on_frame(self, identity: bytes, frame: Any, keys: dict[bytes, str | None]) -> None:
        match frame:
            case Hello() as hello:
                self._on_hello(identity, hello, keys.get(identity))
            case Heartbeat():
                pass
            case Result() as result:
                self._on_result(identity, result)
            case TaskError(task_id=task_id, reason=reason, usage=usage):
                self._on_task_error(identity, task_id, reason, usage)
            case Goodbye(reason=reason):
                self._agent_lost(identity, f"goodbye: {reason}")
            case _:
                if self._may_log("unexpected_frame"):
                    log.warning(
                        "unexpected_frame", kind=type(frame).__name__, peer=identity[:64].hex()
                    )

    def _may_log(self, event: str) -> bool:
        """Whether a line of ``event`` fits the log budget (a flood logs a count)."""
        allowed, missed = self._log_budget.take(event)
        if missed:
            log.warning("log_lines_suppressed", of=event, count=missed)
        return allowed

    def _on_hello(self, identity: bytes, hello: Hello, key: str | None) -> None:
        if hello.version != PROTOCOL_VERSION:
            self._send(identity, Reject(f"protocol version {hello.version} != {PROTOCOL_VERSION}"))
            return
        if identity.decode(errors="replace") != hello.agent_id:
            self._send(identity, Reject("agent_id does not match the socket identity"))
            return
        seat = self.admission.admit(hello, key, identity, self._live_members())
        if isinstance(seat, str):
            self.stats.refused_hellos += 1
            if self._may_log("agent_refused"):
                log.warning(
                    "agent_refused",
                    agent=hello.agent_id[:64],
                    model=hello.model[:64],
                    key=key,
                    why=seat,
                )
            self._send(identity, Reject(f"not admitted: {seat}"))
            return
        self._members[identity] = Member(identity, hello.agent_id, seat)
        self._restarting.pop(hello.agent_id, None)
        info, lost = self.fleet.register(identity, hello, self._now)
        for task_id in lost:
            self._retry(task_id, "agent re-registered and lost its tasks")
        self.pending.mark(info.keys)
        self._send(
            identity,
            Welcome(self.config.bus.heartbeat_interval_s, self.config.bus.heartbeat_misses),
        )
        log.info(
            "agent_registered",
            agent=info.agent_id,
            model=info.model,
            roles=sorted(info.roles),
            capacity=info.capacity,
            host=info.host,
            node=info.node or None,
        )

    def _task_failed(self, agent: AgentInfo, reason: str) -> None:
        """Count a failure against the model; one that keeps failing leaves the rotation."""
        if self.health.failure(agent.model, reason, self._now):
            log.warning(
                "model_out_of_rotation",
                model=agent.model,
                why=self.health.describe(agent.model),
            )
            self.pending.mark_all()  # its queued tasks go to other models

    def _check_health(self) -> None:
        """Stop with a clear error when the models left in rotation cannot run the protocol."""
        out = self.health.out_of_rotation(self._now)
        if not out or not self.fleet_ready:
            return
        maker = "generator" if self.source.rounds else "reviewer"
        in_rotation = self.models("reviewer") | self.models(maker)
        if len(in_rotation) < 2:
            raise RunError(
                "; ".join(self.health.describe(m) for m in sorted(out))
                + "; it is out of rotation and no other model can take its roles, so the "
                "run stops here (fix the model, then continue with --resume)"
            )

    def _live_members(self) -> list[Member]:
        return [
            m
            for identity, m in self._members.items()
            if (agent := self.fleet.get(identity)) is not None and agent.alive
        ]

    def _on_result(self, identity: bytes, result: Result) -> None:
        # Only the agent the task was sent to can settle it: a result for the
        # same id from anyone else is ignored, whatever the order in the batch.
        flight = self._settled.pop((result.task_id, identity), None) or self._take_inflight(
            result.task_id, identity
        )
        if flight is None:
            self.stats.late_results += 1
            if self._may_log("late_result_ignored"):
                log.info("late_result_ignored", task_id=result.task_id[:64])
            return
        step = flight.pending.step
        self.stats.add_usage(step.model, step.role, result.usage)
        flight.agent.completed += 1
        spec = self.roles[step.role]
        try:
            output = spec.decoder.decode(bytes(result.body))
        except msgspec.DecodeError as exc:
            self._task_failed(flight.agent, f"undecodable result: {exc}")
            self._requeue(flight.pending, flight.agent, f"undecodable result: {exc}")
            return
        self.health.success(flight.agent.model)
        instance = self.instances.get(flight.pending.instance_id)
        if instance is None:
            return
        key = _pending_key(flight.pending)
        if instance.tasks.get(key) != flight.pending.task_id:
            # A step the instance has moved past (an earlier review round): its
            # output belongs to another item and is never applied to this one.
            self.stats.late_results += 1
            return
        del instance.tasks[key]
        self._apply(instance, spec.to_event(instance.state, step, output))
        self._advance(instance)

    def _on_task_error(self, identity: bytes, task_id: str, reason: str, usage: Usage) -> None:
        flight = self._take_inflight(task_id, identity)
        if flight is None:
            return
        step = flight.pending.step
        self.stats.add_usage(step.model, step.role, usage)
        flight.agent.failed += 1
        log.warning(
            "task_failed", task_id=task_id, agent=flight.agent.agent_id, reason=reason[:300]
        )
        self._task_failed(flight.agent, reason)
        self._requeue(flight.pending, flight.agent, reason)

    def _on_tick(self) -> None:
        now = self._now
        timeout = self.config.bus.heartbeat_interval_s * self.config.bus.heartbeat_misses
        for agent in self.fleet.expired(now, timeout):
            self._agent_lost(agent.identity, "missed heartbeats")
        self.pending.mark_all()  # tasks waiting on a vanished model are handed over in time
        self._draw_waiting_seats()  # so do seats waiting for one
        for task_id, flight in list(self.inflight.items()):
            if now > flight.deadline:
                self._send(flight.agent.identity, Cancel(task_id))
                self._take_inflight(task_id, flight.agent.identity)
                self._task_failed(flight.agent, "task deadline passed")
                self._requeue(flight.pending, flight.agent, "task deadline passed")
        self._check_fleet(now)
        self._check_health()
        self.busy.sample(now, self.fleet.live())

    def _check_fleet(self, now: float) -> None:
        models = self.fleet.models("generator") | self.fleet.models("reviewer")
        registered = len(self.fleet.live())
        if not self.fleet_ready:
            if registered >= self.expected_agents and len(models) >= 2:
                self.fleet_ready = True
                log.info("fleet_ready", agents=registered, models=sorted(models))
                self._restore_instances()
            elif now > self._fleet_deadline:
                missing = self.admission.missing(self._live_members())
                if len(models) >= 2:
                    log.warning(
                        "fleet_incomplete_starting_anyway", agents=registered, missing=missing
                    )
                    self.fleet_ready = True
                    self._restore_instances()
                else:
                    what = "the fleet did not come up in time"
                    if missing:
                        what += "; missing: " + "; ".join(missing)
                    raise FleetFailed(what)
            elif self.local_agents and all(
                self.restarts.get(a, 0) >= self.max_restarts for a in self.local_agents
            ):
                raise FleetFailed("every agent process exited")
        elif not models and now > self._fleet_deadline:
            raise RunError("every agent is gone; resume with --resume once the fleet is back")
        elif models:
            self._fleet_deadline = now + self.config.limits.startup_timeout_s

    def _agent_process_ended(self, agent_id: str, code: int) -> None:
        model = self._restarting.pop(agent_id, None)
        for agent in list(self.fleet.agents.values()):
            if agent.agent_id == agent_id:
                model = agent.model
                self._agent_lost(agent.identity, f"process exited with code {code}")
        if self._stop_requested or agent_id not in self.local_agents:
            return
        if code == AGENT_EXIT_UNUSABLE:
            # Its model cannot be used: a restart would only fail the same way.
            raise FleetFailed(f"agent {agent_id}: unusable model", agent_id)
        restarts = self.restarts.get(agent_id, 0)
        if restarts < self.max_restarts:
            self.restarts[agent_id] = restarts + 1
            log.warning("agent_restarting", agent=agent_id, exit_code=code, restart=restarts + 1)
            self._out.append(StartAgent(agent_id))
            if model is not None:
                self._restarting[agent_id] = model
        else:
            self.restarts[agent_id] = restarts
            log.error("agent_gave_up", agent=agent_id, exit_code=code)

    def _agent_lost(self, identity: bytes, why: str) -> None:
        agent = self.fleet.get(identity)
        lost = self.fleet.mark_dead(identity)
        if agent is None or (not lost and not agent.alive and why == "unreachable"):
            return
        self.stats.agents_lost += 1
        log.warning("agent_lost", agent=agent.agent_id, why=why, tasks=len(lost))
        if agent.agent_id in self.local_agents and not why.startswith("process exited"):
            # A hung local agent (stopped, deadlocked) is ended so it can be restarted.
            self._out.append(KillAgent(agent.agent_id))
        for task_id in lost:
            flight = self.inflight.pop(task_id, None)
            if flight is not None:
                self._requeue(flight.pending, agent, f"agent {agent.agent_id} lost: {why}")

    def _retry(self, task_id: str, reason: str) -> None:
        flight = self.inflight.pop(task_id, None)
        if flight is not None:
            self._requeue(flight.pending, flight.agent, reason)

    def _take_inflight(self, task_id: str, identity: bytes) -> InflightTask | None:
        flight = self.inflight.get(task_id)
        if flight is None or flight.agent.identity != identity:
            return None
        del self.inflight[task_id]
        self._release(flight.agent, task_id)
        return flight

    def _release(self, agent: AgentInfo, task_id: str) -> None:
        self.fleet.release(agent, task_id)
        self.pending.mark(agent.keys)

    # ---- protocol ----------------------------------------------------------

    def _apply(self, instance: LiveInstance, event: InstanceEvent) -> None:
        review_round = instance.state.round
        try:
            instance.state.apply(event)
        except ProtocolError as exc:
            log.warning("event_refused", instance_id=instance.state.instance_id, reason=str(exc))
            return
        self._journal(InstanceChanged(instance.state.instance_id, event))
        if instance.state.round != review_round:
            # A revision: what is still running for the rejected item is moot.
            self._drop_tasks(instance, before_round=instance.state.round)

    def _advance(self, instance: LiveInstance) -> None:
        state = instance.state
        while True:
            for step in state.next_steps():
                match step:
                    case Outcome():
                        self._finish(instance)
                        return
                    case DrawAdjudicator(excluded=excluded):
                        adjudicator = self._draw_waiting_seat(instance, "adjudicator", excluded)
                        if adjudicator is False:
                            return
                        self._apply(instance, AdjudicatorDrawn(adjudicator))
                        break
                    case DrawAnnotator():
                        annotator = self._draw_waiting_seat(instance, "annotator")
                        if annotator is False:
                            return
                        self._apply(instance, AnnotatorDrawn(annotator))
                        break
                    case PlanVerification(excluded=excluded):
                        self._apply(instance, self._plan_verification(state, excluded))
                        break
                    case DrawChecker(check=check, role=role, excluded=excluded):
                        checker = self._draw_waiting_seat(instance, role, excluded)
                        if checker is False:
                            return
                        self._apply(instance, CheckerDrawn(check, checker))
                        break
                    case (
                        Generate()
                        | Review()
                        | Adjudicate()
                        | Annotate()
                        | WriteTests()
                        | Verify()
                        | RunCheck()
                    ):
                        key = _task_key(state, step)
                        if key not in instance.tasks:
                            task = PendingTask(
                                self._new_task_id(state.instance_id),
                                state.instance_id,
                                step,
                                review_round=state.round,
                            )
                            instance.tasks[key] = task.task_id
                            self.pending.push(task)
            else:
                return

    def _plan_verification(
        self, state: InstanceState, excluded: frozenset[str]
    ) -> VerificationPlanned:
        """What the item is checked as, which models write its test sets (seats
        filled from the other models in random order, a model taking several seats
        when there are fewer models than seats) and which verifier runs them."""
        policy = self.config.verify
        assert state.item is not None
        if policy.recognise:
            kind = verifiable_domain(state.item.instruction, state.item.response, state.domain)
        else:
            kind = state.domain if state.domain in ("coding", "math") else None
        if kind not in policy.domains:
            return VerificationPlanned(None)
        role = "solver" if kind == "math" else "tester"
        models = sorted(self.models(role) - excluded)
        self.rng.shuffle(models)
        testers = tuple(models[i % len(models)] for i in range(policy.test_sets)) if models else ()
        return VerificationPlanned(kind, testers, self._draw_seat("verifier"))

    def _finish(self, instance: LiveInstance) -> None:
        state = instance.state
        assert state.outcome is not None
        if instance.kind == "seed_annotation":
            assert self.annotations is not None
            if state.annotation is None:
                log.warning("seed_not_annotated", seed=instance.seed_ids[0], reason=state.outcome)
            self._out += self.annotations.finish(state, instance.seed_ids[0])
            stage = "seed_annotation"
        else:
            done = Finished(state, instance.synthesis_round, instance.seed_ids)
            self._out += self.source.finish(done, self.stats)
            stage = state.outcome.stage
            self.counters.finished += 1
            log.info(
                "instance_finished",
                instance_id=state.instance_id,
                decision=state.outcome.decision,
                stage=state.outcome.stage,
                reason=state.outcome.reason,
            )
        self._journal(InstanceFinished(state.instance_id, state.outcome.decision, stage))
        del self.instances[state.instance_id]
        self._drop_tasks(instance)

    def _drop_tasks(self, instance: LiveInstance, before_round: int | None = None) -> None:
        """A finished instance's tasks still running (a review after an early reject) are
        cancelled, so their agents' credit goes to live work; with ``before_round``, only
        those of the review rounds before it (a revised item's tests, say)."""
        for key, task_id in list(instance.tasks.items()):
            if before_round is not None and key[0] >= before_round:
                continue
            del instance.tasks[key]
            flight = self.inflight.pop(task_id, None)
            if flight is not None:
                self._release(flight.agent, task_id)
                self._send(flight.agent.identity, Cancel(task_id))

    def _requeue(self, pending: PendingTask, agent: AgentInfo, reason: str) -> None:
        instance = self.instances.get(pending.instance_id)
        if instance is None or instance.tasks.get(_pending_key(pending)) != pending.task_id:
            return  # finished, or moved past this step
        self.stats.retries += 1
        self._journal(TaskRetried(pending.instance_id, pending.task_id, agent.agent_id, reason))
        if pending.attempt > self.config.limits.task_retries:
            step = pending.step
            instance.tasks.pop(_pending_key(pending), None)
            why = f"{step.role} task failed {pending.attempt} times; last: {reason[:500]}"
            self._apply(instance, self.roles[step.role].give_up(step, why))
            self._advance(instance)
            return
        retry = PendingTask(
            self._new_task_id(pending.instance_id),
            pending.instance_id,
            pending.step,
            pending.attempt + 1,
            pending.avoid | {agent.agent_id},
            review_round=pending.review_round,
        )
        instance.tasks[_pending_key(pending)] = retry.task_id
        self.pending.push(retry, front=True)

    def _new_task_id(self, instance_id: str) -> str:
        return f"{instance_id}.t{next(self._task_ids)}"

    # ---- rounds ------------------------------------------------------------

    def _round_over(self) -> bool:
        if self.accepted >= self.source.target:
            return True
        return not self.instances and self.source.started_in_round >= self.source.max_instances

    def _finish_round_if_due(self) -> None:
        """Ask for a finished synthesis round's post-processing (once)."""
        source = self.source
        if (
            not source.rounds
            or self._round_finishing
            or self._all_rounds_done
            or self._stop_requested
            or not self.fleet_ready
            or not self._round_over()
        ):
            return
        assert isinstance(source, Generation)
        if self.instances and not source.last_round:
            return  # drain: the next round builds on this one
        self._round_finishing = True
        self._out.append(FinishRound(source.round))

    def _next_round(self, done: RoundPostProcessed) -> None:
        source = self.source
        assert isinstance(source, Generation) and done.round == source.round
        self._round_finishing = False
        source.pool.extend(done.joining)
        for agent in self.fleet.live():
            # The shell was busy post-processing, not they.
            agent.last_seen = max(agent.last_seen, self._now)
        self._all_rounds_done = source.last_round  # then nothing more starts
        source.round_post_processed()

    # ---- starting instances and dispatching tasks ---------------------------

    def _pump(self) -> None:
        if (
            not self.fleet_ready
            or self._stop_requested
            or self._round_finishing
            or self._all_rounds_done
        ):
            return
        while self._can_start():
            if not self._start_instance():
                break
        self._dispatch()

    def _can_start(self) -> bool:
        if not self._room_for_an_instance():
            return False
        if self.annotations is not None and self.annotations.busy:
            return bool(self.annotations.waiting)  # generation waits for an annotated pool
        return (
            self.source.started_in_round < self.source.max_instances
            and self.accepted < self.source.target
        )

    def _room_for_an_instance(self) -> bool:
        """``max_in_flight`` if set; otherwise back-pressure from the fleet itself: start
        while fewer tasks wait than the live agents can hold, so every freed slot
        finds work at once, with at most ``_AUTO_IN_FLIGHT_PER_SLOT`` instances per slot."""
        limit = self.config.run.max_in_flight
        if limit is not None:
            return len(self.instances) < limit
        capacity = self.fleet.capacity
        return (
            len(self.pending) < capacity
            and len(self.instances) < _AUTO_IN_FLIGHT_PER_SLOT * capacity
        )

    def _start_instance(self) -> bool:
        if self.annotations is not None and self.annotations.waiting:
            started = self.annotations.start(self)
        else:
            started = self.source.start(self, self.counters.started + 1)
            if started is not None:
                self.counters.started += 1
        if started is None:
            return False
        self._journal(started)
        self._open(started, [])
        return True

    def _draw_seat(self, role: str, excluded: Collection[str] = ()) -> str | None:
        """A random live model for a single-seat role, balanced like every other draw."""
        candidates = self.models(role) - set(excluded)
        return self.assignment.seat(role, candidates, self.rng, self._free_models(candidates, role))

    def _draw_waiting_seat(
        self, instance: LiveInstance, role: str, excluded: Collection[str] = ()
    ) -> str | Literal[False] | None:
        """``_draw_seat``, with the grace every other role gets: while no model can take
        the seat now but one that could is known to the fleet (its agent restarting, or
        out of rotation), the seat waits up to ``model_grace_s`` for it (False: wait;
        the ticker draws again). None: no model can take it."""
        model = self._draw_seat(role, excluded)
        now = self._now
        absent = {a.model for a in self.fleet.agents.values() if role in a.roles} - set(excluded)
        if model is not None or not absent:
            instance.seat_wait_since = None
            self._seat_waiting.discard(instance.state.instance_id)
            return model
        if instance.seat_wait_since is None:
            instance.seat_wait_since = now
            log.warning(
                "seat_waits_for_model",
                instance_id=instance.state.instance_id,
                role=role,
                models=sorted(absent),
            )
        if now - instance.seat_wait_since < max(self._grace_s(m) for m in absent):
            self._seat_waiting.add(instance.state.instance_id)
            return False
        instance.seat_wait_since = None
        self._seat_waiting.discard(instance.state.instance_id)
        return None

    def _draw_waiting_seats(self) -> None:
        """Draw again the seats that wait for a model to come back."""
        for instance_id in sorted(self._seat_waiting):
            instance = self.instances.get(instance_id)
            if instance is None:
                self._seat_waiting.discard(instance_id)
            else:
                self._advance(instance)

    def _grace_s(self, model: str) -> float:
        """How long a seat waits for ``model`` to come back: ``model_grace_s``, or, while
        a local agent hosting it is being restarted, the startup timeout (an agent
        that serves its model starts its vLLM server again before it says hello)."""
        limits = self.config.limits
        if model in self._restarting.values():
            return max(limits.model_grace_s, limits.startup_timeout_s)
        return limits.model_grace_s

    def _free_models(self, models: Collection[str], role: str) -> set[str]:
        """Models whose agents could start a ``role`` task now, after the tasks queued for them."""
        return {
            m for m in models if self.fleet.free_credit(m, role) > self.pending.waiting((m, role))
        }

    def _open(self, started: InstanceStarted, events: list[InstanceEvent]) -> None:
        item = started.kind == "item"
        state = InstanceState(
            started.instance,
            started.domain,
            self.config.protocol,
            started.generator,
            started.reviewers,
            started.examples,
            started.original,
            started.inspirations,
            enrich=self.source.enrich or not item,
            labels=self.config.annotate.labels,
            verify=self.config.verify if item else None,
            checks=self.checks if item else (),
        )
        instance = LiveInstance(state, started.round, list(started.seed_ids), started.kind)
        self.instances[started.instance] = instance
        for event in events:
            state.apply(event)
        self._advance(instance)

    def _restore_instances(self) -> None:
        if not self._unfinished:
            return
        count = len(self._unfinished)
        for started, events in self._unfinished:
            if started.kind == "seed_annotation":
                if self.annotations is not None:
                    self.annotations.again(started.seed_ids[0])
                continue
            try:
                self._open(started, events)
            except ProtocolError as exc:
                log.warning("resume_replay_failed", instance_id=started.instance, reason=str(exc))
                self.instances.pop(started.instance, None)
        self._unfinished = []
        log.info("resumed", instances=count, finished=self.counters.finished)

    def _dispatch(self) -> None:
        while keys := self.pending.take_dirty():
            for key in keys:
                self._dispatch_queue(key)

    def _dispatch_queue(self, key: Key) -> None:
        """Send the queue's tasks, in order, while an agent of its (model, role) has credit."""
        model, role = key
        hostless: list[PendingTask] = []
        while (pending := self.pending.pop(key)) is not None:
            instance = self.instances.get(pending.instance_id)
            if instance is None or instance.tasks.get(_pending_key(pending)) != pending.task_id:
                continue  # the instance finished or moved on
            in_rotation = self.health.in_rotation(model, self._now)
            # Out of rotation: handed over like a model with no host.
            agent = self.fleet.pick(model, role, pending.avoid) if in_rotation else None
            if agent is None:
                if in_rotation and self.fleet.hosts(model, role):
                    self.pending.restore(pending)  # all busy: wait for credit
                    break
                if not self._hand_over(instance, pending):
                    hostless.append(pending)
                continue
            pending.hostless_since = None
            deadline_s = self.config.limits.task_deadline_s
            task = Task(
                pending.task_id,
                pending.instance_id,
                role,
                pending.attempt,
                deadline_s,
                msgspec.Raw(_encoder.encode(pending.step.request)),
                step_seed(self.config.run.seed, instance.state, pending.step, pending.attempt),
            )
            self._send(agent.identity, task)
            self.fleet.assign(agent, pending.task_id)
            self.inflight[pending.task_id] = InflightTask(
                pending, agent, self._now + deadline_s + _DEADLINE_GRACE_S
            )
        for pending in reversed(hostless):
            self.pending.restore(pending)

    def _hand_over(self, instance: LiveInstance, pending: PendingTask) -> bool:
        """No live agent hosts the step's model: give the role to an uninvolved model,
        or, if there is none, wait ``model_grace_s`` for the model to come back, then
        fail the instance. Returns False while the task should keep waiting."""
        step = pending.step
        state = instance.state
        spec = self.roles[step.role]
        if spec.handover == "any":
            taken = {step.model}
        elif spec.handover == "not_generator":
            taken = {step.model, *([state.generator] if state.generator else [])}
        else:
            taken = state.involved
        candidates = sorted(self.models(step.role) - taken)
        now = self._now
        if pending.hostless_since is None:
            pending.hostless_since = now
        if not candidates and now - pending.hostless_since < self._grace_s(step.model):
            return False
        instance.tasks.pop(_pending_key(pending), None)
        if candidates:
            new = self.rng.choice(candidates)
            log.warning(
                "role_handed_over",
                instance_id=instance.state.instance_id,
                role=step.role,
                old=step.model,
                new=new,
            )
            self._apply(instance, Replaced(step.model, new, step.role if spec.names_seat else ""))
        else:
            self._apply(
                instance, spec.give_up(step, f"no live model left for the {step.role} role")
            )
        self._advance(instance)
        return True

    # ---- reporting ---------------------------------------------------------

    def summary_fields(self, now: float) -> dict[str, Any]:
        """The summary's live part: agents, queues, model health, busy time."""
        agents = {
            a.agent_id: AgentState(
                model=a.model,
                roles=sorted(a.roles),
                alive=a.alive,
                completed=a.completed,
                failed=a.failed,
                in_flight=len(a.in_flight),
                capacity=a.capacity,
                seconds_since_heard=round(now - a.last_seen, 1),
                restarts=self.restarts.get(a.agent_id, 0),
                host=a.host,
                node=a.node,
                pid=a.pid,
            )
            for a in self.fleet.agents.values()
        }
        return {
            "target": self.source.target,
            "instances_started": self.counters.started,
            "agents": agents,
            "instances_unfinished": len(self.instances),
            "pending_tasks": len(self.pending),
            "in_flight_tasks": len(self.inflight),
            "model_health": self.health.report(now),
            "busy": self.busy.report(),
        }
