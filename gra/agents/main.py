"""Entry point of one agent process: build its backend, then serve."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from gra.agents.roles import get_role
from gra.agents.runtime import AgentRuntime
from gra.backends import Backend, LlamaCppBackend, ModelUnusable, NoModelBackend, OpenAIBackend
from gra.backends.llamacpp import DEFAULT_PROMPT_CACHE_MIB
from gra.logs import configure
from gra.protocols.messages import AGENT_EXIT_UNUSABLE, AGENT_TOKEN_ENV


@dataclass(frozen=True)
class AgentOptions:
    connect: str
    agent_id: str
    roles: tuple[str, ...]
    backend: str
    model: str
    model_path: str | None = None
    url: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    capacity: int | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    # llama.cpp: RAM (MiB) for saved model states that later prompts resume from; 0: off.
    prompt_cache_mib: int = DEFAULT_PROMPT_CACHE_MIB
    factory: str | None = None
    output_retries: int = 2
    parent_pid: int | None = None
    log_file: str | None = None
    curve_secret: str | None = None
    server_key: str | None = None


def build_backend(options: AgentOptions) -> Backend:
    match options.backend:
        case "llamacpp":
            from gra.models import resolve

            path = Path(options.model_path) if options.model_path else resolve(options.model)
            return LlamaCppBackend(
                options.model,
                path,
                n_ctx=options.n_ctx,
                n_threads=options.n_threads,
                prompt_cache_mib=options.prompt_cache_mib,
            )
        case "vllm" | "openai":
            if not options.url:
                raise ValueError(f"the {options.backend} backend needs --url")
            api_key = os.environ.get(options.api_key_env) if options.api_key_env else None
            return OpenAIBackend(
                options.model,
                options.url,
                served_model=options.served_model,
                capacity=options.capacity or 8,
                api_key=api_key,
                vllm=options.backend == "vllm",
            )
        case "sandbox":
            return NoModelBackend(options.model, capacity=options.capacity or 2)
        case "plugin":
            if not options.factory or ":" not in options.factory:
                raise ValueError("the plugin backend needs --factory module:callable")
            module_name, _, attr = options.factory.partition(":")
            factory = getattr(importlib.import_module(module_name), attr)
            return factory(options)
        case other:
            raise ValueError(f"unknown backend {other!r}")


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_agent(options: AgentOptions) -> int:
    if options.parent_pid is not None:
        _die_with_parent()
        if os.getppid() != options.parent_pid:
            return 1  # the parent died before we could ask
    configure(
        json_path=Path(options.log_file) if options.log_file else None,
        level="warning" if options.parent_pid else "info",
        agent_id=options.agent_id,
        model=options.model,
        pid=os.getpid(),
    )
    roles = {name: get_role(name) for name in options.roles}
    curve = None
    if options.curve_secret or options.server_key:
        if not (options.curve_secret and options.server_key):
            raise ValueError("CURVE needs both --curve-secret and --server-key")
        curve = (Path(options.curve_secret), Path(options.server_key))
    # Taken out of the environment so that nothing this process starts inherits it.
    token = os.environ.pop(AGENT_TOKEN_ENV, "")
    backend = build_backend(options)
    runtime = AgentRuntime(
        options.agent_id,
        backend,
        roles,
        options.connect,
        output_retries=options.output_retries,
        parent_pid=options.parent_pid,
        curve=curve,
        token=token,
    )
    try:
        asyncio.run(runtime.run())
    except ModelUnusable as exc:
        print(f"gra agent {options.agent_id}: {exc}", file=sys.stderr)
        return AGENT_EXIT_UNUSABLE
    # Stopped: what is left is the interpreter's teardown (freeing a model can take
    # seconds on a loaded machine). A SIGTERM now asks for what is already under way;
    # dying of it would turn a clean stop into exit -15. SIGKILL still ends a hang.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0
