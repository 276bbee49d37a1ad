"""The conductor: the process shell around the scheduling core.

It owns what the core must not: the ROUTER socket, the agent launcher, the
journal and the output files, the clock and the asyncio tasks. Background
tasks only feed an inbox (frames from the bus, ticks); one task takes the
inbox in batches, hands each batch to ``SchedulingCore.handle`` and carries
out the actions it returns, in order, so no run state is ever touched
concurrently. Outputs reach the disk before the journal entries that name
them (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import msgspec
import structlog
import zmq.asyncio

from gra.bus.router import Router
from gra.config import Config
from gra.data.pool import Pool, PoolItem
from gra.data.seeds import SeedItem
from gra.errors import FleetFailed, RunError
from gra.protocols.messages import Heartbeat, Hello, Shutdown
from gra.report.agreement import reviewer_agreement
from gra.rundir import (
    JOURNAL,
    SEED_ANNOTATIONS,
    Agreement,
    Bus,
    Summary,
    agent_stderr,
    item_files,
    log_dir,
    read_raw,
    write_summary,
)
from gra.supervisor.actions import (
    DURABLE,
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
    Unreachable,
    WriteRecord,
    WriteSeedAnnotation,
    WriteVerdict,
)
from gra.supervisor.admission import LOCAL_KEY, Admission
from gra.supervisor.core import Counters, Progress, SchedulingCore
from gra.supervisor.journal import InstanceFinished, Journal, JournalObserver, RunStarted
from gra.supervisor.launcher import AgentSpec, Launcher
from gra.supervisor.lines import LineFile, OutputError
from gra.supervisor.outputs import RecordWriter, RunStats
from gra.supervisor.resume import ResumePoint
from gra.supervisor.rounds import SynthesisRounds
from gra.supervisor.seed_annotations import read_seed_annotations
from gra.supervisor.sources import Generation, InstanceSource, Pairs, SeedAnnotations
from gra.supervisor.steps import load_steps

__all__ = ["Conductor", "Progress"]

log = structlog.get_logger("gra.supervisor")

_json_encoder = msgspec.json.Encoder()
# Inputs handled between two dispatches (and group commits).
_MAX_BATCH = 512
_COMMIT_INTERVAL_S = 0.5
_COMMIT_MIN_INTERVAL_S = 0.02
_TICK_S = 0.2
_SUMMARY_EVERY_S = 2.0


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
        # A step no plugin provides (or misconfigured) stops the run before it writes anything.
        checks = load_steps(config, config_path or "config")
        self.out_dir = out_dir
        self.endpoint = endpoint
        self.launcher = launcher
        self.on_progress = on_progress
        self.mode = mode
        # Each launched agent proves it is ours with this per-run token.
        token = secrets.token_hex(16)
        self.local_agents = {
            spec.agent_id: dataclasses.replace(spec, token=token) for spec in local_agents
        }
        admission = Admission.from_config(
            config,
            {spec.agent_id: spec.model for spec in local_agents},
            token,
            local_key=getattr(launcher, "curve_key", LOCAL_KEY),
        )
        stats = resume.stats if resume else RunStats()
        self.journal = Journal(out_dir / JOURNAL)
        self.writer = RecordWriter(out_dir, item_files(mode))
        self.journal.append(RunStarted(config_path, config.run.seed, time.time()), sync=True)
        pool = Pool(
            PoolItem(s.id, s.instruction, s.response, s.domain, s.keywords, s.summary)
            for s in (seeds if mode == "generate" else [])
        )
        self.rounds = SynthesisRounds(config, out_dir, self.writer, self.journal, stats, pool)
        self._seed_annotations = LineFile(out_dir / SEED_ANNOTATIONS)
        source: InstanceSource
        annotations = None
        if mode == "generate":
            rounds_done = resume.rounds_done if resume else 0
            for k in range(1, rounds_done + 1):
                pool.extend(self.rounds.accepted_items(k))
            source = Generation(
                config,
                pool,
                rounds_done + 1,
                self.rounds.candidates_written(rounds_done + 1),
                resume.started_in_round if resume else 0,
            )
            annotations = SeedAnnotations(
                seeds,
                pool,
                config.seeds.default_domain if config.seeds else "",
                read_seed_annotations(out_dir),
                enabled=config.annotate.seeds,
            )
        else:
            source = Pairs(
                seeds, stats, refine=mode == "refine", started=resume.started if resume else 0
            )
        self.core = SchedulingCore(
            config,
            source,
            admission,
            checks=checks,
            annotations=annotations,
            local_agents=self.local_agents,
            expected_agents=len(local_agents) + expected_remote,
            stats=stats,
            counters=Counters(resume.started, resume.finished) if resume else None,
            unfinished=resume.unfinished if resume else (),
        )
        self.router: Router | None = None
        self._inbox: asyncio.Queue[Input] = asyncio.Queue()
        # The most inputs (batches of frames, ticks) ever waiting for the main loop
        # when it took them: how far behind it fell (the scheduler benchmark shows it).
        self.inbox_peak = 0
        # Something that must be durable (a finished instance) awaits the next commit.
        self._must_sync = False
        self._last_commit = time.monotonic()
        self._last_summary = 0.0

    # ---- what callers watch ----------------------------------------------------

    @property
    def accepted(self) -> int:
        """Accepted so far toward the target: the current round's committee-accepted
        items when generating, accepted verdicts when reviewing."""
        return self.core.accepted

    @property
    def fleet(self) -> Any:
        return self.core.fleet

    @property
    def stats(self) -> RunStats:
        return self.core.stats

    def progress(self) -> Progress:
        return self.core.progress()

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
        self.core.request_stop()
        self._inbox.put_nowait(Tick())

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
        background: list[asyncio.Task[None]] = []
        try:
            await self._carry_out(self.core.start(time.monotonic()))
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
        except FleetFailed as exc:
            raise RunError(self._explain(exc)) from None
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
        while not self.core.done:
            batch = [await self._inbox.get()]
            waiting = self._inbox.qsize() + 1
            if waiting > self.inbox_peak:
                self.inbox_peak = waiting
            # Whatever else has arrived is handled at once: under load, work per
            # input shrinks as batches grow.
            while len(batch) < _MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            for task in background:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            ticked = any(type(item) is Tick for item in batch)
            if ticked:
                exited = [ProcessExited(a, c) for a, c in self.launcher.exited().items()]
                batch = [*exited, *batch]
            now = time.monotonic()
            # Freed agents get their next tasks before the batch is processed.
            await self._carry_out(self.core.settle(batch, now))
            await self._carry_out(self.core.handle(batch, now))
            self._commit()
            if ticked:
                self._report()

    async def _carry_out(self, actions: Iterable[Action]) -> None:
        assert self.router is not None
        for action in actions:
            if isinstance(action, DURABLE) or (
                type(action) is AppendJournal and type(action.entry) is InstanceFinished
            ):
                self._must_sync = True
            match action:
                case Send(identity=identity, message=message):
                    if not self.router.send_now(identity, message):
                        self._inbox.put_nowait(Unreachable(identity))
                case AppendJournal(entry=entry):
                    self.journal.append(entry)
                case WriteRecord(record=record):
                    self.writer.write(record, sync=False)
                case AddCandidate(record=record, round=k):
                    self.rounds.add_candidate(record, k, sync=False)
                case WriteVerdict(verdict=verdict):
                    self.writer.write_verdict(verdict, sync=False)
                case WriteSeedAnnotation(entry=entry):
                    self._seed_annotations.append(_json_encoder.encode(entry), sync=False)
                case StartAgent(agent_id=agent_id):
                    self.launcher.start(self.local_agents[agent_id], self.router.bound)
                case KillAgent(agent_id=agent_id):
                    self.launcher.kill(agent_id)
                case FinishRound(round=k):
                    self._commit(force=True)
                    _counts, joining = await self.rounds.finish_round(k)
                    done = RoundPostProcessed(k, joining)
                    await self._carry_out(self.core.handle([done], time.monotonic()))

    def _commit(self, *, force: bool = False) -> None:
        """Group commit: outputs reach the disk before the journal entries that name them.

        A finished instance is synced within ``_COMMIT_MIN_INTERVAL_S`` (or at
        the next tick), progress within instances at least every half second.
        Until then a finished record is in the page cache: a crash of the
        process loses nothing, a power cut at most that window.
        """
        now = time.monotonic()
        since = now - self._last_commit
        if not force and (
            since < _COMMIT_MIN_INTERVAL_S or (not self._must_sync and since < _COMMIT_INTERVAL_S)
        ):
            return
        self._must_sync = False
        self._last_commit = now
        self.writer.sync()
        self.rounds.sync()
        self._seed_annotations.sync()
        self.journal.sync()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress())
        now = time.monotonic()
        if now - self._last_summary > _SUMMARY_EVERY_S:
            self._last_summary = now
            write_summary(self.out_dir, self._summary())

    async def _shutdown_fleet(self) -> None:
        if self.router is not None:
            for agent in self.core.fleet.live():
                await self.router.send(agent.identity, Shutdown(drain=False, reason="run finished"))
        await asyncio.to_thread(self.launcher.stop, 10.0)

    def _explain(self, failure: FleetFailed) -> str:
        """The core's reason, with what the local agents wrote to their logs."""
        if failure.agent_id is not None:
            return self._agent_error_line(failure.agent_id) or failure.what
        details = []
        for agent_id in self.local_agents:
            path = agent_stderr(log_dir(self.out_dir), agent_id)
            if path.exists():
                tail = path.read_text(errors="replace").strip().splitlines()[-3:]
                if tail:
                    details.append(f"  {agent_id}: " + " | ".join(tail))
        return failure.what + ("; agent errors:\n" + "\n".join(details) if details else "")

    def _agent_error_line(self, agent_id: str) -> str:
        """The last line a local agent wrote to its stderr (its own error message)."""
        path = agent_stderr(log_dir(self.out_dir), agent_id)
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:500] if lines else ""

    # ---- background tasks: they only feed the inbox -------------------------

    async def _receive(self) -> None:
        assert self.router is not None
        while True:
            batch = await self.router.recv_batch(_MAX_BATCH)
            now = time.monotonic()
            frames = [(i, f) for i, f in batch if type(f) is not Heartbeat]
            keys = {i: self.router.peer_key(i) for i, f in frames if type(f) is Hello}
            heard = tuple({identity for identity, _ in batch})
            self._inbox.put_nowait(Frames(frames, heard, now, keys))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            self._inbox.put_nowait(Tick())

    async def _heartbeats(self) -> None:
        assert self.router is not None
        interval = self.config.bus.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            for agent in self.core.fleet.live():
                beat = Heartbeat(sent_at=time.time(), in_flight=len(agent.in_flight))
                if not await self.router.send(agent.identity, beat):
                    self._inbox.put_nowait(Unreachable(agent.identity))

    # ---- reporting ---------------------------------------------------------

    def _agreement(self) -> Agreement:
        """How much the reviewers agreed, from the records written (no labels needed)."""
        records = read_raw(self.out_dir / name for name in item_files(self.mode))
        agreement = reviewer_agreement(records, tau=self.config.protocol.tau)
        return msgspec.convert(agreement, Agreement)

    def _summary(self, running: bool = True) -> Summary:
        bus = Bus()
        if self.router is not None:
            bus = Bus(self.router.dropped, dict(self.router.drop_reasons))
        return msgspec.structs.replace(
            self.core.stats.summary(),
            protocol=json.loads(msgspec.json.encode(self.config.protocol)),
            bus=bus,
            running=running,
            updated_at=time.time(),
            **self.core.summary_fields(time.monotonic()),
        )
