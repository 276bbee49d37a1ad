"""Start a real vLLM OpenAI-compatible server (CPU build) for tests.

`scripts/setup_vllm.sh` (run by `make vllm-server`) builds the virtualenv and
the converted model this module serves. The server runs in its own process
group, so leaving the context manager also ends vLLM's engine subprocesses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".cache" / "vllm-venv" / "bin" / "python"
MODEL_DIR = ROOT / ".cache" / "vllm-model" / "qwen2.5-coder-0.5b"
# Written last by each step of scripts/setup_vllm.sh.
MARKER = ".setup-complete"
SETUP_HINT = "run `make vllm-server` (scripts/setup_vllm.sh) to build it"
# --enforce-eager: vLLM 0.32's CPU build otherwise torch.compiles the model on
# every start (its compile cache fails to reload), which took ~285 s instead of
# ~65 s on 2 cores, with no faster requests afterwards.
# --dtype float32: without AVX-512 bf16, bfloat16 matmuls fall back to a slow
# path; float32 answered ~1.5x faster.
# --structured-outputs-config: vLLM 0.32's xgrammar backend ignores a request's
# `disable_any_whitespace` and reads only the server's; without it the 0.5B model
# pads a JSON review with blanks up to max_tokens. Later `extra_args` override any.
DEFAULT_ARGS: tuple[str, ...] = (
    "--enforce-eager",
    "--dtype",
    "float32",
    "--structured-outputs-config",
    '{"backend": "xgrammar", "disable_any_whitespace": true}',
)


class VllmServerError(RuntimeError):
    """The vLLM server could not be started."""


def vllm_available() -> str | None:
    """Why the vLLM server cannot run here, or None when its venv and model are built."""
    if not (VLLM_PYTHON.parent.parent / MARKER).is_file():
        return f"vLLM virtualenv missing or incomplete at {VLLM_PYTHON.parent.parent}; {SETUP_HINT}"
    if not (MODEL_DIR / MARKER).is_file():
        return f"converted model missing or incomplete at {MODEL_DIR}; {SETUP_HINT}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _server_env() -> dict[str, str]:
    """The caller's environment minus anything that would leak its Python into vLLM's."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(
        HF_HUB_OFFLINE="1",  # everything is local; never reach for the Hub
        TRANSFORMERS_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="2",  # GiB; the default would take a large share of RAM
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",  # so the log tail in errors is up to date
    )
    return env


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs; zombies awaiting their reaper do not count."""
    proc_fs = Path("/proc")
    if not proc_fs.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_fs.glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised command: state, ppid, pgrp, ...
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the server's whole process group, then SIGKILL whatever outlives `grace`."""
    pgid = proc.pid  # start_new_session=True makes the server its group's leader
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # The engine subprocesses may still be shutting down after the API server exits.
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()


def _wait_ready(
    proc: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while True:
            if proc.poll() is not None:
                raise VllmServerError(
                    f"vLLM server exited with code {proc.returncode} before becoming ready; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{base_url}/v1/models").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise VllmServerError(
                    f"vLLM server not ready after {timeout:.0f} s; log {log_path}:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(1.0)


@contextlib.contextmanager
def running_vllm_server(
    served_name: str = "qwen2.5-coder-0.5b",
    *,
    startup_timeout: float = 300.0,
    log_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    aliases: Sequence[str] = (),
) -> Iterator[str]:
    """Serve the converted model as `served_name` and yield the base URL (http://127.0.0.1:PORT).

    `aliases` are further names for the same weights (vLLM's --served-model-name
    takes several): a fleet that needs distinct models can then share one server.

    Startup takes minutes on a small CPU machine, hence the generous timeout.
    The log goes to `log_dir`, else to a new temporary directory, and is kept
    for post-mortems; its tail is also in any startup error. `extra_args` go to vLLM's CLI
    after DEFAULT_ARGS.
    """
    reason = vllm_available()
    if reason is not None:
        raise VllmServerError(reason)
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(tempfile.mkdtemp(prefix="vllm-server-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "vllm-server.log"
        port = _free_port()
        cmd = [
            str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(MODEL_DIR),
            "--served-model-name", served_name, *aliases,
            "--max-model-len", "2048",
            "--host", "127.0.0.1",
            "--port", str(port),
            *DEFAULT_ARGS,
            *extra_args,
        ]  # fmt: skip
        log_file = stack.enter_context(log_path.open("wb"))
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            cwd=ROOT,
            start_new_session=True,
        )
        stack.callback(_stop, proc)
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, base_url, log_path, startup_timeout)
        yield base_url
