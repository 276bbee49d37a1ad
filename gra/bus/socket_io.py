"""What the Router and the Dealer share: limits, and waiting on a synchronous socket.

gra drives plain (synchronous) pyzmq sockets from asyncio by hand: pyzmq's
asyncio wrapper costs a future and several callbacks per send and per
receive, which made it the bus's bottleneck. A send is then one non-blocking
call, and a receive waits for readability once (``Readiness``) and drains
everything already queued with non-blocking calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

import msgspec
import zmq

MAX_FRAME_BYTES = 16 * 1024 * 1024
# Below this, copying a payload is cheaper than pinning it in a zmq.Frame
# (pyzmq's own default threshold); above it, sends hand the buffer over as is.
COPY_THRESHOLD = zmq.COPY_THRESHOLD
# Frames decoded per ``recv()`` refill: big enough to amortise the wait, small
# enough not to pull much of the socket's queue into Python at once.
RECV_REFILL = 64
DECODE_ERRORS = (msgspec.DecodeError, ValueError, TypeError)
# Plain ints: pyzmq's enum flags cost an enum operation per use on the hot path.
NOBLOCK = int(zmq.NOBLOCK)
NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)

T = TypeVar("T")


class Readiness:
    """Lets coroutines wait until a synchronous zmq socket has a message to read.

    A zmq socket's file descriptor is edge-triggered and signals only that the
    socket's state *may* have changed; any call on the socket (a send too)
    can consume that signal. So the real state is read from ``EVENTS`` before
    every wait, on every wake-up, and after sends while someone waits
    (``poke``: once per turn of the event loop, however many sends there
    were) -- otherwise a send from another task could leave a receiver asleep
    with messages queued.
    """

    def __init__(self, socket: zmq.Socket[bytes]) -> None:
        self._socket = socket
        self._fd: int = socket.get(zmq.FD)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._poke_due = False

    @property
    def waiting(self) -> bool:
        return bool(self._waiters)

    def readable(self) -> bool:
        return bool(self._socket.get(_EVENTS) & _POLLIN)

    async def wait(self) -> None:
        """Return once a message can be received without blocking."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.detach()
            # Registered once and kept: a reader per wait would cost two
            # epoll_ctl calls per message when the bus runs one at a time.
            loop.add_reader(self._fd, self._on_fd)
            self._loop = loop
        while not self.readable():
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)

    async def next_batch(self, drain: Callable[[int], list[T]], max_frames: int) -> list[T]:
        """Wait for messages, then ``drain`` up to ``max_frames``; never an empty batch.

        When messages are already queued it still yields to the event loop once,
        so a bus that never runs dry cannot starve timers and heartbeats.
        """
        while True:
            if self.readable():
                await asyncio.sleep(0)
            else:
                await self.wait()
            batch = drain(max_frames)
            if self.waiting:
                self.poke()
            if batch:
                return batch

    def poke(self) -> None:
        """Call after any other call on the socket: the waiters are woken, before the
        event loop next blocks, if a message is readable then."""
        if self._waiters and not self._poke_due and self._loop is not None:
            self._poke_due = True
            self._loop.call_soon(self._on_poke)

    def _on_poke(self) -> None:
        self._poke_due = False
        if self._waiters:
            self._on_fd()

    def _on_fd(self) -> None:
        # Reading EVENTS also clears the descriptor's signal, which would
        # otherwise make the (level-triggered) event loop call us again at once.
        try:
            readable = self.readable()
        except zmq.ZMQError:
            self.detach()
            return
        if readable:
            self._wake_all()

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def detach(self, error: BaseException | None = None) -> None:
        """Stop watching the descriptor; fail pending waits with ``error`` if given."""
        if self._loop is not None:
            if not self._loop.is_closed():
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(self._fd)
            self._loop = None
        self._poke_due = False  # a check scheduled on that loop may never run
        if error is not None:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(error)
