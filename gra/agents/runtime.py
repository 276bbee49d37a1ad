"""The agent process: one bus client, one backend, one or more roles.

Background tasks, each named and supervised by a TaskGroup:
- ``receive``: frames from the supervisor (tasks, cancels, heartbeats, shutdown);
- ``heartbeat``: our liveness, on its own task so a long model call never
  delays it;
- ``watchdog``: the supervisor's liveness; when it goes quiet we register
  again (it may have restarted), and a locally spawned agent exits with its
  parent;
- ``warm``: once registered and while no task has come, the backend
  evaluates each role's shared prompt prefix (``Role.warmup``), so a reviewer
  that waits for the first generations spends that time on its rubric. The
  first task cancels a warm-up under way: real work never waits for one.
Each task runs in its own asyncio task; a failure is reported as a
``TaskError``, never a dead process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog
import zmq.asyncio

from gra.agents.roles import InvalidOutput, Role
from gra.backends.base import Backend, BackendCancelled, BackendError, Completion
from gra.bus.dealer import Dealer
from gra.protocols.messages import (
    AGENT_NODE_ENV,
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
from gra.protocols.reproducible import output_try_seed

log = structlog.get_logger("gra.agent")

_encoder = msgspec.msgpack.Encoder()


class AgentRuntime:
    def __init__(
        self,
        agent_id: str,
        backend: Backend,
        roles: dict[str, Role[Any, Any]],
        endpoint: str,
        *,
        output_retries: int = 2,
        parent_pid: int | None = None,
        heartbeat_interval_s: float = 1.0,
        heartbeat_misses: int = 5,
        drain_timeout_s: float = 30.0,
        curve: tuple[Path, Path] | None = None,
        token: str = "",
    ) -> None:
        self.agent_id = agent_id
        self.token = token
        self.backend = backend
        self.roles = roles
        self.endpoint = endpoint
        self.output_retries = output_retries
        self.parent_pid = parent_pid
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_misses = heartbeat_misses
        self.drain_timeout_s = drain_timeout_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._drain = True
        self._registered = False
        self._welcomed = asyncio.Event()
        self._warming: asyncio.Task[None] | None = None
        self._last_heard = time.monotonic()
        self._dealer: Dealer | None = None
        self._curve = curve

    def _hello(self) -> Hello:
        return Hello(
            agent_id=self.agent_id,
            model=self.backend.model,
            roles=tuple(self.roles),
            capacity=self.backend.capacity,
            backend=type(self.backend).__name__,
            pid=os.getpid(),
            host=socket.gethostname(),
            token=self.token,
            node=os.environ.get(AGENT_NODE_ENV, "")[:256],
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.backend.start()
        context = zmq.asyncio.Context()
        self._dealer = Dealer(context, self.endpoint, self.agent_id, curve=self._curve)
        try:
            await self._dealer.send(self._hello())
            log.info("agent_started", model=self.backend.model, roles=list(self.roles))
            async with asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._receive(), name="receive"),
                    group.create_task(self._heartbeat(), name="heartbeat"),
                    group.create_task(self._watchdog(), name="watchdog"),
                ]
                self._warming = group.create_task(self._warm(), name="warm")
                workers.append(self._warming)
                await self._stop.wait()
                await self._finish_tasks()
                for worker in workers:
                    worker.cancel()
        finally:
            await self._dealer.send(Goodbye(reason="stopping"))
            self._dealer.close(linger_ms=500)
            context.term()
            await self.backend.aclose()
            log.info("agent_stopped")

    async def _finish_tasks(self) -> None:
        pending = list(self._tasks.values())
        if pending and self._drain:
            _done, pending_set = await asyncio.wait(pending, timeout=self.drain_timeout_s)
            pending = list(pending_set)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)

    async def _receive(self) -> None:
        assert self._dealer is not None
        while True:
            frame = await self._dealer.recv()
            self._last_heard = time.monotonic()
            match frame:
                case Welcome(heartbeat_interval_s=interval, heartbeat_misses=misses):
                    self._registered = True
                    self._welcomed.set()
                    self.heartbeat_interval_s, self.heartbeat_misses = interval, misses
                    log.info("registered")
                case Reject(reason=reason):
                    log.error("registration_rejected", reason=reason)
                    self._drain = False
                    self._stop.set()
                case Heartbeat():
                    pass
                case Task() as task:
                    if self._stop.is_set():
                        await self._dealer.send(TaskError(task.task_id, "agent is shutting down"))
                    elif task.task_id not in self._tasks:
                        self._cut_warm_up()
                        self._tasks[task.task_id] = asyncio.create_task(
                            self._serve(task), name=f"task-{task.task_id}"
                        )
                case Cancel(task_id=task_id):
                    if (running := self._tasks.get(task_id)) is not None:
                        running.cancel()
                case Shutdown(drain=drain, reason=reason):
                    log.info("shutdown_requested", drain=drain, reason=reason)
                    self._drain = drain
                    self._stop.set()
                case _:
                    log.warning("unexpected_frame", kind=type(frame).__name__)

    async def _heartbeat(self) -> None:
        assert self._dealer is not None
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            await self._dealer.send(Heartbeat(sent_at=time.time(), in_flight=len(self._tasks)))

    async def _watchdog(self) -> None:
        assert self._dealer is not None
        last_hello = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("parent_gone", parent_pid=self.parent_pid)
                self._drain = False
                self._stop.set()
                return
            now = time.monotonic()
            patience = self.heartbeat_interval_s * self.heartbeat_misses
            if now - self._last_heard > patience and now - last_hello > patience:
                # The supervisor restarted or the link was cut: register again,
                # once per silent period so a healed link is not flooded.
                self._registered = False
                last_hello = now
                await self._dealer.send(self._hello())

    def _cut_warm_up(self) -> None:
        """A task came: a warm-up still under way is cancelled (the backend stops at
        its next token batch), so the task does not wait for a prompt nobody asked for."""
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            log.info("warmup_cut", reason="a task came")

    async def _warm(self) -> None:
        """Warm each role's prompt prefix while the agent has nothing else to do.

        Stops at the first task: its own prompt fills the cache for its role,
        and a warm-up never runs ahead of real work (the task cancels one under
        way, ``_cut_warm_up``).
        """
        await self._welcomed.wait()
        warm = getattr(self.backend, "warm", None)  # a plugin backend may predate it
        if warm is None:
            return
        for name, role in self.roles.items():
            if role.warmup is None:
                continue
            if self._tasks or self._stop.is_set():
                return
            started = time.perf_counter()
            try:
                warmed = await warm(role.prompt(role.warmup), role.schema)
            except Exception as exc:  # a cold cache is slower, never fatal
                log.warning("warmup_failed", role=name, error=f"{type(exc).__name__}: {exc}")
                return
            if not warmed:
                return
            log.info("role_warmed", role=name, seconds=round(time.perf_counter() - started, 3))

    async def _serve(self, task: Task) -> None:
        assert self._dealer is not None
        structlog.contextvars.bind_contextvars(task_id=task.task_id, instance_id=task.instance_id)
        reply: Result | TaskError
        started_at, started = time.time(), time.perf_counter()
        try:
            try:
                reply = await asyncio.wait_for(self._attempt(task), timeout=task.deadline_s)
            except TimeoutError:
                reason = f"deadline of {task.deadline_s:.0f}s passed in agent"
                reply = TaskError(task.task_id, reason)
            except Exception as exc:  # a failed task is data, never a dead agent
                log.exception("task_crashed")
                reply = TaskError(task.task_id, f"agent error: {type(exc).__name__}: {exc}")
            # The run report's fleet over time (gra.report.timeline) reads these lines:
            # one per task, on every backend, naming the role.
            log.debug(
                "task_done",
                role=task.role,
                model=self.backend.model,
                started_at=round(started_at, 3),
                seconds=round(time.perf_counter() - started, 4),
                prompt_tokens=reply.usage.prompt_tokens,
                completion_tokens=reply.usage.completion_tokens,
                calls=reply.usage.calls,
                ok=isinstance(reply, Result),
            )
            await self._reply(reply, task.deadline_s)
        finally:
            self._tasks.pop(task.task_id, None)

    async def _reply(self, reply: Result | TaskError, patience_s: float) -> None:
        """Send a finished task's reply; a full pipe (a slow or cut link) is waited out
        for up to ``patience_s``, since by then the supervisor has given the task to
        another agent anyway."""
        assert self._dealer is not None
        give_up = time.monotonic() + patience_s
        pause = 0.01
        while not await self._dealer.send(reply):
            if time.monotonic() + pause > give_up:
                log.warning("reply_not_sent", task_id=reply.task_id, waited_s=patience_s)
                return
            await asyncio.sleep(pause)
            pause = min(2 * pause, 1.0)

    async def _attempt(self, task: Task) -> Result | TaskError:
        role = self.roles.get(task.role)
        if role is None:
            return TaskError(task.task_id, f"this agent does not serve role {task.role!r}")
        try:
            request = role.decode_request(bytes(task.body))
        except msgspec.DecodeError as exc:
            return TaskError(task.task_id, f"undecodable {task.role} request: {exc}")
        if role.execute is not None:
            started = time.perf_counter()
            output = await role.execute(request)
            usage = Usage(seconds=time.perf_counter() - started, calls=1)
            return Result(task.task_id, msgspec.Raw(_encoder.encode(output)), usage)
        usage = Usage()
        if role.draft is not None and (draft := role.draft.prompt(request)) is not None:
            sampling = role.draft.sampling
            if task.seed is not None:
                sampling = dataclasses.replace(sampling, seed=task.seed)
            try:
                completion = await self.backend.complete(draft, None, sampling)
            except BackendCancelled:
                raise asyncio.CancelledError from None
            except BackendError as exc:
                return TaskError(task.task_id, f"backend error (draft): {exc}")
            usage = _added(usage, completion)
            request = role.draft.attach(request, completion.text)
        messages = role.prompt(request)
        reasons: list[str] = []
        for attempt in range(1 + self.output_retries):
            sampling = role.sampling
            if task.seed is not None:
                sampling = dataclasses.replace(sampling, seed=output_try_seed(task.seed, attempt))
            try:
                completion = await self.backend.complete(
                    messages, role.schema_for(request), sampling
                )
            except BackendCancelled:
                raise asyncio.CancelledError from None
            except BackendError as exc:
                return TaskError(task.task_id, f"backend error: {exc}", usage)
            usage = _added(usage, completion)
            try:
                output = role.parse(request, completion.text)
            except InvalidOutput as exc:
                reason = str(exc)
                if completion.finish_reason == "length":
                    reason = f"output truncated at max_tokens; {reason}"
                reasons.append(reason)
                log.warning("invalid_output", attempt=attempt + 1, reason=reason[:300])
                continue
            return Result(task.task_id, msgspec.Raw(_encoder.encode(output)), usage)
        summary = "; ".join(f"try {i + 1}: {r[:200]}" for i, r in enumerate(reasons))
        return TaskError(
            task.task_id, f"invalid output after {len(reasons)} tries: {summary}", usage
        )


def _added(usage: Usage, completion: Completion) -> Usage:
    """``usage`` with one more model call counted."""
    return Usage(
        usage.prompt_tokens + completion.prompt_tokens,
        usage.completion_tokens + completion.completion_tokens,
        usage.seconds + completion.seconds,
        usage.calls + 1,
    )
