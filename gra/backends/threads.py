"""Blocking model work in a worker thread, one call at a time, safe to cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def run_exclusive(
    lock: asyncio.Lock, work: Callable[[], T], cancelled: threading.Event, *, nice: int = 0
) -> T:
    """Run ``work`` in a worker thread while holding ``lock``.

    A thread cannot be interrupted: a cancelled caller sets ``cancelled``
    (``work`` is expected to stop at its next check, e.g. llama.cpp's next
    token) and keeps ``lock`` until the thread has really returned, so the
    next call never runs beside it on the same model. Then the cancellation
    goes on up. ``nice > 0`` runs ``work`` in a thread of its own at that
    lower CPU priority (see ``in_thread``).
    """
    async with lock:
        running = asyncio.ensure_future(in_thread(work, nice))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            cancelled.set()
            while not running.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({running})
            if not running.cancelled():
                running.exception()  # retrieved: nobody is left to receive it
            raise
        finally:
            cancelled.set()


async def in_thread(work: Callable[[], T], nice: int = 0) -> T:
    """``work()`` in a worker thread; with ``nice > 0``, in a new thread that lowers
    its own priority first, so that it only takes CPU time nothing else wants.

    Linux keeps a nice value per thread, so only this thread is affected (a
    pool thread is not used: an unprivileged process cannot raise a priority
    back). Elsewhere ``nice`` is ignored.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return await asyncio.to_thread(work)
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if outcome.done():
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)

    def target() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name="gra-low-priority", daemon=True).start()
    return await outcome
