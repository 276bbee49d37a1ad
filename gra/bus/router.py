"""The supervisor's side of the bus: one ROUTER socket.

Frames are ``[agent identity, msgpack payload]``. Anything that does not
decode is logged, counted and dropped. Sends never block: with
ROUTER_MANDATORY an unknown or vanished peer is an error we see (not a silent
drop), and a full pipe is reported back to the caller as ``False``.

The socket is a plain (synchronous) pyzmq socket driven from asyncio by hand
(gra.bus.socket_io): a send is one non-blocking call, and ``recv_batch``
waits for readability once and then drains everything already queued.
"""

from __future__ import annotations

import errno
from collections import deque
from pathlib import Path

import structlog
import zmq
import zmq.asyncio

from gra.bus.endpoints import cleanup, prepare_bind
from gra.bus.security import authorised_key_names, secure_server
from gra.bus.socket_io import (
    COPY_THRESHOLD,
    DECODE_ERRORS,
    MAX_FRAME_BYTES,
    NOBLOCK,
    NOBLOCK_MORE,
    RCVMORE,
    RECV_REFILL,
    Readiness,
)
from gra.log_budget import LogBudget
from gra.protocols.messages import FRAME_DECODER, FRAME_ENCODER, Frame, Hello, Message

log = structlog.get_logger("gra.bus")

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.EAGAIN, zmq.EHOSTUNREACH, zmq.EAGAIN})


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
        # A synchronous socket even on an asyncio context: see the module docstring.
        self._socket: zmq.Socket[bytes] = context.socket(zmq.ROUTER, socket_class=zmq.Socket)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.RCVHWM, hwm)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._authenticator = (
            secure_server(context, self._socket, curve_keys) if curve_keys is not None else None
        )
        # With CURVE: the authorised keys by their z85 public key, and the key
        # each routing identity said hello with. A frame from that identity over
        # any other key is dropped, so no key can speak for another's agent.
        self._key_names = authorised_key_names(curve_keys) if curve_keys is not None else None
        self._peer_keys: dict[bytes, str | None] = {}
        self._log_budget = LogBudget()
        prepare_bind(endpoint)
        self._socket.bind(endpoint)
        # A tcp endpoint may name port 0; report the port actually bound.
        self.bound = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._ready = Readiness(self._socket)
        self._pending: deque[tuple[bytes, Frame]] = deque()

    async def recv(self) -> tuple[bytes, Frame]:
        """The next well-formed frame; malformed ones are dropped on the way."""
        if not self._pending:
            self._pending.extend(await self.recv_batch(RECV_REFILL))
        return self._pending.popleft()

    async def recv_batch(self, max_frames: int = 256) -> list[tuple[bytes, Frame]]:
        """Every well-formed frame already queued (at most ``max_frames``, at least one).

        Waits only while nothing is queued, and otherwise yields to the event
        loop once first, so a bus that never runs dry cannot starve timers.
        """
        if self._pending:
            count = min(max_frames, len(self._pending))
            return [self._pending.popleft() for _ in range(count)]
        return await self._ready.next_batch(self._drain, max_frames)

    def _drain(self, max_frames: int) -> list[tuple[bytes, Frame]]:
        """Receive and decode without blocking until ``max_frames`` or EAGAIN."""
        socket = self._socket
        recv = socket.recv
        batch: list[tuple[bytes, Frame]] = []
        decode = FRAME_DECODER.decode
        while len(batch) < max_frames:
            try:
                identity = recv(NOBLOCK)
            except zmq.Again:
                break
            # Messages arrive whole, so the other parts are already here.
            if not socket.get(RCVMORE):
                self._drop("frame_count", identity, "1 parts")
                continue
            # copy=False: no copy into a bytes object, and msgspec.Raw bodies
            # stay views of the received buffer.
            payload = recv(NOBLOCK, copy=False)
            if socket.get(RCVMORE):
                extra = 0
                while socket.get(RCVMORE):
                    recv(NOBLOCK, copy=False)
                    extra += 1
                self._drop("frame_count", identity, f"{2 + extra} parts")
                continue
            try:
                frame = decode(payload)
            except DECODE_ERRORS as exc:
                self._drop("undecodable", identity, str(exc)[:200])
                continue
            if self._key_names is not None:
                key = self._key_names.get(payload.get("User-Id"))
                if type(frame) is Hello:
                    self._peer_keys[identity] = key
                elif identity not in self._peer_keys or self._peer_keys[identity] != key:
                    self._drop("key_mismatch", identity, f"frame over key {key!r}")
                    continue
            batch.append((identity, frame))
        return batch

    def peer_key(self, identity: bytes) -> str | None:
        """The name of the authorised key ``identity`` said hello with (None without CURVE)."""
        return self._peer_keys.get(identity)

    def _drop(self, reason: str, identity: bytes, detail: str) -> None:
        self.dropped += 1
        self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + 1
        allowed, missed = self._log_budget.take("frame_dropped")
        if missed:
            log.warning("frames_dropped_unlogged", count=missed)
        if allowed:
            log.warning("frame_dropped", reason=reason, peer=identity[:64].hex(), detail=detail)

    def send_now(self, identity: bytes, message: Message) -> bool:
        """Send without blocking; False if the peer is gone or its pipe is full."""
        payload = FRAME_ENCODER.encode(message)
        socket = self._socket
        try:
            # ROUTER checks the peer and its pipe on the identity part; once
            # that is accepted, the payload part cannot be refused.
            socket.send(identity, NOBLOCK_MORE)
            socket.send(payload, NOBLOCK, copy=len(payload) < COPY_THRESHOLD)
        except zmq.ZMQError as exc:
            if exc.errno in _UNREACHABLE:
                return False
            raise
        finally:
            # The send may have consumed the descriptor's signal of a new message.
            if self._ready.waiting:
                self._ready.poke()
        return True

    async def send(self, identity: bytes, message: Message) -> bool:
        """``send_now`` for callers that await: it never blocks, so it never suspends."""
        return self.send_now(identity, message)

    def close(self) -> None:
        self._ready.detach(zmq.ZMQError(zmq.ENOTSOCK, "the router was closed"))
        self._socket.close(linger=0)
        for count in self._log_budget.drain().values():
            log.warning("frames_dropped_unlogged", count=count)
        if self._authenticator is not None:
            self._authenticator.stop()
        cleanup(self.endpoint)
