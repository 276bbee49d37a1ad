"""The bus's batched fast path on real sockets: ``recv_batch`` and ``send_now``.

Most tests use inproc://, where a send lands in the receiver's queue before
it returns, so "everything already queued" is exact rather than a race.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
import zmq
import zmq.asyncio

from gra.bus import Dealer, Router, private_ipc_endpoint
from gra.protocols.messages import Cancel, Heartbeat, Hello

ENDPOINT = "inproc://bus-batch"


def beat(n: int) -> bytes:
    return msgspec.msgpack.encode(Heartbeat(sent_at=float(n), in_flight=n))


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Router, zmq.Socket[bytes]]]:
    """A Router and a plain, synchronous DEALER peer named ``peer`` on one context."""
    context = zmq.asyncio.Context()
    router = Router(context, ENDPOINT)
    peer: zmq.Socket[bytes] = context.socket(zmq.DEALER, socket_class=zmq.Socket)
    peer.setsockopt(zmq.LINGER, 0)
    peer.setsockopt(zmq.IDENTITY, b"peer")
    peer.connect(ENDPOINT)
    yield router, peer
    peer.close(0)
    router.close()
    context.term()


async def test_recv_batch_drains_everything_queued_in_one_call(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, peer = wire
    for n in range(500):
        peer.send(beat(n))
    batch = await asyncio.wait_for(router.recv_batch(1000), 5)
    assert [frame for _, frame in batch] == [Heartbeat(float(n), n) for n in range(500)]
    assert {identity for identity, _ in batch} == {b"peer"}
    assert router.dropped == 0


async def test_recv_batch_stops_at_max_frames_and_keeps_the_rest(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, peer = wire
    for n in range(250):
        peer.send(beat(n))
    first = await asyncio.wait_for(router.recv_batch(100), 5)
    second = await asyncio.wait_for(router.recv_batch(1000), 5)
    assert [f.in_flight for _, f in first] == list(range(100))
    assert [f.in_flight for _, f in second] == list(range(100, 250))


async def test_garbage_in_the_middle_of_a_batch_is_dropped_and_the_rest_kept(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, peer = wire
    for n in range(10):
        peer.send(beat(n))
    peer.send(b"\xc1")  # never valid msgpack
    peer.send(msgspec.msgpack.encode({"kind": "nope"}))  # valid msgpack, not a frame
    peer.send(beat(99)[:-3])  # truncated
    peer.send_multipart([b"two", b"parts"])
    for n in range(10, 20):
        peer.send(beat(n))
    batch = await asyncio.wait_for(router.recv_batch(), 5)
    assert [f.in_flight for _, f in batch] == list(range(20))
    assert router.dropped == 4
    assert router.drop_reasons == {"undecodable": 3, "frame_count": 1}


async def test_recv_batch_returns_on_eagain_and_waits_only_when_empty(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, peer = wire
    for n in range(5):
        peer.send(beat(n))
    # Five are queued and 256 allowed: it must return the five, not wait for more.
    batch = await asyncio.wait_for(router.recv_batch(256), 5)
    assert len(batch) == 5
    waiting = asyncio.create_task(router.recv_batch(256))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing queued: it waits...
    peer.send(beat(7))
    batch = await asyncio.wait_for(waiting, 5)  # ...and wakes for the next frame
    assert [f.in_flight for _, f in batch] == [7]


async def test_a_batch_of_only_garbage_keeps_waiting_for_a_good_frame(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, peer = wire
    peer.send(b"\xc1")
    waiting = asyncio.create_task(router.recv_batch())
    while router.dropped == 0:
        await asyncio.sleep(0.01)
    assert not waiting.done()
    peer.send(beat(1))
    batch = await asyncio.wait_for(waiting, 5)
    assert [f for _, f in batch] == [Heartbeat(1.0, 1)]


async def test_a_send_while_a_receiver_waits_does_not_strand_it(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    # The socket's descriptor is edge-triggered, and a send processes the
    # socket's pending commands: a frame that arrives just before a send must
    # still wake the task waiting to receive.
    router, peer = wire
    peer.send(beat(0))
    await asyncio.wait_for(router.recv_batch(), 5)  # the peer is known now
    for n in range(1, 20):
        waiting = asyncio.create_task(router.recv_batch())
        await asyncio.sleep(0)
        assert not waiting.done()
        peer.send(beat(n))  # signals the router's descriptor...
        assert router.send_now(b"peer", Cancel(f"t{n}"))  # ...which this send consumes
        batch = await asyncio.wait_for(waiting, 5)
        assert [f.in_flight for _, f in batch] == [n]
        assert peer.recv() == msgspec.msgpack.encode(Cancel(f"t{n}"))


async def test_recv_and_recv_batch_interleave_in_order(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, peer = wire
    for n in range(200):
        peer.send(beat(n))
    seen: list[int] = []
    while len(seen) < 200:
        _, frame = await asyncio.wait_for(router.recv(), 5)
        seen.append(frame.in_flight)
        batch = await asyncio.wait_for(router.recv_batch(7), 5)
        assert len(batch) <= 7
        seen += [f.in_flight for _, f in batch]
    assert seen == list(range(200))


async def test_closing_the_router_fails_a_pending_receive(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, _ = wire
    waiting = asyncio.create_task(router.recv_batch())
    await asyncio.sleep(0)
    router.close()
    with pytest.raises(zmq.ZMQError):
        await asyncio.wait_for(waiting, 5)


async def test_send_to_an_unknown_peer_returns_false(
    wire: tuple[Router, zmq.Socket[bytes]],
) -> None:
    router, _ = wire
    assert router.send_now(b"nobody", Heartbeat(sent_at=0.0)) is False
    assert await router.send(b"nobody", Heartbeat(sent_at=0.0)) is False


async def test_send_to_a_vanished_peer_returns_false() -> None:
    context = zmq.asyncio.Context()
    router = Router(context, private_ipc_endpoint("batch"))
    dealer = Dealer(context, router.bound, "leaving")
    try:
        assert dealer.send_now(Heartbeat(sent_at=1.0))
        identity, _ = (await asyncio.wait_for(router.recv_batch(), 5))[0]
        assert identity == b"leaving"
        assert router.send_now(identity, Heartbeat(sent_at=2.0)) is True
        assert await asyncio.wait_for(dealer.recv_batch(), 5) == [Heartbeat(sent_at=2.0)]
        dealer.close()
        deadline = time.monotonic() + 10
        # The disconnect reaches the router asynchronously; sends succeed until it does.
        while router.send_now(identity, Heartbeat(sent_at=3.0)):
            assert time.monotonic() < deadline, "send to a closed peer never returned False"
            await asyncio.sleep(0.01)
    finally:
        router.close()
        context.term()


async def test_dealer_recv_batch_drains_and_drops_garbage() -> None:
    context = zmq.asyncio.Context()
    router: zmq.Socket[bytes] = context.socket(zmq.ROUTER, socket_class=zmq.Socket)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(ENDPOINT)
    dealer = Dealer(context, ENDPOINT, "agent")
    try:
        assert dealer.send_now(Hello("agent", "m", ("generator",), 1, "b", 1, "h"))
        identity, _ = router.recv_multipart()
        for n in range(50):
            router.send_multipart([identity, beat(n)])
        router.send_multipart([identity, b"\xc1"])
        router.send_multipart([identity, b"two", b"parts"])
        for n in range(50, 100):
            router.send_multipart([identity, beat(n)])
        batch = await asyncio.wait_for(dealer.recv_batch(1000), 5)
        assert [f.in_flight for f in batch] == list(range(100))
        assert dealer.dropped == 2
        router.send_multipart([identity, beat(100)])
        assert await asyncio.wait_for(dealer.recv(), 5) == Heartbeat(100.0, 100)
    finally:
        dealer.close()
        router.close(0)
        context.term()
