"""Prompt warm-up: an idle agent evaluates its roles' shared prompt prefixes.

The agent runtime is driven in process over a real ROUTER socket, with a
backend double that records what it is asked (``WarmRecordingBackend``); the
saving itself is checked on a real llama.cpp model, by token counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
import structlog.testing

from gra.agents.roles import ADJUDICATOR, GENERATOR, REVIEWER, get_role
from gra.agents.runtime import AgentRuntime
from gra.backends.base import ChatMessages, Completion, JsonSchema, Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.bus import Router
from gra.models import resolve
from gra.protocols.messages import Hello, Result, Shutdown, Task, Welcome
from gra.protocols.roles import ReviewRequest
from tests.conftest import next_frame
from tests.doubles import ScriptedBackend


class WarmRecordingBackend(ScriptedBackend):
    """Records warm-ups and calls in order; a call blocks until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__("double")
        self.events: list[tuple[str, str]] = []
        self.call_started = asyncio.Event()
        self.release = asyncio.Event()

    async def warm(self, messages: ChatMessages, schema: JsonSchema) -> bool:
        self.events.append(("warm", messages[0]["content"]))
        return True

    async def complete(
        self, messages: ChatMessages, schema: JsonSchema, sampling: Sampling
    ) -> Completion:
        self.events.append(("call", messages[0]["content"]))
        self.call_started.set()
        await self.release.wait()
        return await super().complete(messages, schema, sampling)


def start_agent(router: Router, backend: WarmRecordingBackend) -> asyncio.Task[None]:
    roles = {role.name: role for role in (GENERATOR, REVIEWER, ADJUDICATOR)}
    runtime = AgentRuntime("warm-0", backend, roles, router.bound, heartbeat_interval_s=0.2)
    return asyncio.create_task(runtime.run())


async def stop_agent(router: Router, identity: bytes, agent: asyncio.Task[None]) -> None:
    assert await router.send(identity, Shutdown(drain=True, reason="test over"))
    await asyncio.wait_for(agent, 10)


def system_text(role: Any) -> str:
    return role.prompt(role.warmup)[0]["content"]


async def test_an_idle_agent_warms_the_roles_that_share_a_prefix(router: Router) -> None:
    backend = WarmRecordingBackend()
    agent = start_agent(router, backend)
    identity, _ = await next_frame(router, Hello)
    assert backend.events == []  # nothing before it is registered
    assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=50))
    for _ in range(200):
        if len(backend.events) == 2:
            break
        await asyncio.sleep(0.01)
    # The generator has no warm-up (its first task comes at once); the reviewer
    # and the adjudicator warm their fixed system text, in the agent's role order.
    assert backend.events == [("warm", system_text(REVIEWER)), ("warm", system_text(ADJUDICATOR))]
    await stop_agent(router, identity, agent)


async def test_a_task_that_comes_first_is_never_held_up_by_a_warm_up(router: Router) -> None:
    backend = WarmRecordingBackend()
    agent = start_agent(router, backend)
    identity, _ = await next_frame(router, Hello)
    body = msgspec.Raw(msgspec.msgpack.encode(ReviewRequest("math", "What is 2 + 2?", "4.")))
    assert await router.send(identity, Task("t-1", "i-1", "reviewer", 1, 30.0, body))
    await asyncio.wait_for(backend.call_started.wait(), 10)
    assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=50))
    await asyncio.sleep(0.3)  # time for a warm-up to start, if one were allowed
    backend.release.set()
    _, result = await next_frame(router, Result)
    assert result.task_id == "t-1"
    assert [kind for kind, _ in backend.events] == ["call"]
    await stop_agent(router, identity, agent)


class SlowWarmBackend(ScriptedBackend):
    """One model, one call at a time (as llama.cpp): a warm-up holds the model until
    it is cancelled."""

    def __init__(self) -> None:
        super().__init__("double")
        self.model_lock = asyncio.Lock()
        self.warming = asyncio.Event()
        self.warm_cancelled = False

    async def warm(self, messages: ChatMessages, schema: JsonSchema) -> bool:
        async with self.model_lock:
            self.warming.set()
            try:
                await asyncio.Event().wait()  # a long prompt, evaluated token batch by batch
            except asyncio.CancelledError:
                self.warm_cancelled = True
                raise
        return True

    async def complete(
        self, messages: ChatMessages, schema: JsonSchema, sampling: Sampling
    ) -> Completion:
        async with self.model_lock:
            return await super().complete(messages, schema, sampling)


async def test_a_task_that_comes_during_a_warm_up_cuts_it_short(router: Router) -> None:
    backend = SlowWarmBackend()
    roles = {role.name: role for role in (GENERATOR, REVIEWER, ADJUDICATOR)}
    runtime = AgentRuntime("slow-0", backend, roles, router.bound, heartbeat_interval_s=0.2)
    agent = asyncio.create_task(runtime.run())
    identity, _ = await next_frame(router, Hello)
    assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=50))
    await asyncio.wait_for(backend.warming.wait(), 10)
    body = msgspec.Raw(msgspec.msgpack.encode(ReviewRequest("math", "What is 2 + 2?", "4.")))
    assert await router.send(identity, Task("t-1", "i-1", "reviewer", 1, 30.0, body))
    _, result = await asyncio.wait_for(next_frame(router, Result), 10)
    assert result.task_id == "t-1"
    assert backend.warm_cancelled
    await stop_agent(router, identity, agent)


class PlainBackend(ScriptedBackend):
    """A plugin backend written without ``warm``."""

    def __getattribute__(self, name: str) -> Any:
        if name == "warm":
            raise AttributeError(name)
        return super().__getattribute__(name)


async def test_a_backend_without_warm_serves_tasks_as_before(router: Router) -> None:
    roles = {role.name: role for role in (GENERATOR, REVIEWER, ADJUDICATOR)}
    runtime = AgentRuntime("plain-0", PlainBackend("double"), roles, router.bound)
    with structlog.testing.capture_logs() as logged:
        agent = asyncio.create_task(runtime.run())
        identity, _ = await next_frame(router, Hello)
        assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=50))
        await asyncio.sleep(0.3)  # idle and registered: when a warm-up would start
        body = msgspec.Raw(msgspec.msgpack.encode(ReviewRequest("math", "What is 2 + 2?", "4.")))
        assert await router.send(identity, Task("t-1", "i-1", "reviewer", 1, 30.0, body))
        _, result = await next_frame(router, Result)
        assert result.task_id == "t-1"
        await stop_agent(router, identity, agent)
    events = [entry["event"] for entry in logged]
    assert "registered" in events  # the capture saw the agent's log
    assert not [e for e in events if e.startswith("warmup") or e == "role_warmed"]


@pytest.mark.slow
async def test_a_warmed_llamacpp_model_evaluates_only_the_item_on_its_first_review() -> None:
    review = get_role("reviewer")
    request = ReviewRequest("math", "What is 12 x 12?", "12 x 12 = 144.")
    sampling = Sampling(max_tokens=16, temperature=0.2, seed=3)
    evaluated: dict[str, tuple[int, int]] = {}
    for mode in ("cold", "warm"):
        backend = LlamaCppBackend(
            "gemma-3-270m", resolve("gemma-3-270m"), n_ctx=2048, prompt_cache_mib=64
        )
        await backend.start()
        try:
            if mode == "warm":
                assert await backend.warm(review.prompt(review.warmup), review.schema)
            await backend.complete(review.prompt(request), review.schema, sampling)
            call = backend.last_call
            assert call is not None
            evaluated[mode] = (call.prompt_tokens, call.prompt_evaluated)
        finally:
            await backend.aclose()
    (tokens, cold), (warm_tokens, warm) = evaluated["cold"], evaluated["warm"]
    assert tokens == warm_tokens
    assert cold >= 0.9 * tokens
    # The rubric came from the warm-up's saved state: only the item was evaluated.
    assert warm < 0.5 * tokens


@pytest.mark.slow
async def test_no_warm_up_without_a_prompt_cache() -> None:
    backend = LlamaCppBackend(
        "gemma-3-270m", resolve("gemma-3-270m"), n_ctx=2048, prompt_cache_mib=0
    )
    await backend.start()
    try:
        review = get_role("reviewer")
        assert not await backend.warm(review.prompt(review.warmup), review.schema)
    finally:
        await backend.aclose()
