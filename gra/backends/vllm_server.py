"""A vLLM server that an agent starts for itself and talks to (``[[agents]] serve``).

One server per agent, started on the agent's own node before the agent says
hello, so a cluster config needs no server addresses: wherever the launcher
places the agent (a Ray actor with the entry's ``num_gpus``, or a local child
process), its server runs beside it, on the devices the agent was given. The
server is the agent's child in a process group of its own: the agent stops the
group when it ends, and the kernel sends it SIGTERM if the agent dies first
(vLLM then shuts its engine down), so a server never outlives its agent.

Nothing here is downloaded: the server runs offline (``HF_HUB_OFFLINE``), on
weights already on the node.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gra.errors import ServerStartError

# What the server's environment always says: offline, no telemetry, logs unbuffered.
_SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}
# The agent's own Python must not leak into the server's interpreter.
_DROPPED_ENV = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
_LAST_LINE_CHARS = 300


def server_command(
    python: str,
    model: str,
    served_model: str,
    host: str,
    port: int,
    args: Sequence[str] = (),
) -> list[str]:
    """vLLM's OpenAI-compatible server for ``model``, answering as ``served_model``;
    ``args`` come last, so they override anything before them."""
    return [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--served-model-name", served_model,
        "--host", host,
        "--port", str(port),
        *args,
    ]  # fmt: skip


def server_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` without the agent's Python settings, offline, plus the entry's own."""
    env = {k: v for k, v in base.items() if k not in _DROPPED_ENV}
    return {**env, **_SERVER_ENV, **extra}


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _term_with_parent() -> None:
    """In the server's child: SIGTERM when the agent that started it dies (Linux)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@dataclass
class ManagedVllmServer:
    """Start, wait for and stop one vLLM server process (and its engine processes)."""

    python: str
    model: str
    served_model: str
    log_path: Path
    args: Sequence[str] = ()
    host: str = "127.0.0.1"
    port: int = 0
    startup_timeout_s: float = 900.0
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Start the server and wait until it lists the served model; its base url.
        Raises ServerStartError naming the log when it exits or is not ready in time."""
        if not self.port:
            self.port = free_port(self.host)
        command = server_command(
            self.python, self.model, self.served_model, self.host, self.port, self.args
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=server_environment(os.environ, self.env),
                    preexec_fn=_term_with_parent,  # the agent has no threads yet
                )
            except OSError as exc:
                raise ServerStartError(f"cannot start {self.python!r}: {exc.strerror}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"the vLLM server exited with code {code} before it was ready; "
                        f"{self._tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    listed = client.get(f"{self.url}/v1/models")
                    if listed.status_code == 200 and self.served_model in {
                        entry.get("id") for entry in listed.json().get("data", [])
                    }:
                        return
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"the vLLM server was not ready after {self.startup_timeout_s:g} s "
                        f"(serve.startup_timeout_s); {self._tail()}"
                    )
                time.sleep(0.5)

    def _tail(self) -> str:
        """Where the log is and its last line, on one line (the run's error shows one)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"its log {self.log_path} cannot be read: {exc.strerror}"
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return f"its log {self.log_path} ends: {last[-_LAST_LINE_CHARS:] or '(empty)'}"

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM the server's process group; SIGKILL what is left after ``grace_s``."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
        # The engine processes may outlive the API server by a moment, or hang.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
