"""The conductor: drives many GRA instances at once over a fleet of agents.

One task owns all run state and handles inputs one at a time from a queue
(frames from the bus, ticks, process exits), so no state is ever touched
concurrently. The protocol's decisions come from ``InstanceState``; this
module does the waiting, sending, timing out, retrying and recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import random
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import structlog
import zmq.asyncio

from gra.bus.router import Router
from gra.config import Config
from gra.data.seeds import SeedItem
from gra.errors import RunError
from gra.log_budget import LogBudget
from gra.protocols.assignment import BalancedDraw
from gra.protocols.builtin_roles import BUILTIN_ROLES
from gra.protocols.messages import (
    AGENT_EXIT_UNUSABLE,
    PROTOCOL_VERSION,
    Cancel,
    Goodbye,
    Heartbeat,
    Hello,
    Reject,
    Result,
    Shutdown,
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
from gra.protocols.records import build_record, build_verdict
from gra.protocols.reproducible import (
    draw_content,
    generation_instance_id,
    instance_rng,
    step_seed,
)
from gra.protocols.roles import (
    Example,
    GeneratedItem,
    Inspiration,
)
from gra.protocols.rolespec import role_table
from gra.report.agreement import reviewer_agreement
from gra.rundir import (
    JOURNAL,
    SEED_ANNOTATIONS,
    AgentState,
    Agreement,
    Bus,
    Summary,
    agent_stderr,
    item_files,
    log_dir,
    read_jsonl,
    read_raw,
    write_summary,
)
from gra.supervisor.admission import LOCAL_KEY, Admission, Member
from gra.supervisor.busy import BusyWindow
from gra.supervisor.fleet import AgentInfo, Fleet
from gra.supervisor.health import ModelHealth
from gra.supervisor.journal import (
    InstanceChanged,
    InstanceFinished,
    InstanceStarted,
    Journal,
    JournalObserver,
    RunStarted,
    TaskRetried,
)
from gra.supervisor.launcher import AgentSpec, Launcher
from gra.supervisor.lines import LineFile, OutputError
from gra.supervisor.outputs import RecordWriter, RunStats
from gra.supervisor.queues import Key, TaskQueues
from gra.supervisor.resume import ResumePoint
from gra.supervisor.rounds import SynthesisRounds
from gra.supervisor.steps import load_steps
from gra.verify.domain import verifiable_domain

log = structlog.get_logger("gra.supervisor")


def _task_key(state: InstanceState, step: TaskStep) -> tuple[int, str, str, int]:
    """(review round, role, model, seat): one task per step of an instance."""
    return (state.round, step.role, step.model, step_seat(step))


_encoder = msgspec.msgpack.Encoder()


class SeedAnnotation(msgspec.Struct, frozen=True):
    """What the fleet wrote for a seed; kept so a resumed run need not redo it."""

    seed: str
    domain: str
    keywords: tuple[str, ...]
    summary: str
    annotator: str


_json_encoder = msgspec.json.Encoder()
_DEADLINE_GRACE_S = 5.0
# Inputs handled between two dispatches (and group commits).
_MAX_BATCH = 512
_COMMIT_INTERVAL_S = 0.5
_COMMIT_MIN_INTERVAL_S = 0.02
# Without max_in_flight: instances in progress per task slot of the live fleet, at most.
_AUTO_IN_FLIGHT_PER_SLOT = 4


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


class Conductor:
    def __init__(
        self,
        config: Config,
        seeds: list[SeedItem],
        out_dir: Path,
        endpoint: str,
        launcher: Launcher,
        local_agents: list[AgentSpec],
        *,
        config_path: str = "",
        resume: ResumePoint | None = None,
        expected_remote: int = 0,
        on_progress: Callable[[Progress], None] | None = None,
        mode: Literal["generate", "review", "refine"] = "generate",
    ) -> None:
        self.config = config
        # The plugins' protocol steps, and every role the supervisor may dispatch:
        # its output type and the event its output becomes.
        self.checks = load_steps(config, config_path or "config")
        self.roles = role_table(*BUILTIN_ROLES.values(), *(check.role for check in self.checks))
        # generate: seeds are few-shot sources; review/refine: the pairs to judge.
        self.mode = mode
        self.seeds = seeds
        self.out_dir = out_dir
        self.endpoint = endpoint
        self.launcher = launcher
        # Each launched agent proves it is ours with this per-run token.
        token = secrets.token_hex(16)
        self.local_agents = {
            spec.agent_id: dataclasses.replace(spec, token=token) for spec in local_agents
        }
        self.admission = Admission.from_config(
            config,
            {spec.agent_id: spec.model for spec in local_agents},
            token,
            local_key=getattr(launcher, "curve_key", LOCAL_KEY),
        )
        self._members: dict[bytes, Member] = {}
        self._log_budget = LogBudget()
        self.expected_agents = len(local_agents) + expected_remote
        self.on_progress = on_progress
        self.max_restarts = config.limits.agent_restarts
        self.rng = random.Random(config.run.seed + (resume.started if resume else 0))
        self.target = config.run.target if mode == "generate" else len(seeds)
        self.max_instances = (
            config.run.max_instances or 10 * config.run.target if mode == "generate" else len(seeds)
        )
        self.fleet = Fleet()
        self.health = ModelHealth(
            config.limits.breaker_failures,
            config.limits.breaker_backoff_s,
            max(config.limits.breaker_backoff_s, 600.0),
        )
        self.stats = resume.stats if resume else RunStats()
        self.finished = resume.finished if resume else 0
        self.started = resume.started if resume else 0
        self.started_in_round = resume.started_in_round if resume else 0
        self._resume = resume
        self.instances: dict[str, LiveInstance] = {}
        self.pending: TaskQueues[PendingTask] = TaskQueues()
        self.inflight: dict[str, InflightTask] = {}
        # Results of this batch whose agents got their credit back before
        # processing, by (task, the agent it was sent to).
        self._settled: dict[tuple[str, bytes], InflightTask] = {}
        self._task_ids = itertools.count(1)
        self.assignment = BalancedDraw(config.protocol.assignment_slack)
        self._restarts: dict[str, int] = {}
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        # The most inputs (batches of frames, ticks) ever waiting for the main loop
        # when it took them: how far behind it fell (the scheduler benchmark shows it).
        self.inbox_peak = 0
        self._fleet_ready = False
        self._fleet_deadline = 0.0
        self._stopping = False
        self._stop_requested = False
        # Something that must be durable (a finished instance) awaits the next commit.
        self._must_sync = False
        self._last_commit = time.monotonic()
        # (agent, task) cancels to send at the next dispatch.
        self._cancels: list[tuple[bytes, str]] = []
        self._last_summary = 0.0
        self._busy = BusyWindow()
        self.router: Router | None = None
        self.journal = Journal(out_dir / JOURNAL)
        self.writer = RecordWriter(out_dir, item_files(mode))
        self.journal.append(RunStarted(config_path, config.run.seed, time.time()), sync=True)
        self.rounds = SynthesisRounds(
            config,
            seeds if mode == "generate" else [],
            out_dir,
            self.writer,
            self.journal,
            self.stats,
            resume.rounds_done if resume else 0,
        )

        self._seed_annotations = LineFile(out_dir / SEED_ANNOTATIONS)
        self._seed_by_id = {s.id: s for s in seeds}
        self._default_domain = config.seeds.default_domain if config.seeds else ""
        done = self._load_seed_annotations()
        self._annotating: set[str] = set()
        # Instances whose adjudicator or annotator seat waits for a model to come back.
        self._seat_waiting: set[str] = set()
        self._seeds_to_annotate = [
            s
            for s in (seeds if mode == "generate" and config.annotate.seeds else [])
            if (not s.keywords or not s.summary) and s.id not in done
        ]

    def _load_seed_annotations(self) -> set[str]:
        done = set()
        for entry in read_jsonl(self.out_dir / SEED_ANNOTATIONS, SeedAnnotation, cut_tail=True):
            self._apply_seed_annotation(entry)
            done.add(entry.seed)
        return done

    @property
    def accepted(self) -> int:
        """Accepted so far toward the target: the current round's committee-accepted
        items when generating, accepted verdicts when reviewing."""
        if self.mode == "generate":
            return self.rounds.candidates
        return self.stats.counts["accepted"]

    # ---- lifecycle ---------------------------------------------------------

    async def run(self) -> Summary:
        context = zmq.asyncio.Context()
        curve_keys = self.config.bus.curve_keys
        self.router = Router(
            context,
            self.endpoint,
            curve_keys=self.config.resolve(curve_keys) if curve_keys else None,
        )
        log.info("supervisor_listening", endpoint=self.router.bound)
        if self.router.bound.startswith("tcp://") and not curve_keys:
            log.warning(
                "bus_unauthenticated",
                endpoint=self.router.bound,
                risk="anyone who reaches this port can join the fleet and write data",
            )
        for spec in self.local_agents.values():
            self.launcher.start(spec, self.router.bound)
        self._fleet_deadline = time.monotonic() + self.config.limits.startup_timeout_s
        background: list[asyncio.Task[None]] = []
        try:
            background = [
                asyncio.create_task(self._receive(), name="receive"),
                asyncio.create_task(self._ticker(), name="ticker"),
                asyncio.create_task(self._heartbeats(), name="heartbeat"),
            ]
            await self._main_loop(background)
            if self.on_progress is not None:
                self.on_progress(self.progress())
        except OutputError as exc:
            raise RunError(f"{exc}; fix it, then continue with --resume") from exc
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._shutdown_fleet()
            self.router.close()
            context.term()
            # Outputs before the journal that names them, as in every commit.
            self.writer.close()
            self.rounds.close()
            self._seed_annotations.close()
            self.journal.close()
            summary = msgspec.structs.replace(
                self._summary(running=False), agreement=self._agreement()
            )
            with contextlib.suppress(OutputError):
                write_summary(self.out_dir, summary)
        return summary

    async def _main_loop(self, background: list[asyncio.Task[None]]) -> None:
        while not self._done() and not await self._end_round_if_due():
            batch = [await self._inbox.get()]
            waiting = self._inbox.qsize() + 1
            if waiting > self.inbox_peak:
                self.inbox_peak = waiting
            # Whatever else has arrived is handled before dispatching and
            # syncing once: under load, work per input shrinks as batches grow.
            while len(batch) < _MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            for task in background:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if self._settle_results(batch):
                await self._refill()
            for item in batch:
                match item:
                    case ("frames", frames):
                        for identity, frame in frames:
                            await self._on_frame(identity, frame)
                    case ("tick",):
                        await self._on_tick()
                    case ("unreachable", identity):
                        await self._agent_lost(identity, "unreachable")
            await self._pump()
            self._commit()

    def _settle_results(self, batch: list[tuple[Any, ...]]) -> bool:
        """Hand back the credit of every agent whose result is in ``batch``.

        The freed agents are then refilled from the tasks already waiting, so an
        agent's next task does not wait while the supervisor processes the
        batch: processing happens while the agents already work. Returns
        whether any credit came back.
        """
        for item in batch:
            if item[0] != "frames":
                continue
            for identity, frame in item[1]:
                if type(frame) is Result:
                    flight = self._take_inflight(frame.task_id, identity)
                    if flight is not None:
                        self._settled[(frame.task_id, identity)] = flight
        return bool(self._settled)

    def _commit(self) -> None:
        """Group commit: outputs reach the disk before the journal entries that name them.

        A finished instance is synced within ``_COMMIT_MIN_INTERVAL_S`` (or at
        the next tick), progress within instances at least every half second.
        Until then a finished record is in the page cache: a crash of the
        process loses nothing, a power cut at most that window.
        """
        now = time.monotonic()
        since = now - self._last_commit
        if since < _COMMIT_MIN_INTERVAL_S or (not self._must_sync and since < _COMMIT_INTERVAL_S):
            return
        self._must_sync = False
        self._last_commit = now
        self.writer.sync()
        self.rounds.sync()
        self._seed_annotations.sync()
        self.journal.sync()

    def _done(self) -> bool:
        """The last round reached its target, or has nothing left to start or finish.

        Instances still in progress when the last round ends are not waited
        for: their every step is in the journal, so `--resume` (with a higher
        target) carries them on, and the summary counts them as unfinished.
        Earlier rounds drain instead, because the next round builds on them.
        """
        if self._stop_requested:
            return True
        return self._fleet_ready and (self.mode != "generate" and self._round_over())

    def _round_over(self) -> bool:
        if self.accepted >= self.target:
            return True
        return not self.instances and self.started_in_round >= self.max_instances

    async def _end_round_if_due(self) -> bool:
        """Post-process a finished round; True when the whole run is done."""
        if self.mode != "generate" or not self._fleet_ready or not self._round_over():
            return False
        last = self.rounds.current >= self.rounds.total
        if self.instances and not last:
            return False  # drain: the next round builds on this one
        await self.rounds.finish_round()
        now = time.monotonic()
        for agent in self.fleet.live():
            agent.last_seen = max(agent.last_seen, now)  # the supervisor was busy, not they
        if last:
            return True
        self.started_in_round = 0
        return False

    def add_observer(self, observer: JournalObserver) -> None:
        """Call ``observer`` with each journal entry the run appends from now on
        (instances started, changed, finished; rounds), right after it is written.

        For watching a run from the same process (the scheduler benchmark times
        instances with it) without touching the conductor. Observers run in the
        conductor's task: they must be quick and must not raise.
        """
        self.journal.add_observer(observer)

    def request_stop(self) -> None:
        """Stop as if the target were reached: what is in progress stays resumable."""
        self._stop_requested = True
        self._inbox.put_nowait(("tick",))

    async def _shutdown_fleet(self) -> None:
        self._stopping = True
        if self.router is not None:
            for agent in self.fleet.live():
                await self.router.send(agent.identity, Shutdown(drain=False, reason="run finished"))
        await asyncio.to_thread(self.launcher.stop, 10.0)

    # ---- background tasks: they only feed the inbox -------------------------

    async def _receive(self) -> None:
        assert self.router is not None
        while True:
            batch = await self.router.recv_batch(_MAX_BATCH)
            # Liveness is stamped on arrival: a busy main loop must not make a
            # healthy agent look silent.
            now = time.monotonic()
            frames = []
            for identity, frame in batch:
                agent = self.fleet.get(identity)
                if agent is not None and agent.alive:
                    agent.last_seen = now
                    if isinstance(frame, Heartbeat):
                        continue  # a heartbeat's whole effect is the stamp above
                frames.append((identity, frame))
            if frames:
                self._inbox.put_nowait(("frames", frames))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self._inbox.put_nowait(("tick",))

    async def _heartbeats(self) -> None:
        assert self.router is not None
        interval = self.config.bus.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            for agent in self.fleet.live():
                beat = Heartbeat(sent_at=time.time(), in_flight=len(agent.in_flight))
                if not await self.router.send(agent.identity, beat):
                    self._inbox.put_nowait(("unreachable", agent.identity))

    # ---- inputs ------------------------------------------------------------

    async def _on_frame(self, identity: bytes, frame: Any) -> None:
        assert self.router is not None
        match frame:
            case Hello() as hello:
                await self._on_hello(identity, hello)
            case Heartbeat():
                pass
            case Result() as result:
                await self._on_result(identity, result)
            case TaskError(task_id=task_id, reason=reason, usage=usage):
                await self._on_task_error(identity, task_id, reason, usage)
            case Goodbye(reason=reason):
                await self._agent_lost(identity, f"goodbye: {reason}")
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

    async def _on_hello(self, identity: bytes, hello: Hello) -> None:
        assert self.router is not None
        if hello.version != PROTOCOL_VERSION:
            await self.router.send(
                identity, Reject(f"protocol version {hello.version} != {PROTOCOL_VERSION}")
            )
            return
        if identity.decode(errors="replace") != hello.agent_id:
            await self.router.send(identity, Reject("agent_id does not match the socket identity"))
            return
        seat = self.admission.admit(
            hello, self.router.peer_key(identity), identity, self._live_members()
        )
        if isinstance(seat, str):
            self.stats.refused_hellos += 1
            if self._may_log("agent_refused"):
                log.warning(
                    "agent_refused",
                    agent=hello.agent_id[:64],
                    model=hello.model[:64],
                    key=self.router.peer_key(identity),
                    why=seat,
                )
            await self.router.send(identity, Reject(f"not admitted: {seat}"))
            return
        self._members[identity] = Member(identity, hello.agent_id, seat)
        info, lost = self.fleet.register(identity, hello, time.monotonic())
        for task_id in lost:
            await self._retry(task_id, "agent re-registered and lost its tasks")
        self.pending.mark(info.keys)
        await self.router.send(
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

    def _models(self, role: str) -> set[str]:
        """Models with a live agent for ``role`` that are in rotation (see ModelHealth)."""
        out = self.health.out_of_rotation(time.monotonic())
        models = self.fleet.models(role)
        return models - out if out else models

    def _task_failed(self, agent: AgentInfo, reason: str) -> None:
        """Count a failure against the model; one that keeps failing leaves the rotation."""
        if self.health.failure(agent.model, reason, time.monotonic()):
            log.warning(
                "model_out_of_rotation",
                model=agent.model,
                why=self.health.describe(agent.model),
            )
            self.pending.mark_all()  # its queued tasks go to other models

    def _check_health(self) -> None:
        """Stop with a clear error when the models left in rotation cannot run the protocol."""
        out = self.health.out_of_rotation(time.monotonic())
        if not out or not self._fleet_ready:
            return
        in_rotation = self._models("reviewer") | self._models(
            "generator" if self.mode == "generate" else "reviewer"
        )
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

    async def _on_result(self, identity: bytes, result: Result) -> None:
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

    async def _on_task_error(
        self, identity: bytes, task_id: str, reason: str, usage: Usage
    ) -> None:
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

    async def _on_tick(self) -> None:
        now = time.monotonic()
        for agent_id, code in self.launcher.exited().items():
            await self._agent_process_ended(agent_id, code)
        timeout = self.config.bus.heartbeat_interval_s * self.config.bus.heartbeat_misses
        for agent in self.fleet.expired(now, timeout):
            await self._agent_lost(agent.identity, "missed heartbeats")
        self.pending.mark_all()  # tasks waiting on a vanished model are handed over in time
        self._draw_waiting_seats()  # so do seats waiting for one
        for task_id, flight in list(self.inflight.items()):
            if now > flight.deadline:
                assert self.router is not None
                await self.router.send(flight.agent.identity, Cancel(task_id))
                self._take_inflight(task_id, flight.agent.identity)
                self._task_failed(flight.agent, "task deadline passed")
                self._requeue(flight.pending, flight.agent, "task deadline passed")
        self._check_fleet(now)
        self._check_health()
        self._busy.sample(now, self.fleet.live())
        if self.on_progress is not None:
            self.on_progress(self.progress())
        if now - self._last_summary > 2.0:
            self._last_summary = now
            write_summary(self.out_dir, self._summary())

    def _check_fleet(self, now: float) -> None:
        models = self.fleet.models("generator") | self.fleet.models("reviewer")
        registered = len(self.fleet.live())
        if not self._fleet_ready:
            if registered >= self.expected_agents and len(models) >= 2:
                self._fleet_ready = True
                log.info("fleet_ready", agents=registered, models=sorted(models))
                self._restore_instances()
            elif now > self._fleet_deadline:
                missing = self.admission.missing(self._live_members())
                if len(models) >= 2:
                    log.warning(
                        "fleet_incomplete_starting_anyway", agents=registered, missing=missing
                    )
                    self._fleet_ready = True
                    self._restore_instances()
                else:
                    what = "the fleet did not come up in time"
                    if missing:
                        what += "; missing: " + "; ".join(missing)
                    raise RunError(self._startup_failure(what))
            elif self.local_agents and all(
                self._restarts.get(a, 0) >= self.max_restarts for a in self.local_agents
            ):
                raise RunError(self._startup_failure("every agent process exited"))
        elif not models and now > self._fleet_deadline:
            raise RunError("every agent is gone; resume with --resume once the fleet is back")
        elif models:
            self._fleet_deadline = now + self.config.limits.startup_timeout_s

    def _agent_error_line(self, agent_id: str) -> str:
        """The last line a local agent wrote to its stderr (its own error message)."""
        path = agent_stderr(log_dir(self.out_dir), agent_id)
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:500] if lines else ""

    def _startup_failure(self, what: str) -> str:
        details = []
        for agent_id in self.local_agents:
            path = agent_stderr(log_dir(self.out_dir), agent_id)
            if path.exists():
                tail = path.read_text(errors="replace").strip().splitlines()[-3:]
                if tail:
                    details.append(f"  {agent_id}: " + " | ".join(tail))
        return what + ("; agent errors:\n" + "\n".join(details) if details else "")

    async def _agent_process_ended(self, agent_id: str, code: int) -> None:
        for agent in self.fleet.agents.values():
            if agent.agent_id == agent_id:
                await self._agent_lost(agent.identity, f"process exited with code {code}")
        if self._stopping or agent_id not in self.local_agents:
            return
        if code == AGENT_EXIT_UNUSABLE:
            # Its model cannot be used: a restart would only fail the same way.
            raise RunError(self._agent_error_line(agent_id) or f"agent {agent_id}: unusable model")
        restarts = self._restarts.get(agent_id, 0)
        if restarts < self.max_restarts:
            self._restarts[agent_id] = restarts + 1
            assert self.router is not None
            log.warning("agent_restarting", agent=agent_id, exit_code=code, restart=restarts + 1)
            self.launcher.start(self.local_agents[agent_id], self.router.bound)
        else:
            self._restarts[agent_id] = restarts
            log.error("agent_gave_up", agent=agent_id, exit_code=code)

    async def _agent_lost(self, identity: bytes, why: str) -> None:
        agent = self.fleet.get(identity)
        lost = self.fleet.mark_dead(identity)
        if agent is None or (not lost and not agent.alive and why == "unreachable"):
            return
        self.stats.agents_lost += 1
        log.warning("agent_lost", agent=agent.agent_id, why=why, tasks=len(lost))
        if agent.agent_id in self.local_agents and not why.startswith("process exited"):
            # A hung local agent (stopped, deadlocked) is ended so it can be restarted.
            self.launcher.kill(agent.agent_id)
        for task_id in lost:
            flight = self.inflight.pop(task_id, None)
            if flight is not None:
                self._requeue(flight.pending, agent, f"agent {agent.agent_id} lost: {why}")

    async def _retry(self, task_id: str, reason: str) -> None:
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
        self.journal.append(InstanceChanged(instance.state.instance_id, event))
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
        models = sorted(self._models(role) - excluded)
        self.rng.shuffle(models)
        testers = tuple(models[i % len(models)] for i in range(policy.test_sets)) if models else ()
        return VerificationPlanned(kind, testers, self._draw_seat("verifier"))

    def _finish(self, instance: LiveInstance) -> None:
        state = instance.state
        record: Any
        if state.instance_id in self._annotating:
            self._finish_seed_annotation(instance)
            return
        if self.mode == "generate":
            record = build_record(
                state, synthesis_round=instance.synthesis_round, seed_ids=instance.seed_ids
            )
            if record.decision == "accepted":
                self.rounds.add_candidate(record, sync=False)
            else:
                self.writer.write(record, sync=False)
        else:
            record = build_verdict(state, item_id=instance.seed_ids[0])
            self.writer.write_verdict(record, sync=False)
        assert state.outcome is not None
        self.journal.append(
            InstanceFinished(state.instance_id, state.outcome.decision, state.outcome.stage)
        )
        self._must_sync = True
        if record.decision != "accepted" or self.mode != "generate":
            self.stats.count_record(record)
        self.finished += 1
        del self.instances[state.instance_id]
        self._drop_tasks(instance)
        log.info(
            "instance_finished",
            instance_id=state.instance_id,
            decision=record.decision,
            stage=record.stage,
            reason=record.reason,
        )

    def _finish_seed_annotation(self, instance: LiveInstance) -> None:
        state = instance.state
        seed_id = instance.seed_ids[0]
        annotation = state.annotation
        if annotation is not None:
            entry = SeedAnnotation(
                seed_id,
                annotation.domain.strip().lower(),
                annotation.keywords,
                annotation.summary,
                state.annotator or "",
            )
            self._seed_annotations.append(_json_encoder.encode(entry), sync=False)
            self._apply_seed_annotation(entry)
        else:
            log.warning("seed_not_annotated", seed=seed_id, reason=state.outcome)
        assert state.outcome is not None
        self.journal.append(
            InstanceFinished(state.instance_id, state.outcome.decision, "seed_annotation")
        )
        self._must_sync = True
        self._annotating.discard(state.instance_id)
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
                self._cancels.append((flight.agent.identity, task_id))

    def _apply_seed_annotation(self, entry: SeedAnnotation) -> None:
        seed = self._seed_by_id.get(entry.seed)
        if seed is None:
            return
        # A seed's own domain wins; the annotator's label fills a missing one.
        domain = entry.domain if seed.domain == self._default_domain else None
        self.rounds.annotate_seed(entry.seed, domain, entry.keywords, entry.summary)

    def _requeue(self, pending: PendingTask, agent: AgentInfo, reason: str) -> None:
        instance = self.instances.get(pending.instance_id)
        if instance is None or instance.tasks.get(_pending_key(pending)) != pending.task_id:
            return  # finished, or moved past this step
        self.stats.retries += 1
        self.journal.append(
            TaskRetried(pending.instance_id, pending.task_id, agent.agent_id, reason)
        )
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

    # ---- starting instances and dispatching tasks ---------------------------

    async def _pump(self) -> None:
        if not self._fleet_ready or self._stopping:
            return
        while self._can_start():
            if not self._start_instance():
                break
        await self._dispatch()

    async def _refill(self) -> None:
        """Send waiting tasks to agents with free credit; starts nothing new."""
        if self._fleet_ready and not self._stopping:
            await self._dispatch()

    def _can_start(self) -> bool:
        if not self._room_for_an_instance():
            return False
        if self._seeds_to_annotate or self._annotating:
            return bool(self._seeds_to_annotate)  # generation waits for an annotated pool
        return self.started_in_round < self.max_instances and self.accepted < self.target

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
        if self.mode != "generate":
            return self._start_review()
        if self._seeds_to_annotate:
            return self._start_seed_annotation()
        generators = sorted(self._models("generator"))
        reviewers = sorted(self._models("reviewer"))
        if not generators or len(set(generators) | set(reviewers)) < 2:
            return False
        try:
            generator, committee = self._draw_roles(generators, reviewers, "generator")
        except ProtocolError:
            return False
        self.started += 1
        self.started_in_round += 1
        k = self.rounds.current
        instance_id = generation_instance_id(k, self.started)
        domain, shots = draw_content(
            instance_rng(self.config.run.seed, instance_id),
            self.config.run.domains,
            self.rounds.seed_items,
            self.rounds.by_domain,
            self.config.run.few_shot,
        )
        examples = tuple(Example(s.instruction, s.response) for s in shots)
        inspirations = tuple(Inspiration(s.keywords, s.summary) for s in shots if s.keywords)
        started = InstanceStarted(
            instance_id,
            k,
            domain,
            generator,
            committee,
            tuple(s.id for s in shots),
            examples,
            inspirations=inspirations if len(inspirations) == len(shots) else (),
        )
        self.journal.append(started)
        self._open(started, [])
        return True

    def _draw_roles(
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

    def _draw_seat(self, role: str, excluded: Collection[str] = ()) -> str | None:
        """A random live model for a single-seat role, balanced like every other draw."""
        candidates = self._models(role) - set(excluded)
        return self.assignment.seat(role, candidates, self.rng, self._free_models(candidates, role))

    def _draw_waiting_seat(
        self, instance: LiveInstance, role: str, excluded: Collection[str] = ()
    ) -> str | Literal[False] | None:
        """``_draw_seat``, with the grace every other role gets: while no model can take
        the seat now but one that could is known to the fleet (its agent restarting, or
        out of rotation), the seat waits up to ``model_grace_s`` for it (False: wait;
        the ticker draws again). None: no model can take it."""
        model = self._draw_seat(role, excluded)
        now = time.monotonic()
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
        if now - instance.seat_wait_since < self.config.limits.model_grace_s:
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

    def _free_models(self, models: Collection[str], role: str) -> set[str]:
        """Models whose agents could start a ``role`` task now, after the tasks queued for them."""
        return {
            m for m in models if self.fleet.free_credit(m, role) > self.pending.waiting((m, role))
        }

    def _start_seed_annotation(self) -> bool:
        """A seed without keywords or summary is annotated by a random model first."""
        if not self._models("annotator"):
            return False
        seed = self._seeds_to_annotate.pop(0)
        started = InstanceStarted(
            f"sa-{seed.id}",
            0,
            seed.domain,
            None,
            (),
            (seed.id,),
            (),
            GeneratedItem(seed.instruction, seed.response),
            kind="seed_annotation",
        )
        self.journal.append(started)
        self._annotating.add(started.instance)
        self._open(started, [])
        return True

    def _start_review(self) -> bool:
        """Review and refine modes: the next existing pair, in file order."""
        if self.started >= len(self.seeds):
            return False
        reviewers = sorted(self._models("reviewer"))
        generator = None
        try:
            if self.mode == "refine":
                generators = sorted(self._models("refiner"))
                if not generators:
                    return False
                generator, committee = self._draw_roles(generators, reviewers, "refiner")
            else:
                size = self.config.protocol.committee_size(len(reviewers), with_generator=False)
                committee = self.assignment.committee(
                    reviewers, size, self.rng, self._free_models(reviewers, "reviewer")
                )
        except ProtocolError:
            return False
        item = self.seeds[self.started]
        self.started += 1
        self.started_in_round += 1
        started = InstanceStarted(
            f"rv-{self.started:06d}",
            0,
            item.domain,
            generator,
            committee,
            (item.id,),
            (),
            GeneratedItem(item.instruction, item.response),
        )
        self.journal.append(started)
        self._open(started, [])
        return True

    def _open(self, started: InstanceStarted, events: list[InstanceEvent]) -> None:
        state = InstanceState(
            started.instance,
            started.domain,
            self.config.protocol,
            started.generator,
            started.reviewers,
            started.examples,
            started.original,
            started.inspirations,
            enrich=self.mode == "generate"
            and (self.config.annotate.enrich or started.kind == "seed_annotation"),
            labels=self.config.annotate.labels,
            verify=self.config.verify if started.kind == "item" else None,
            checks=self.checks if started.kind == "item" else (),
        )
        instance = LiveInstance(state, started.round, list(started.seed_ids))
        self.instances[started.instance] = instance
        for event in events:
            state.apply(event)
        self._advance(instance)

    def _restore_instances(self) -> None:
        if self._resume is None:
            return
        for started, events in self._resume.unfinished:
            if started.kind == "seed_annotation":
                seed = self._seed_by_id.get(started.seed_ids[0])
                if seed is not None and seed not in self._seeds_to_annotate:
                    self._seeds_to_annotate.append(seed)
                continue
            try:
                self._open(started, events)
            except ProtocolError as exc:
                log.warning("resume_replay_failed", instance_id=started.instance, reason=str(exc))
                self.instances.pop(started.instance, None)
        log.info("resumed", instances=len(self._resume.unfinished), finished=self.finished)

    async def _dispatch(self) -> None:
        assert self.router is not None
        cancels, self._cancels = self._cancels, []
        for identity, task_id in cancels:
            await self.router.send(identity, Cancel(task_id))
        while keys := self.pending.take_dirty():
            for key in keys:
                await self._dispatch_queue(key)

    async def _dispatch_queue(self, key: Key) -> None:
        """Send the queue's tasks, in order, while an agent of its (model, role) has credit."""
        assert self.router is not None
        model, role = key
        hostless: list[PendingTask] = []
        while (pending := self.pending.pop(key)) is not None:
            instance = self.instances.get(pending.instance_id)
            if instance is None or instance.tasks.get(_pending_key(pending)) != pending.task_id:
                continue  # the instance finished or moved on
            agent = (
                self.fleet.pick(model, role, pending.avoid)
                if self.health.in_rotation(model, time.monotonic())
                else None  # out of rotation: handed over like a model with no host
            )
            if agent is None:
                if self.fleet.hosts(model, role) and self.health.in_rotation(
                    model, time.monotonic()
                ):
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
            if not self.router.send_now(agent.identity, task):
                self.pending.restore(pending)
                await self._agent_lost(agent.identity, "unreachable")
                continue
            self.fleet.assign(agent, pending.task_id)
            self.inflight[pending.task_id] = InflightTask(
                pending, agent, time.monotonic() + deadline_s + _DEADLINE_GRACE_S
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
        candidates = sorted(self._models(step.role) - taken)
        now = time.monotonic()
        if pending.hostless_since is None:
            pending.hostless_since = now
        if not candidates and now - pending.hostless_since < self.config.limits.model_grace_s:
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

    def progress(self) -> Progress:
        generating = self.mode == "generate" and not self.rounds.finished
        return Progress(
            self.accepted if generating else self.stats.counts["accepted"],
            self.finished,
            self.started,
            self.target,
            self.max_instances,
            len(self.fleet.live()),
            len(self.inflight),
        )

    def _agreement(self) -> Agreement:
        """How much the reviewers agreed, from the records written (no labels needed)."""
        records = read_raw(self.out_dir / name for name in item_files(self.mode))
        agreement = reviewer_agreement(records, tau=self.config.protocol.tau)
        return msgspec.convert(agreement, Agreement)

    def _summary(self, running: bool = True) -> Summary:
        now = time.monotonic()
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
                restarts=self._restarts.get(a.agent_id, 0),
                host=a.host,
                node=a.node,
                pid=a.pid,
            )
            for a in self.fleet.agents.values()
        }
        bus = Bus()
        if self.router is not None:
            bus = Bus(self.router.dropped, dict(self.router.drop_reasons))
        return msgspec.structs.replace(
            self.stats.summary(),
            target=self.target,
            instances_started=self.started,
            protocol=json.loads(msgspec.json.encode(self.config.protocol)),
            agents=agents,
            bus=bus,
            running=running,
            updated_at=time.time(),
            instances_unfinished=len(self.instances),
            pending_tasks=len(self.pending),
            in_flight_tasks=len(self.inflight),
            model_health=self.health.report(now),
            busy=self._busy.report(),
        )
