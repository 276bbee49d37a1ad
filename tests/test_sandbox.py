"""The sandbox against hostile programs: real bubblewrap, real processes, no doubles.

Every test needs the sandbox to run here; without bubblewrap they fail rather than skip,
since each one stands for a guarantee.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gra.sandbox import (
    SandboxLimits,
    SandboxResult,
    run_python,
    run_python_async,
    sandbox_unavailable,
    seccomp,
)
from gra.sandbox.layout import SANDBOX_UID

ROOT = Path(__file__).resolve().parent.parent
LIMITS = SandboxLimits(wall_s=5.0, cpu_s=2, memory_mib=256, processes=16, output_bytes=4096)
SLACK_S = 3.0  # how much past its wall limit a run may return


def _sandbox_processes(token: str) -> list[int]:
    """Processes of the sandbox uid whose command line carries ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != SANDBOX_UID:
                continue
            if token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # it ended while we looked
    return found


def _tagged(token: str, body: str) -> str:
    """A program that first re-executes itself with ``token`` in its command line, so every
    process it (and its children) runs can be found in /proc from outside."""
    return (
        "import os, sys\n"
        f"if {token!r} not in sys.argv:\n"
        f"    os.execv(sys.executable, [sys.executable, sys.argv[0], {token!r}])\n" + body
    )


def _assert_contained(result: SandboxResult, *statuses: str) -> None:
    assert result.status in statuses, result
    assert result.reason, result


def test_the_sandbox_runs_here() -> None:
    assert sandbox_unavailable() is None


def test_without_bubblewrap_nothing_runs(tmp_path: Path) -> None:
    # A real interpreter whose PATH holds no bwrap: it must refuse, not run unsandboxed.
    code = (
        "from gra.sandbox import run_python\n"
        'r = run_python(\'open("ran", "w").close(); print("ran")\')\n'
        "print(r.status, r.stdout == '', r.reason, sep='|')\n"
    )
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    status, empty, reason = done.stdout.strip().split("|")
    assert (status, empty) == ("unavailable", "True")
    assert "bubblewrap" in reason
    assert not (tmp_path / "ran").exists()


def test_fork_bomb_is_contained_and_leaves_nothing_behind() -> None:
    token = f"gra-fork-bomb-{secrets.token_hex(4)}"
    source = _tagged(
        token,
        "import time\n"
        "if os.fork() == 0:\n"  # a daemonised grandchild that would outlive the run
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n",
    )
    limits = SandboxLimits(wall_s=3.0, cpu_s=2, memory_mib=256, processes=16)
    start = time.monotonic()
    result = run_python(source, limits=limits)
    elapsed = time.monotonic() - start
    _assert_contained(result, "limit", "error", "timeout")
    assert elapsed < limits.wall_s + SLACK_S
    assert _sandbox_processes(token) == []


def test_a_daemonised_grandchild_dies_with_the_program() -> None:
    token = f"gra-daemon-{secrets.token_hex(4)}"
    source = _tagged(
        token,
        "import subprocess\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[-1]],"
        " start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL)\n"
        "print('detached')\n",
    )
    result = run_python(source, limits=LIMITS)
    assert (result.status, result.stdout) == ("ok", "detached\n"), result
    assert _sandbox_processes(token) == []


def test_infinite_loop_hits_the_cpu_limit() -> None:
    limits = SandboxLimits(wall_s=5.0, cpu_s=1)
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", limits=limits)
    assert time.monotonic() - start < limits.wall_s + SLACK_S
    assert result.status == "limit", result
    assert "CPU" in result.reason


def test_sleeping_forever_times_out() -> None:
    limits = SandboxLimits(wall_s=1.5)
    start = time.monotonic()
    result = run_python("import time\ntime.sleep(600)\n", limits=limits)
    assert time.monotonic() - start < limits.wall_s + SLACK_S
    assert result.status == "timeout", result
    assert result.exit_code is None
    assert "timed out" in result.reason


def test_memory_hog_hits_the_memory_limit() -> None:
    source = "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n"
    result = run_python(source, limits=LIMITS)
    _assert_contained(result, "limit", "error")
    assert "MemoryError" in result.stderr
    assert result.status == "limit" and "memory" in result.reason


def test_writes_and_deletes_outside_its_directory_change_nothing(tmp_path: Path) -> None:
    # tmp_path stands in for the run's output directory; root made it, default permissions.
    sentinel = tmp_path / "keep.txt"
    sentinel.write_text("precious")
    before = sorted(tmp_path.iterdir())
    stamp = sentinel.stat().st_mtime_ns
    name = f"gra-escape-{secrets.token_hex(4)}"
    home = Path(os.environ.get("HOME", "/root"))
    host_tmp = Path(tempfile.gettempdir())
    targets = [
        tmp_path / name,
        Path("/etc") / name,
        Path("/tmp") / name,
        host_tmp / name,
        home / name,
        ROOT / name,
        Path("/") / name,
    ]
    source = (
        "import os, shutil\n"
        f"for path in {[str(p) for p in targets]!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as handle:\n"
        "            handle.write('escaped')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, type(exc).__name__)\n"
        f"for path in [{str(sentinel)!r}, {str(tmp_path)!r}]:\n"
        "    for attempt in (os.remove, shutil.rmtree, os.rmdir):\n"
        "        try:\n"
        "            attempt(path)\n"
        "            print('removed', path)\n"
        "        except OSError as exc:\n"
        "            print('refused', path, type(exc).__name__)\n"
        f"print('sees the project:', os.path.exists({str(ROOT / 'pyproject.toml')!r}))\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status == "ok", result
    assert "removed" not in result.stdout
    assert "sees the project: False" in result.stdout
    # Its own /tmp is private: writing there works and never reaches the host's.
    assert f"wrote /tmp/{name}" in result.stdout
    assert sentinel.read_text() == "precious"
    assert sentinel.stat().st_mtime_ns == stamp
    assert sorted(tmp_path.iterdir()) == before
    for path in targets:
        assert not path.exists(), path


def test_network_is_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        source = (
            "import socket\n"
            "for host in ('127.0.0.1', 'localhost'):\n"
            "    try:\n"
            f"        socket.create_connection((host, {port}), timeout=2).sendall(b'leak')\n"
            "        print('connected', host)\n"
            "    except OSError as exc:\n"
            "        print('refused', host, type(exc).__name__)\n"
        )
        result = run_python(source, limits=LIMITS)
        assert result.status == "ok", result
        assert "connected" not in result.stdout
        assert result.stdout.count("refused") == 2
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_root_only_secret_stays_secret(tmp_path: Path) -> None:
    # Stands in for the supervisor's CURVE secret key: root's, mode 0600.
    secret = secrets.token_hex(16)
    key = tmp_path / "supervisor.key_secret"
    key.write_text(secret)
    key.chmod(0o600)
    shadow = Path("/etc/shadow")  # visible in the sandbox, root-only: the uid must stop it
    source = (
        f"for path in [{str(key)!r}, {str(shadow)!r}]:\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as exc:\n"
        "        print('refused', path, type(exc).__name__)\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status == "ok", result
    assert secret not in result.stdout + result.stderr
    assert f"refused {key}" in result.stdout
    if shadow.exists():
        assert f"refused {shadow} PermissionError" in result.stdout


def test_the_program_runs_unprivileged() -> None:
    source = (
        "import os\n"
        "status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in line)\n"
        "print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
        "print(status['CapEff'].strip(), status['CapPrm'].strip(), status['CapBnd'].strip())\n"
        "print(status['NoNewPrivs'].strip())\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status == "ok", result
    uid, caps, no_new_privs = result.stdout.splitlines()
    assert uid == f"{SANDBOX_UID} {SANDBOX_UID} {SANDBOX_UID} []"
    assert caps == " ".join(["0" * 16] * 3)
    assert no_new_privs == "1"


def test_user_namespaces_are_refused() -> None:
    if seccomp.program() is None:
        pytest.skip("no seccomp filter for this architecture")
    source = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))\n"  # CLONE_NEWUSER
    )
    result = run_python(source, limits=LIMITS)
    assert result.status == "ok", result
    assert result.stdout == "-1 Operation not permitted\n"


def test_megabytes_of_output_are_cut() -> None:
    limits = SandboxLimits(wall_s=10.0, output_bytes=4096)
    start = time.monotonic()
    result = run_python("import sys\nsys.stdout.write('x' * (8 << 20))\n", limits=limits)
    assert time.monotonic() - start < 5.0
    assert result.truncated
    assert result.stdout == "x" * 4096
    assert result.status == "limit" and "output" in result.reason


def test_a_normal_program_runs() -> None:
    source = (
        "import sys, sympy\n"
        "from helper import twice\n"
        "x = sympy.symbols('x')\n"
        "print(sympy.factor(x**2 - 1))\n"
        "print(twice(sys.stdin.read().strip()))\n"
        "print(open('data/numbers.txt').read().split())\n"
        "open('scratch.txt', 'w').write('own directory is writable')\n"
    )
    files = {"helper.py": "def twice(s):\n    return s * 2\n", "data/numbers.txt": "1 2 3"}
    result = run_python(source, files=files, stdin="ab\n", limits=LIMITS)
    assert result == SandboxResult(
        status="ok",
        exit_code=0,
        stdout="(x - 1)*(x + 1)\nabab\n['1', '2', '3']\n",
        stderr="",
        wall_s=result.wall_s,
        reason=result.reason,
        truncated=False,
    )


def test_a_failing_program_reports_its_traceback() -> None:
    result = run_python("def f():\n    return 1 / 0\n\nf()\n", limits=LIMITS)
    assert result.status == "error", result
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    assert "ZeroDivisionError" in result.reason


def test_the_callers_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_hex(16)
    monkeypatch.setenv("GRA_TEST_SECRET", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    source = (
        "import os\n"
        "print(dict(os.environ))\n"
        "print(open('/proc/self/environ', 'rb').read())\n"
        "print(os.listdir('/proc'))\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status == "ok", result
    assert secret not in result.stdout + result.stderr
    assert "GRA_TEST_SECRET" not in result.stdout
    assert "PYTHONPATH" not in result.stdout  # conftest sets one for the test process


async def test_the_async_variant_runs() -> None:
    result = await run_python_async("import sys\nprint(sys.stdin.read()[::-1])", stdin="abc")
    assert (result.status, result.stdout) == ("ok", "cba\n")
    results = await asyncio.gather(*(run_python_async(f"print({n} * {n})") for n in range(4)))
    assert [r.stdout for r in results] == ["0\n", "1\n", "4\n", "9\n"]


async def test_cancelling_the_async_variant_kills_the_program() -> None:
    token = f"gra-sleeper-{secrets.token_hex(4)}"
    staging = Path(tempfile.gettempdir())
    before = set(staging.glob("gra-sandbox-*"))
    source = _tagged(
        token,
        "import subprocess, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[-1]],"
        " start_new_session=True)\n"
        "time.sleep(600)\n",
    )
    task = asyncio.create_task(run_python_async(source, limits=SandboxLimits(wall_s=60.0)))
    deadline = time.monotonic() + 10.0
    while len(_sandbox_processes(token)) < 2:
        assert time.monotonic() < deadline, "the program never started"
        assert not task.done(), task.result()
        await asyncio.sleep(0.05)
    cancelled = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled < 2.0
    assert _sandbox_processes(token) == []
    assert set(staging.glob("gra-sandbox-*")) - before == set()


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../escape.py", "a/../../escape.py", "", "main.py"]
)
async def test_file_names_outside_the_directory_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        run_python("print(1)", files={name: "x"})
    with pytest.raises(ValueError):
        await run_python_async("print(1)", files={name: "x"})
