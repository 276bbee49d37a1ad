"""``[[agents]] serve``: each agent starts the vLLM server it talks to, beside itself.

The real server (CPU build) is in the slow tests at the end; the fast ones inject
the faults a server start can have (it exits, it never answers, its agent is
killed while it starts) with small stand-in programs run as the server's
interpreter, through real agent processes and a real `gra run`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

from gra.backends.vllm_server import ManagedVllmServer, server_command, server_environment
from gra.config import ConfigError, load_config
from gra.errors import ModelUnusable, ServerStartError
from gra.protocols.records import ItemRecord
from tests.conftest import SEEDS, pid_alive, run_gra
from tests.vllm_server import DEFAULT_ARGS, MODEL_DIR, VLLM_PYTHON, vllm_available

SERVED = "qwen2.5-coder-0.5b"


def _config(tmp_path: Path, agent: str, *, extra: str = "") -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(
        f'[run]\ntarget = 1\nmax_instances = 2\n[seeds]\npath = "{SEEDS}"\n'
        f"{extra}\n[[agents]]\n{textwrap.dedent(agent)}\n"
    )
    return path


# ---- the config ----------------------------------------------------------------------


def test_serve_needs_the_vllm_backend_and_sets_the_url_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agents\[0\]\.serve.*backend must be vllm"):
        load_config(_config(tmp_path, 'model = "m"\nserve = {model = "w"}'))
    both = 'model = "m"\nbackend = "vllm"\nurl = "http://x:1"\nserve = {model = "w"}'
    with pytest.raises(ConfigError, match=r"agents\[0\]\.url: serve starts the server"):
        load_config(_config(tmp_path, both))
    with pytest.raises(ConfigError, match=r"needs the server's url \(or a serve table\)"):
        load_config(_config(tmp_path, 'model = "m"\nbackend = "vllm"'))
    with pytest.raises(ConfigError, match="serve"):
        load_config(_config(tmp_path, 'model = "m"\nbackend = "vllm"\nserve = {modle = "w"}'))


def test_serve_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    agent = (
        'model = "m"\nbackend = "vllm"\n'
        'serve = {model = "weights", python = "venv/bin/python", args = ["--dtype", "float32"]}'
        '\n[[agents]]\nmodel = "gemma-3-270m"'
    )
    serve = load_config(_config(tmp_path, agent)).agents[0].serve
    assert serve is not None
    assert serve.model == str(tmp_path / "weights")
    assert serve.python == str(tmp_path / "venv/bin/python")
    # A model that is no path here is a name for vLLM; a bare command is looked up in PATH.
    named = agent.replace('"weights"', '"org/weights"').replace('"venv/bin/python"', '"python3"')
    serve = load_config(_config(tmp_path, named)).agents[0].serve
    assert serve is not None and (serve.model, serve.python) == ("org/weights", "python3")


def test_the_server_command_and_environment() -> None:
    command = server_command("py", "/w", "m", "0.0.0.0", 8000, ["--dtype", "float32"])
    assert command == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/w",
        "--served-model-name", "m", "--host", "0.0.0.0", "--port", "8000", "--dtype", "float32",
    ]  # fmt: skip
    env = server_environment({"PYTHONPATH": "/g", "PATH": "/bin"}, {"VLLM_CPU_KVCACHE_SPACE": "2"})
    assert "PYTHONPATH" not in env and env["PATH"] == "/bin"
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"


# ---- faults, injected with stand-in programs as the server's interpreter ----------------


def _stand_in(tmp_path: Path, body: str) -> str:
    """An executable that plays a server which never works: fault injection only."""
    script = tmp_path / "stand_in.py"
    script.write_text(f"#!{sys.executable}\n{textwrap.dedent(body)}")
    script.chmod(0o755)
    return str(script)


def test_a_server_that_exits_is_an_error_naming_its_log(tmp_path: Path) -> None:
    python = _stand_in(tmp_path, "import sys\nprint('no such model: /w')\nsys.exit(3)\n")
    server = ManagedVllmServer(python, "/w", "m", tmp_path / "vllm.log", startup_timeout_s=60)
    with pytest.raises(ServerStartError, match=r"exited with code 3") as caught:
        server.start()
    assert isinstance(caught.value, ModelUnusable)  # the agent exits unusable: no restarts
    assert "no such model: /w" in str(caught.value) and str(tmp_path / "vllm.log") in str(
        caught.value
    )


def test_a_server_never_ready_is_stopped_with_its_whole_group(tmp_path: Path) -> None:
    # It starts a child of its own (as vLLM starts its engine) and never listens.
    python = _stand_in(
        tmp_path,
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([{sys.executable!r}, "-c", "import time; time.sleep(600)"])
        open({str(tmp_path / "child.pid")!r}, "w").write(str(child.pid))
        time.sleep(600)
        """,
    )
    server = ManagedVllmServer(python, "/w", "m", tmp_path / "vllm.log", startup_timeout_s=2)
    with pytest.raises(ServerStartError, match=r"not ready after 2 s \(serve.startup_timeout_s\)"):
        server.start()
    assert server.process is not None and server.process.poll() is not None
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(child), "the server's own child outlived it"


def test_a_run_whose_server_cannot_start_stops_with_the_reason(tmp_path: Path) -> None:
    python = _stand_in(tmp_path, "import sys\nprint('CUDA out of memory')\nsys.exit(1)\n")
    serve = f'backend = "vllm"\nserve = {{model = "/w", python = "{python}"}}'
    config = _config(tmp_path, f'model = "m"\n{serve}\n[[agents]]\nmodel = "n"\n{serve}')
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(tmp_path / "out"),
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "exited with code 1 before it was ready" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_a_server_dies_with_its_agent(tmp_path: Path) -> None:
    # The agent is SIGKILLed while its server starts: the kernel ends the server.
    python = _stand_in(
        tmp_path,
        f"import os, time\nopen({str(tmp_path / 'server.pid')!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n",
    )
    settings = {
        "connect": "tcp://127.0.0.1:9",
        "agent_id": "m-0",
        "entry": {"model": "m", "backend": "vllm", "serve": {"model": "/w", "python": python}},
        "log_file": str(tmp_path / "agent-m-0.jsonl"),
    }
    env = {**os.environ, "GRA_AGENT_SETTINGS": json.dumps(settings)}
    agent = subprocess.Popen([sys.executable, "-m", "gra", "agent", "--settings-env"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "server.pid").exists():
            assert time.monotonic() < deadline and agent.poll() is None, "the server never started"
            time.sleep(0.1)
        server = int((tmp_path / "server.pid").read_text())
        assert (tmp_path / "vllm-m-0.log").exists()  # beside the agent's own log
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        while pid_alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(server), "the server outlived its agent"
    finally:
        agent.kill()


# ---- the real vLLM server ----------------------------------------------------------------


def real_serve_entry(extra: str = "") -> str:
    """An [[agents]] entry (without its header) whose agent serves the converted model
    with the real vLLM server."""
    args = json.dumps([*DEFAULT_ARGS, "--max-model-len", "2048"])
    return (
        f'model = "qwen-served"\nbackend = "vllm"\nserved_model = "{SERVED}"\ncapacity = 4\n'
        f'serve = {{model = "{MODEL_DIR}", python = "{VLLM_PYTHON}", args = {args}, '
        f'env = {{VLLM_CPU_KVCACHE_SPACE = "2"}}}}\n{extra}'
    )


@pytest.mark.slow
@pytest.mark.vllm
def test_a_run_starts_its_vllm_server_and_ends_it(tmp_path: Path) -> None:
    assert vllm_available() is None, vllm_available()
    config = _config(tmp_path, real_serve_entry(), extra="[limits]\nstartup_timeout_s = 900")
    config.write_text(
        config.read_text() + '\n[[agents]]\nmodel = "gemma-3-270m"\nroles = ["reviewer"]\n'
    )
    out = tmp_path / "out"
    run_gra("run", str(config), "--out", str(out), "--no-progress", timeout=1500)
    summary = json.loads((out / "summary.json").read_text())
    records = [
        msgspec.json.decode(line, type=ItemRecord)
        for name in ("accepted.jsonl", "rejected.jsonl")
        for line in (out / name).read_text().splitlines()
    ]
    generated = [r for r in records if r.decision != "failed"]
    assert generated, [r.reason for r in records]
    assert all(r.generator.model == "qwen-served" for r in generated)
    assert summary["models"]["qwen-served"]["roles"]["generator"]["completion_tokens"] > 0
    log = out / "logs" / "vllm-qwen-served-0.log"
    assert "Uvicorn running" in log.read_text() or "Application startup complete" in log.read_text()
    # Nothing of the server is left once the run has ended.
    lines = (out / "logs" / "agent-qwen-served-0.jsonl").read_text().splitlines()
    ready = [json.loads(line) for line in lines if '"vllm_server_ready"' in line]
    assert len(ready) == 1 and not pid_alive(ready[0]["pid"])
