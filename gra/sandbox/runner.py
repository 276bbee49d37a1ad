"""Run untrusted, model-generated Python and report how it ended.

Code written by a model is untrusted: it may loop, fork, allocate without end, print without
end, read secrets, write outside its directory or call out over the network, by mistake or
not. So each program runs under bubblewrap (see layout.py) as the real unprivileged uid 65534
with no capabilities, in its own pid, network, ipc and uts namespaces, with a read-only view
of the system, a private /tmp and only its own directory writable, under rlimits (CPU,
address space, processes, file size, open files, no core dumps), an empty environment and a
wall-clock timeout. The pid namespace ties every process the program starts to it: when the
run ends or is killed, the kernel kills them all, daemonised or not. When bubblewrap cannot
run here, nothing runs: the result says "unavailable" and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gra.sandbox import layout, seccomp
from gra.sandbox.model import SandboxLimits, SandboxResult
from gra.sandbox.outcome import CHUNK, Capture, classify, unavailable

DEFAULT_LIMITS = SandboxLimits()
KILL_GRACE_S = 5.0  # how long the sandbox gets to go down when stopped, before SIGKILL
_BOOT_SOURCE = Path(__file__).with_name(layout.BOOT)
_REAPER_SOURCE = Path(__file__).with_name(layout.REAPER)
_SECCOMP = seccomp.program()


def _validated(files: Mapping[str, str] | None) -> dict[str, str]:
    """Relative, normalised names inside the work directory; ValueError for anything else."""
    checked: dict[str, str] = {}
    for name, text in (files or {}).items():
        path = PurePosixPath(name)
        if not name or "\0" in name or path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"sandbox file names must be relative paths inside it: {name!r}")
        key = path.as_posix()
        if key == layout.SCRIPT or key in checked:
            raise ValueError(f"sandbox file name {name!r} is given twice or clashes with main.py")
        checked[key] = text
    for key in checked:
        for parent in PurePosixPath(key).parents:
            if parent.as_posix() in checked or parent.as_posix() == layout.SCRIPT:
                raise ValueError(f"sandbox file {key!r} would lie inside the file {parent}")
    return checked


@dataclass(frozen=True)
class _Staged:
    root: str
    input_bytes: int
    entries: int


def _stage(source: str, files: dict[str, str]) -> _Staged:
    """A fresh directory, owned by the sandbox uid: boot.py and work/{main.py, files...}."""
    root = tempfile.mkdtemp(prefix="gra-sandbox-")
    try:
        inputs = os.path.join(root, layout.INPUTS)
        os.mkdir(inputs)
        shutil.copyfile(_BOOT_SOURCE, os.path.join(root, layout.BOOT))
        total = 0
        for name, text in {layout.SCRIPT: source, **files}.items():
            target = os.path.join(inputs, *PurePosixPath(name).parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            data = text.encode("utf-8", errors="surrogatepass")
            with open(target, "wb") as handle:
                handle.write(data)
            total += len(data)
        entries = 0
        for directory, dirnames, filenames in os.walk(root):
            os.chown(directory, layout.SANDBOX_UID, layout.SANDBOX_GID)
            for name in [*dirnames, *filenames]:
                os.chown(os.path.join(directory, name), layout.SANDBOX_UID, layout.SANDBOX_GID)
                entries += 1
        return _Staged(root, total, entries)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


class _Pipes:
    """Pipes between the caller and the sandbox: the seccomp filter in, and boot.py's "ready"
    out (the sandbox was built: without it a failure is bubblewrap's, not the program's).
    The program itself holds neither."""

    def __init__(self) -> None:
        self.ready_r, self.ready_w = os.pipe()
        os.set_blocking(self.ready_r, False)
        self.seccomp_r: int | None = None
        if _SECCOMP is not None:
            self.seccomp_r, seccomp_w = os.pipe()
            try:
                os.write(seccomp_w, _SECCOMP)  # a few hundred bytes: fits the pipe buffer
            finally:
                os.close(seccomp_w)
        self._ready = b""
        self._child_ends_open = True

    @property
    def child_fds(self) -> tuple[int, ...]:
        return (self.ready_w,) if self.seccomp_r is None else (self.ready_w, self.seccomp_r)

    def close_child_ends(self) -> None:
        if self._child_ends_open:
            self._child_ends_open = False
            for fd in self.child_fds:
                os.close(fd)

    def close(self) -> None:
        self.close_child_ends()
        os.close(self.ready_r)

    def started(self) -> bool:
        """Read once the run is over (every writer has exited)."""
        with contextlib.suppress(BlockingIOError):
            self._ready += os.read(self.ready_r, 64)
        return b"ready" in self._ready


def _command(staged: _Staged, limits: SandboxLimits, pipes: _Pipes) -> list[str]:
    bwrap, setpriv = _tools()
    assert bwrap and setpriv  # sandbox_unavailable() said so
    return layout.command(
        bwrap=bwrap,
        setpriv=setpriv,
        staging=staged.root,
        input_bytes=staged.input_bytes,
        input_entries=staged.entries,
        limits=limits,
        reaper=str(_REAPER_SOURCE),
        ready_fd=pipes.ready_w,
        seccomp_fd=pipes.seccomp_r,
    )


def _stop(pid: int) -> None:
    """Ask reaper.py (``pid``) to kill bubblewrap; it exits once the sandbox is empty."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def _kill_group(pid: int) -> None:
    """Last resort, should reaper.py not exit: SIGKILL it and bubblewrap (one process group);
    --die-with-parent takes the sandbox down after them."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _pump_blocking(
    proc: subprocess.Popen[bytes], stdin: bytes, out: Capture, err: Capture, deadline: float
) -> bool:
    """Feed stdin and collect output until both output pipes close; False at the deadline."""
    assert proc.stdin and proc.stdout and proc.stderr
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    in_fd = proc.stdin.fileno()
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as selector:
        for fd in captures:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        if pending:
            os.set_blocking(in_fd, False)
            selector.register(in_fd, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in selector.select(remaining):
                if key.fd == in_fd:
                    try:
                        pending = pending[os.write(in_fd, pending[:CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(in_fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(key.fd, CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    captures[key.fd].add(data)
                else:
                    selector.unregister(key.fd)
    return True


def _execute_blocking(
    source: str, files: dict[str, str], stdin: str, limits: SandboxLimits
) -> SandboxResult:
    try:
        staged = _stage(source, files)
    except OSError as exc:
        return unavailable(f"cannot prepare the sandbox directory: {exc}")
    pipes = _Pipes()
    try:
        out, err = Capture(limits.output_bytes), Capture(limits.output_bytes)
        start = time.monotonic()
        deadline = start + limits.wall_s
        try:
            proc = subprocess.Popen(
                _command(staged, limits, pipes),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(layout.ENVIRONMENT),
                start_new_session=True,
                pass_fds=pipes.child_fds,
            )
        except OSError as exc:
            return unavailable(f"cannot start bubblewrap: {exc}")
        finally:
            pipes.close_child_ends()
        timed_out = False
        try:
            timed_out = not _pump_blocking(
                proc, stdin.encode("utf-8", errors="surrogatepass"), out, err, deadline
            )
            if not timed_out:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            if proc.poll() is None:
                _stop(proc.pid)
                try:
                    proc.wait(timeout=KILL_GRACE_S)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid)
                    proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()
        return classify(
            limits=limits,
            started=pipes.started(),
            timed_out=timed_out,
            returncode=proc.returncode,
            stdout=out,
            stderr=err,
            wall_s=time.monotonic() - start,
        )
    finally:
        pipes.close()
        shutil.rmtree(staged.root, ignore_errors=True)


async def _communicate(
    proc: asyncio.subprocess.Process, stdin: bytes, out: Capture, err: Capture
) -> None:
    assert proc.stdin and proc.stdout and proc.stderr

    async def collect(stream: asyncio.StreamReader, capture: Capture) -> None:
        while chunk := await stream.read(CHUNK):
            capture.add(chunk)

    async def feed(stream: asyncio.StreamWriter) -> None:
        try:
            if stdin:
                stream.write(stdin)
                await stream.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stream.close()

    await asyncio.gather(collect(proc.stdout, out), collect(proc.stderr, err), feed(proc.stdin))
    await proc.wait()


async def _execute_async(
    source: str, files: dict[str, str], stdin: str, limits: SandboxLimits
) -> SandboxResult:
    try:
        staged = _stage(source, files)
    except OSError as exc:
        return unavailable(f"cannot prepare the sandbox directory: {exc}")
    pipes = _Pipes()
    try:
        out, err = Capture(limits.output_bytes), Capture(limits.output_bytes)
        start = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *_command(staged, limits, pipes),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(layout.ENVIRONMENT),
                start_new_session=True,
                pass_fds=pipes.child_fds,
            )
        except OSError as exc:
            return unavailable(f"cannot start bubblewrap: {exc}")
        finally:
            pipes.close_child_ends()
        timed_out = False
        try:
            await asyncio.wait_for(
                _communicate(proc, stdin.encode("utf-8", errors="surrogatepass"), out, err),
                timeout=limits.wall_s,
            )
        except TimeoutError:
            timed_out = True
        finally:
            # Also reached on cancellation: the sandbox never outlives the call.
            if proc.returncode is None:
                _stop(proc.pid)
                try:
                    await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
                except TimeoutError:
                    _kill_group(proc.pid)
                    await proc.wait()
        return classify(
            limits=limits,
            started=pipes.started(),
            timed_out=timed_out,
            returncode=proc.returncode,
            stdout=out,
            stderr=err,
            wall_s=time.monotonic() - start,
        )
    finally:
        pipes.close()
        shutil.rmtree(staged.root, ignore_errors=True)


def _tools() -> tuple[str | None, str | None]:
    return shutil.which("bwrap"), shutil.which("setpriv")


@functools.cache
def sandbox_unavailable() -> str | None:
    """None when programs can be sandboxed here, else why not. Checked once, by running one."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    bwrap, setpriv = _tools()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed; apt-get install bubblewrap"
    if setpriv is None:
        return "setpriv is not installed; apt-get install util-linux"
    if os.geteuid() != 0:
        return (
            f"the sandbox must start as root to run programs as uid {layout.SANDBOX_UID}; "
            f"this process runs as uid {os.geteuid()}"
        )
    if not sys.executable:
        return "no Python interpreter path (sys.executable is empty)"
    probe = _execute_blocking('print("sandbox ok")', {}, "", SandboxLimits(wall_s=30.0))
    if probe.status != "ok" or probe.stdout != "sandbox ok\n":
        return f"the sandbox does not work here: {probe.status}: {probe.reason}"
    return None


def run_python(
    source: str,
    *,
    files: Mapping[str, str] | None = None,
    stdin: str = "",
    limits: SandboxLimits = DEFAULT_LIMITS,
) -> SandboxResult:
    """Run ``source`` as main.py in a fresh sandbox, with ``files`` beside it; blocks.

    Raises ValueError for a file name that is absolute, climbs out with ``..`` or clashes;
    never raises for anything the program does.
    """
    checked = _validated(files)
    problem = sandbox_unavailable()
    if problem is not None:
        return unavailable(problem)
    return _execute_blocking(source, checked, stdin, limits)


async def run_python_async(
    source: str,
    *,
    files: Mapping[str, str] | None = None,
    stdin: str = "",
    limits: SandboxLimits = DEFAULT_LIMITS,
) -> SandboxResult:
    """run_python on the event loop; cancelling it kills the program and everything it
    started before the cancellation goes on."""
    checked = _validated(files)
    problem = await asyncio.to_thread(sandbox_unavailable)
    if problem is not None:
        return unavailable(problem)
    return await _execute_async(source, checked, stdin, limits)
