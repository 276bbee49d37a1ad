"""The agent's side of the bus: one DEALER socket, identified by agent id.

Driven like the Router (see gra.bus.socket_io): a synchronous socket, sends that
never block, receives that wait once and then drain what is queued.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import structlog
import zmq
import zmq.asyncio

from gra.bus.security import secure_client
from gra.bus.socket_io import (
    COPY_THRESHOLD,
    DECODE_ERRORS,
    MAX_FRAME_BYTES,
    NOBLOCK,
    RCVMORE,
    RECV_REFILL,
    Readiness,
)
from gra.protocols.messages import FRAME_DECODER, FRAME_ENCODER, Frame, Message

log = structlog.get_logger("gra.bus")


class Dealer:
    def __init__(
        self,
        context: zmq.asyncio.Context | zmq.Context,
        endpoint: str,
        identity: str,
        *,
        hwm: int = 10_000,
        curve: tuple[Path, Path] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.dropped = 0
        self._socket: zmq.Socket[bytes] = context.socket(zmq.DEALER, socket_class=zmq.Socket)
        self._socket.setsockopt(zmq.IDENTITY, identity.encode())
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.RCVHWM, hwm)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self._socket.setsockopt(zmq.LINGER, 0)
        # Reconnect quickly after a supervisor restart or a network cut.
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if curve is not None:
            secret_key, server_key = curve
            secure_client(self._socket, secret_key, server_key)
        self._socket.connect(endpoint)
        self._ready = Readiness(self._socket)
        self._pending: deque[Frame] = deque()

    async def recv(self) -> Frame:
        """The next well-formed frame; malformed ones are dropped on the way."""
        if not self._pending:
            self._pending.extend(await self.recv_batch(RECV_REFILL))
        return self._pending.popleft()

    async def recv_batch(self, max_frames: int = 256) -> list[Frame]:
        """Every well-formed frame already queued (at most ``max_frames``, at least one).

        Waits only while nothing is queued, and otherwise yields to the event
        loop once first, so a busy link cannot starve the agent's other tasks.
        """
        if self._pending:
            count = min(max_frames, len(self._pending))
            return [self._pending.popleft() for _ in range(count)]
        return await self._ready.next_batch(self._drain, max_frames)

    def _drain(self, max_frames: int) -> list[Frame]:
        """Receive and decode without blocking until ``max_frames`` or EAGAIN."""
        socket = self._socket
        recv = socket.recv
        batch: list[Frame] = []
        decode = FRAME_DECODER.decode
        while len(batch) < max_frames:
            try:
                payload = recv(NOBLOCK, copy=False)
            except zmq.Again:
                break
            if socket.get(RCVMORE):
                parts = 1
                while socket.get(RCVMORE):
                    recv(NOBLOCK, copy=False)
                    parts += 1
                self._drop("frame_count", f"{parts} parts")
                continue
            try:
                batch.append(decode(payload))
            except DECODE_ERRORS as exc:
                self._drop("undecodable", str(exc)[:200])
        return batch

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped += 1
        log.warning("frame_dropped", reason=reason, detail=detail)

    def send_now(self, message: Message) -> bool:
        """Send without blocking; False if the pipe is full (or not yet connected)."""
        payload = FRAME_ENCODER.encode(message)
        try:
            self._socket.send(payload, NOBLOCK, copy=len(payload) < COPY_THRESHOLD)
        except zmq.Again:
            return False
        finally:
            # The send may have consumed the descriptor's signal of a new message.
            if self._ready.waiting:
                self._ready.poke()
        return True

    async def send(self, message: Message) -> bool:
        """``send_now`` for callers that await: it never blocks, so it never suspends."""
        return self.send_now(message)

    def close(self, linger_ms: int = 0) -> None:
        self._ready.detach(zmq.ZMQError(zmq.ENOTSOCK, "the dealer was closed"))
        self._socket.close(linger=linger_ms)
