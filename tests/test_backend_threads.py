"""A cancelled model call keeps the model until its worker thread has stopped.

Plain blocking functions stand in for model work here (the order of what
they record is the assertion, never a duration); the last test cancels a
real llama.cpp call mid-sampling: it must stop short of its max_tokens, and
the next call on the same model must give valid output.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gra.agents.roles import get_role
from gra.backends.base import Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.backends.threads import run_exclusive
from gra.models import resolve
from gra.protocols.roles import ReviewRequest

pytestmark = pytest.mark.guarantee  # README, Reliability


async def test_a_cancelled_call_holds_the_model_until_its_thread_returns() -> None:
    lock = asyncio.Lock()
    order: list[str] = []
    first_started = threading.Event()
    first_flag, second_flag = threading.Event(), threading.Event()

    def first() -> str:
        first_started.set()
        first_flag.wait(10)  # "computing" until told to stop ...
        time.sleep(0.2)  # ... and finishing its current token after that
        order.append("first returned")
        return "first"

    def second() -> str:
        order.append("second started")
        return "second"

    call = asyncio.create_task(run_exclusive(lock, first, first_flag))
    await asyncio.to_thread(first_started.wait, 10)
    waiting = asyncio.create_task(run_exclusive(lock, second, second_flag))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert order == ["first returned"]  # the cancellation waited for the thread
    assert await waiting == "second"
    assert order == ["first returned", "second started"]


async def test_a_cancel_repeated_while_waiting_for_the_thread_still_waits() -> None:
    lock = asyncio.Lock()
    order: list[str] = []
    started, flag = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        flag.wait(10)
        time.sleep(0.2)
        order.append("returned")

    call = asyncio.create_task(run_exclusive(lock, work, flag))
    await asyncio.to_thread(started.wait, 10)
    call.cancel()
    await asyncio.sleep(0.05)
    call.cancel()  # e.g. a shutdown on top of a task's cancellation
    with pytest.raises(asyncio.CancelledError):
        await call
    assert order == ["returned"] and not lock.locked()


async def test_an_uncancelled_call_returns_its_result_and_its_errors() -> None:
    lock = asyncio.Lock()
    assert await run_exclusive(lock, lambda: 7, threading.Event()) == 7

    def broken() -> None:
        raise ValueError("bad model state")

    with pytest.raises(ValueError, match="bad model state"):
        await run_exclusive(lock, broken, threading.Event())
    assert not lock.locked()


@pytest.mark.slow
async def test_a_real_model_serves_the_next_call_after_one_cancelled_mid_sampling() -> None:
    backend = LlamaCppBackend("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=2048)
    await backend.start()
    review = get_role("reviewer")
    messages = review.prompt(ReviewRequest("math", "What is 12 x 12?", "12 x 12 = 144."))
    try:
        long = asyncio.create_task(
            backend.complete(messages, review.schema, Sampling(max_tokens=224, temperature=0.9))
        )
        await asyncio.sleep(2.0)  # well into sampling on this small model
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        # It stopped where it was, well short of its 224 tokens.
        assert backend.cancelled_after_tokens is not None
        assert backend.cancelled_after_tokens < 224
        completion = await backend.complete(
            messages, review.schema, Sampling(max_tokens=224, temperature=0.2, seed=3)
        )
        output = review.parse(ReviewRequest("math", "x", "y"), completion.text)
        assert 0 <= output.scores.mean() <= 10
    finally:
        await backend.aclose()


@pytest.mark.slow
async def test_a_real_model_stops_a_cancelled_call_between_prompt_batches() -> None:
    """A long prompt is evaluated a batch at a time, so a cancelled call (a warm-up
    that a task cuts short) frees the model before its whole prompt is done."""
    backend = LlamaCppBackend("gemma-3-270m", resolve("gemma-3-270m"), n_ctx=4096, n_batch=32)
    await backend.start()
    review = get_role("reviewer")
    essay = " ".join(
        f"Step {i}: add {i} to the running total and write it down." for i in range(40)
    )
    messages = review.prompt(ReviewRequest("math", "Sum 0 to 39.", essay))
    try:
        long = asyncio.create_task(
            backend.complete(messages, review.schema, Sampling(max_tokens=8, temperature=0.0))
        )
        await asyncio.sleep(0.3)  # a few batches into its ~900 prompt tokens
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        assert backend.cancelled_after_tokens == 0
        assert backend.cancelled_in_prompt is not None
        assert 0 < backend.cancelled_in_prompt < 700
        # The model's state is whole: the next call (the same prompt) completes.
        completion = await backend.complete(
            messages, review.schema, Sampling(max_tokens=8, temperature=0.0)
        )
        assert completion.completion_tokens > 0
        call = backend.last_call
        assert call is not None and call.prompt_evaluated < call.prompt_tokens
    finally:
        await backend.aclose()
