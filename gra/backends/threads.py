"""Blocking model work in a worker thread, one call at a time, safe to cancel."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_exclusive(lock: asyncio.Lock, work: Callable[[], T], cancelled: threading.Event) -> T:
    """Run ``work`` in a worker thread while holding ``lock``.

    A thread cannot be interrupted: a cancelled caller sets ``cancelled``
    (``work`` is expected to stop at its next check, e.g. llama.cpp's next
    token) and keeps ``lock`` until the thread has really returned, so the
    next call never runs beside it on the same model. Then the cancellation
    goes on up.
    """
    async with lock:
        running = asyncio.ensure_future(asyncio.to_thread(work))
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
