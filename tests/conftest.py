"""Shared fixtures: fleet configs that run real agent processes on real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq.asyncio

from gra.bus import Router, private_ipc_endpoint
from tests.guarantees import pytest_configure, pytest_runtest_makereport  # noqa: F401 (hooks)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "examples" / "seeds.jsonl"


@pytest.fixture(autouse=True)
def _agents_import_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent processes load the scripted backend from ``tests.doubles``."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Undo a test's in-process ``gra.logs.configure``: with its logger caching on,
    every module logger first used afterwards would be bound for good to that
    test's processors, and a later ``structlog.testing.capture_logs`` would see
    nothing from it."""
    yield
    structlog.reset_defaults()


def scripted_config(
    directory: Path,
    models: list[str],
    *,
    target: int = 6,
    max_in_flight: int | None = 4,
    capacity: int | None = None,
    max_instances: int | None = None,
    replicas: dict[str, int] | None = None,
    remote: tuple[str, ...] = (),
    endpoint: str | None = None,
    extra: str = "",
    dedup: bool = False,
    rounds: int = 1,
    curve_keys: Path | None = None,
    seed: int = 0,
    remote_keys: dict[str, str] | None = None,
    allow_unauthenticated: bool = False,
    roles: dict[str, list[str]] | None = None,
) -> Path:
    """A config whose agents are real processes backed by the scripted test double
    (``roles``: the roles of some models, by default all)."""
    lines = [
        "[run]",
        f"target = {target}",
        f"max_in_flight = {max_in_flight}" if max_in_flight else "",
        f"max_instances = {max_instances}" if max_instances else "",
        f"rounds = {rounds}",
        f"seed = {seed}",
        "[seeds]",
        f'path = "{SEEDS}"',
        "[bus]",
        "heartbeat_interval_s = 0.2",
        "heartbeat_misses = 5",
        f'endpoint = "{endpoint}"' if endpoint else "",
        f'curve_keys = "{curve_keys}"' if curve_keys else "",
        "allow_unauthenticated = true" if allow_unauthenticated else "",
        "[dedup]",
        f"enabled = {'true' if dedup else 'false'}",
        "[limits]",
        "startup_timeout_s = 60",
        "agent_restarts = 50",
        extra,
    ]
    for model in models:
        lines += [
            "[[agents]]",
            f'model = "{model}"',
            'backend = "plugin"',
            'factory = "tests.doubles:scripted"',
            f"replicas = {(replicas or {}).get(model, 1)}",
            f"capacity = {capacity}" if capacity else "",
            f"roles = {json.dumps((roles or {})[model])}" if model in (roles or {}) else "",
        ]
    for model in remote:
        lines += ["[[agents]]", f'model = "{model}"', "remote = true"]
        if model in (remote_keys or {}):
            lines += [f'key = "{(remote_keys or {})[model]}"']
    path = directory / "fleet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_gra(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the `gra` command as a user would; fail the test with its stderr tail."""
    done = subprocess.run(
        [sys.executable, "-m", "gra", *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture
def double_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0.05")
    yield monkeypatch


async def next_frame(router: Router, kind: type) -> tuple[bytes, Any]:
    """The next frame of type ``kind`` a test's ROUTER receives (others are skipped)."""
    while True:
        identity, frame = await asyncio.wait_for(router.recv(), 10)
        if isinstance(frame, kind):
            return identity, frame


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    """A real ROUTER socket on a private ipc endpoint, for tests that play the supervisor."""
    context = zmq.asyncio.Context()
    router = Router(context, private_ipc_endpoint("test"))
    yield router
    router.close()
    context.term()


async def one_qwen_completion(
    messages: list[dict[str, str]], schema: dict[str, Any] | None, sampling: Any
) -> Any:
    """One real completion by qwen2.5-coder-0.5b on llama.cpp (no prompt cache)."""
    from gra.backends.llamacpp import LlamaCppBackend
    from gra.models import resolve

    backend = LlamaCppBackend(
        "qwen2.5-coder-0.5b", resolve("qwen2.5-coder-0.5b"), n_threads=2, prompt_cache_mib=0
    )
    await backend.start()
    try:
        return await backend.complete(messages, schema, sampling)
    finally:
        await backend.aclose()
