"""Entry point of one agent process: build its backend, then serve."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import structlog

from gra.agents.roles import Role, get_role
from gra.agents.runtime import AgentRuntime
from gra.backends import Backend, LlamaCppBackend, ModelUnusable, NoModelBackend, OpenAIBackend
from gra.backends.vllm_server import ManagedVllmServer
from gra.config import AgentConfig, AgentSettings
from gra.logs import configure
from gra.protocols.messages import AGENT_EXIT_UNUSABLE, AGENT_TOKEN_ENV


def build_backend(settings: AgentSettings) -> Backend:
    """The entry's backend; a setting the entry leaves unset keeps the backend's default.
    A plugin's factory is called with the whole AgentSettings."""
    entry = settings.entry
    match entry.backend:
        case "llamacpp":
            from gra.models import resolve

            path = Path(settings.model_path) if settings.model_path else resolve(entry.model)
            return LlamaCppBackend(
                entry.model_id,
                path,
                n_ctx=entry.n_ctx,
                n_threads=entry.n_threads,
                prompt_cache_mib=entry.prompt_cache_mib,
            )
        case "vllm" | "openai":
            api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
            return OpenAIBackend(
                entry.model_id,
                entry.url or "",
                served_model=entry.served_model,
                api_key=api_key,
                vllm=entry.backend == "vllm",
                **_capacity(entry),
            )
        case "sandbox":
            return NoModelBackend(entry.model_id, **_capacity(entry))
        case "plugin":
            module_name, _, attr = (entry.factory or "").partition(":")
            factory = getattr(importlib.import_module(module_name), attr)
            return factory(settings)  # type: ignore[no-any-return]


def _capacity(entry: AgentConfig) -> dict[str, Any]:
    return {} if entry.capacity is None else {"capacity": entry.capacity}


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_agent(settings: AgentSettings) -> int:
    if settings.parent_pid is not None:
        _die_with_parent()
        if os.getppid() != settings.parent_pid:
            return 1  # the parent died before we could ask
    entry = settings.entry
    configure(
        json_path=Path(settings.log_file) if settings.log_file else None,
        level="warning" if settings.parent_pid else "info",
        agent_id=settings.agent_id,
        model=entry.model_id,
        pid=os.getpid(),
    )
    roles = {name: get_role(name) for name in entry.roles}
    curve = None
    if settings.curve_secret and settings.server_key:
        curve = (Path(settings.curve_secret), Path(settings.server_key))
    # Taken out of the environment so that nothing this process starts inherits it.
    token = os.environ.pop(AGENT_TOKEN_ENV, "")
    server = _server(settings)
    try:
        if server is not None:
            url = server.start()  # before the hello: the agent joins once it can answer
            assert server.process is not None
            structlog.get_logger("gra.agent").info(
                "vllm_server_ready", url=url, pid=server.process.pid, log=str(server.log_path)
            )
            settings = msgspec.structs.replace(
                settings, entry=msgspec.structs.replace(entry, url=url)
            )
        return _serve(settings, roles, curve, token)
    except ModelUnusable as exc:
        print(f"gra agent {settings.agent_id}: {exc}", file=sys.stderr)
        return AGENT_EXIT_UNUSABLE
    finally:
        if server is not None:
            server.stop()


def _server(settings: AgentSettings) -> ManagedVllmServer | None:
    """The vLLM server this agent is to start for itself, if its entry says ``serve``."""
    serve = settings.entry.serve
    if serve is None:
        return None
    # Beside the agent's own log; an agent without one (on a Ray node) uses the node's
    # temporary directory, and its log line says where.
    if settings.log_file:
        log_path = Path(settings.log_file).parent / f"vllm-{settings.agent_id}.log"
    else:
        log_path = Path(tempfile.gettempdir()) / f"gra-vllm-{settings.agent_id}-{os.getpid()}.log"
    return ManagedVllmServer(
        python=serve.python,
        model=serve.model,
        served_model=settings.entry.served_model or settings.entry.model_id,
        log_path=log_path,
        args=serve.args,
        host=serve.host,
        port=serve.port,
        startup_timeout_s=serve.startup_timeout_s,
        env=serve.env or {},
    )


def _serve(
    settings: AgentSettings,
    roles: dict[str, Role],
    curve: tuple[Path, Path] | None,
    token: str,
) -> int:
    backend = build_backend(settings)
    runtime = AgentRuntime(
        settings.agent_id,
        backend,
        roles,
        settings.connect,
        output_retries=settings.output_retries,
        parent_pid=settings.parent_pid,
        curve=curve,
        token=token,
    )
    asyncio.run(runtime.run())
    # Stopped: what is left is the interpreter's teardown (freeing a model can take
    # seconds on a loaded machine). A SIGTERM now asks for what is already under way;
    # dying of it would turn a clean stop into exit -15. SIGKILL still ends a hang.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0
