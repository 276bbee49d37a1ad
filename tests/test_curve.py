"""The authenticated tcp bus: only agents holding an authorised CURVE key get in."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from gra.bus import Dealer, Router
from gra.bus.security import KeyFileError, create_keys, load_secret
from gra.cli import main
from gra.protocols.messages import Heartbeat, Hello
from tests.conftest import scripted_config
from tests.test_fleet import _free_port, check_outputs, make_conductor

pytestmark = pytest.mark.guarantee  # README, Reliability


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_gra_keys_makes_private_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    assert main(["keys", str(keys), "--agent", "alice", "--agent", "bob"]) == 0
    assert "curve_keys" in capsys.readouterr().out
    assert mode(keys) == 0o700
    for path in [
        keys / "supervisor.key",
        keys / "supervisor.key_secret",
        keys / "agents" / "alice.key_secret",
        keys / "authorized" / "bob.key",
    ]:
        assert mode(path) == 0o600, path
    assert not (keys / "authorized" / "alice.key_secret").exists()
    first = (keys / "supervisor.key_secret").read_bytes()
    main(["keys", str(keys), "--agent", "carol"])  # adding agents keeps the supervisor key
    assert (keys / "supervisor.key_secret").read_bytes() == first


def test_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    create_keys(tmp_path / "keys", ["alice"])
    secret = tmp_path / "keys" / "agents" / "alice.key_secret"
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_secret(secret)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[Router, Path, zmq.asyncio.Context]]:
    keys = tmp_path / "keys"
    create_keys(keys, ["alice"])
    context = zmq.asyncio.Context()
    router = Router(context, f"tcp://127.0.0.1:{_free_port()}", curve_keys=keys)
    yield router, keys, context
    router.close()
    context.term()


async def test_only_authorised_keys_get_frames_in(secured, tmp_path: Path) -> None:
    router, keys, context = secured
    stranger_keys = tmp_path / "stranger"
    create_keys(stranger_keys, ["mallory"])
    server_key = keys / "supervisor.key"
    mallory = Dealer(
        context,
        router.bound,
        "mallory",
        curve=(stranger_keys / "agents" / "mallory.key_secret", server_key),
    )
    plain = Dealer(context, router.bound, "plain")
    alice = Dealer(
        context, router.bound, "alice", curve=(keys / "agents" / "alice.key_secret", server_key)
    )
    try:
        for _ in range(5):
            await mallory.send(Heartbeat(sent_at=1.0))
            await plain.send(Heartbeat(sent_at=2.0))
        hello = Hello("alice", "m", ("reviewer",), 1, "b", 1, "h")
        await alice.send(hello)
        await alice.send(Heartbeat(sent_at=3.0))
        assert await asyncio.wait_for(router.recv(), 10) == (b"alice", hello)
        assert router.peer_key(b"alice") == "alice"
        identity, frame = await asyncio.wait_for(router.recv(), 10)
        assert (identity, frame) == (b"alice", Heartbeat(sent_at=3.0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(router.recv(), 1.5)
        assert router.dropped == 0
    finally:
        for dealer in (mallory, plain, alice):
            dealer.close()


async def test_fleet_on_curve_tcp_with_a_remote_agent_and_an_intruder(
    tmp_path: Path, double_env
) -> None:
    keys = tmp_path / "keys"
    create_keys(keys, ["remote-1"])
    stranger = tmp_path / "stranger"
    create_keys(stranger, ["intruder"])
    port = _free_port()
    config = scripted_config(
        tmp_path,
        ["a", "b"],
        target=6,
        remote=("remote",),
        endpoint=f"tcp://127.0.0.1:{port}",
        curve_keys=keys,
        remote_keys={"remote": "remote-1"},
    )
    conductor = make_conductor(config, tmp_path / "out", expected_remote=1)

    def agent(name: str, secret: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gra", "agent", "--connect", f"tcp://127.0.0.1:{port}"]
        command += ["--backend", "plugin", "--factory", "tests.doubles:scripted"]
        command += ["--model", name, "--agent-id", name]
        command += ["--curve-secret", str(secret), "--server-key", str(keys / "supervisor.key")]
        return subprocess.Popen(command, stderr=subprocess.DEVNULL)

    intruder = agent("intruder", stranger / "agents" / "intruder.key_secret")
    remote = agent("remote", keys / "agents" / "remote-1.key_secret")
    try:
        summary = await asyncio.wait_for(conductor.run(), 120)
    finally:
        for process in (intruder, remote):
            process.kill()
            process.wait()
    assert summary.agents["remote"].completed > 0
    assert "intruder" not in summary.agents
    assert summary.bus.dropped_frames == 0
    check_outputs(tmp_path / "out", summary)


async def test_frames_count_only_over_the_key_that_said_hello(secured, tmp_path: Path) -> None:
    """An authorised key cannot speak for another key's agent: a frame over key B on
    the identity that said hello over key A (or before any hello) is dropped."""
    _, keys, _ = secured
    create_keys(keys, ["bob"])
    # A context of its own: one ZAP handler per context.
    context = zmq.asyncio.Context()
    other = Router(context, f"tcp://127.0.0.1:{_free_port()}", curve_keys=keys)
    server_key = keys / "supervisor.key"
    alice = Dealer(
        context, other.bound, "agent-x", curve=(keys / "agents" / "alice.key_secret", server_key)
    )
    try:
        await alice.send(Heartbeat(sent_at=1.0))  # before its hello: dropped
        await alice.send(Hello("agent-x", "m", ("reviewer",), 1, "b", 1, "h"))
        identity, frame = await asyncio.wait_for(other.recv(), 10)
        assert isinstance(frame, Hello) and other.peer_key(identity) == "alice"
        assert other.drop_reasons == {"key_mismatch": 1}
        alice.close()
        # bob takes the identity over once alice is gone and sends as her. (Until the
        # router has seen alice go, zmq itself refuses a second peer of her identity.)
        deadline = asyncio.get_running_loop().time() + 20
        while await other.send(identity, Heartbeat(sent_at=0.0)):
            assert asyncio.get_running_loop().time() < deadline, "alice never went"
            await asyncio.sleep(0.05)
        bob = Dealer(
            context, other.bound, "agent-x", curve=(keys / "agents" / "bob.key_secret", server_key)
        )
        try:
            # bob keeps sending: a connection zmq refused while it still held alice's
            # identity loses what was queued on it, and the dealer reconnects.
            deadline = asyncio.get_running_loop().time() + 20
            while other.drop_reasons.get("key_mismatch", 0) < 4:
                assert asyncio.get_running_loop().time() < deadline, other.drop_reasons
                await bob.send(Heartbeat(sent_at=2.0))
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(other.recv(), 0.3)
        finally:
            bob.close()
    finally:
        other.close()
        context.term()
