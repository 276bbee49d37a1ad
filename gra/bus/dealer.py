"""The agent's side of the bus: one DEALER socket, identified by agent id."""

from __future__ import annotations

from pathlib import Path

import msgspec
import structlog
import zmq
import zmq.asyncio

from gra.bus.router import MAX_FRAME_BYTES
from gra.bus.security import secure_client
from gra.protocols.messages import Frame, Message, decode_frame, encode_frame

log = structlog.get_logger("gra.bus")


class Dealer:
    def __init__(
        self,
        context: zmq.asyncio.Context,
        endpoint: str,
        identity: str,
        *,
        hwm: int = 10_000,
        curve: tuple[Path, Path] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.dropped = 0
        self._socket = context.socket(zmq.DEALER)
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

    async def recv(self) -> Frame:
        while True:
            parts = await self._socket.recv_multipart(copy=True)
            if len(parts) != 1:
                self.dropped += 1
                log.warning("frame_dropped", reason="frame_count", parts=len(parts))
                continue
            try:
                return decode_frame(parts[0])
            except (msgspec.DecodeError, ValueError, TypeError) as exc:
                self.dropped += 1
                log.warning("frame_dropped", reason="undecodable", detail=str(exc)[:200])

    async def send(self, message: Message) -> bool:
        try:
            await self._socket.send(encode_frame(message), flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EAGAIN:
                return False
            raise
        return True

    def close(self, linger_ms: int = 0) -> None:
        self._socket.close(linger=linger_ms)
