"""The bus under garbage: 10,000 malformed, truncated, wrongly-typed and
oversized frames thrown at the supervisor's endpoint during a run. No crash,
the run's results unaffected, every undecodable frame counted in summary.json.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gra.protocols.messages import (
    FRAME_DECODER,
    Goodbye,
    Heartbeat,
    Hello,
    Result,
    TaskError,
    Usage,
)
from tests.conftest import scripted_config
from tests.test_fleet import check_outputs, make_conductor

pytestmark = pytest.mark.guarantee  # README, Reliability

VALID = [
    msgspec.msgpack.encode(m)
    for m in (
        Hello("x", "m", ("reviewer",), 1, "b", 1, "h"),
        Heartbeat(sent_at=1.0),
        Result("t", msgspec.Raw(b"\x80"), Usage()),
        TaskError("t", "r"),
        Goodbye("bye"),
    )
]
TAGS = ["hello", "welcome", "reject", "heartbeat", "task", "result", "task_error", "goodbye", "?"]
values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=20),
)

garbage = st.one_of(
    st.binary(max_size=512),
    st.sampled_from(VALID).flatmap(lambda b: st.integers(0, len(b) - 1).map(lambda n: b[:n])),
    st.builds(
        lambda tag, fields: msgspec.msgpack.encode({"kind": tag, **fields}),
        st.sampled_from(TAGS),
        st.dictionaries(st.text(max_size=12), values, max_size=6),
    ),
    st.lists(values, max_size=5).map(msgspec.msgpack.encode),
)


def generate_frames(count: int) -> list[bytes]:
    frames: list[bytes] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(garbage)
    def collect(frame: bytes) -> None:
        frames.append(frame)

    collect()
    return frames


def undecodable(frame: bytes) -> bool:
    try:
        FRAME_DECODER.decode(frame)
    except (msgspec.DecodeError, ValueError, TypeError):
        return True
    return False


@pytest.mark.slow
async def test_ten_thousand_bad_frames_during_a_run(tmp_path: Path, double_env) -> None:
    frames = generate_frames(10_000)
    assert len(frames) >= 9_000
    expected_drops = sum(undecodable(f) for f in frames) + 100  # + the multipart frames
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.1")
    config = scripted_config(tmp_path, ["a", "b", "c", "d"], target=30)
    conductor = make_conductor(config, tmp_path / "out")

    async def attack() -> None:
        while conductor.router is None or not conductor.fleet.live():
            await asyncio.sleep(0.01)
        context = zmq.asyncio.Context()
        attacker = context.socket(zmq.DEALER)
        attacker.setsockopt(zmq.LINGER, 0)
        attacker.setsockopt(zmq.IDENTITY, b"attacker")
        attacker.connect(conductor.router.bound)
        try:
            for i, frame in enumerate(frames):
                await attacker.send(frame)
                if i % 100 == 0:
                    await attacker.send_multipart([b"one", b"too many"])
                    await asyncio.sleep(0)
            # Oversized frames: libzmq refuses them at the door and drops the link.
            oversized = context.socket(zmq.DEALER)
            oversized.setsockopt(zmq.LINGER, 0)
            oversized.connect(conductor.router.bound)
            for _ in range(3):
                await oversized.send(b"\x00" * (17 * 1024 * 1024))
            await asyncio.sleep(0.5)
            oversized.close(0)
        finally:
            attacker.close(0)
            context.term()

    attacker = asyncio.create_task(attack())
    summary = await asyncio.wait_for(conductor.run(), 180)
    await attacker
    accepted, rejected = check_outputs(tmp_path / "out", summary)
    assert len(accepted) >= 30 and not rejected
    assert summary.bus.dropped_frames == expected_drops
    assert summary.bus.drop_reasons["frame_count"] == 100
    assert sorted(summary.agents) == ["a-0", "b-0", "c-0", "d-0"]
