"""The supervisor's side of the bus: one ROUTER socket.

Frames are ``[agent identity, msgpack payload]``. Anything that does not
decode is logged, counted and dropped. Sends never block: with
ROUTER_MANDATORY an unknown or vanished peer is an error we see (not a silent
drop), and a full pipe is reported back to the caller as ``False``.
"""

from __future__ import annotations

import errno
from pathlib import Path

import msgspec
import structlog
import zmq
import zmq.asyncio

from gra.bus.endpoints import cleanup, prepare_bind
from gra.bus.security import secure_server
from gra.protocols.messages import Frame, Message, decode_frame, encode_frame

log = structlog.get_logger("gra.bus")

MAX_FRAME_BYTES = 16 * 1024 * 1024


class Router:
    def __init__(
        self,
        context: zmq.asyncio.Context,
        endpoint: str,
        *,
        hwm: int = 10_000,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        curve_keys: Path | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.dropped = 0
        self.drop_reasons: dict[str, int] = {}
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.RCVHWM, hwm)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._authenticator = (
            secure_server(context, self._socket, curve_keys) if curve_keys is not None else None
        )
        prepare_bind(endpoint)
        self._socket.bind(endpoint)
        # A tcp endpoint may name port 0; report the port actually bound.
        self.bound = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    async def recv(self) -> tuple[bytes, Frame]:
        """The next well-formed frame; malformed ones are dropped on the way."""
        while True:
            parts = await self._socket.recv_multipart(copy=True)
            if len(parts) != 2:
                self._drop("frame_count", parts[0] if parts else b"", f"{len(parts)} parts")
                continue
            identity, payload = parts
            try:
                return identity, decode_frame(payload)
            except (msgspec.DecodeError, ValueError, TypeError) as exc:
                self._drop("undecodable", identity, str(exc)[:200])

    def _drop(self, reason: str, identity: bytes, detail: str) -> None:
        self.dropped += 1
        self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + 1
        log.warning("frame_dropped", reason=reason, peer=identity[:64].hex(), detail=detail)

    async def send(self, identity: bytes, message: Message) -> bool:
        """Send without blocking; False if the peer is gone or its pipe is full."""
        try:
            await self._socket.send_multipart([identity, encode_frame(message)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.EAGAIN, zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise
        return True

    def close(self) -> None:
        self._socket.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        cleanup(self.endpoint)
