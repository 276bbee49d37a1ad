"""Starting agent processes: local subprocesses here; actors on a Ray cluster in
gra.supervisor.ray_launcher. Another engine (Slurm, say) implements the same
small interface, without touching the protocol or the bus.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from gra.config import AgentSettings
from gra.protocols.messages import AGENT_SETTINGS_ENV, AGENT_TOKEN_ENV
from gra.rundir import agent_log, agent_stderr

log = structlog.get_logger("gra.launcher")


# How a launcher starts an agent: every setting travels in the environment
# (AGENT_SETTINGS_ENV), none in argv.
AGENT_COMMAND = ("-m", "gra", "agent", "--settings-env")


@dataclass(frozen=True)
class AgentSpec:
    """Everything needed to start one agent process."""

    # Its settings but for ``connect`` (and where it runs: ``parent_pid``,
    # ``log_file``), which the launcher fills in when it starts the agent.
    settings: AgentSettings
    # The per-run secret its hello must carry: handed over in the environment
    # (not argv, which any user can read in the process list).
    token: str = ""

    @property
    def agent_id(self) -> str:
        return self.settings.agent_id

    @property
    def model(self) -> str:
        """The model id it hosts, for admission (gra.supervisor.admission)."""
        return self.settings.entry.model_id


def agent_environment(settings: AgentSettings, token: str, **extra: str) -> dict[str, str]:
    """This process's environment plus what an agent is handed: its settings and token."""
    encoded = msgspec.json.encode(settings).decode()
    return {**os.environ, AGENT_SETTINGS_ENV: encoded, AGENT_TOKEN_ENV: token, **extra}


class Launcher(Protocol):
    # On CURVE: the name of the authorised key its agents hold (admission checks it).
    curve_key: str

    def start(self, spec: AgentSpec, endpoint: str) -> None: ...
    def exited(self) -> dict[str, int]:
        """Agents whose process has ended since the last call, with exit codes."""
        ...

    def kill(self, agent_id: str) -> None:
        """End a hung agent at once so that it can be started afresh."""
        ...

    def stop(self, grace_s: float) -> None: ...


class LocalLauncher:
    """Agents as child processes of the supervisor.

    Children die with the supervisor even on SIGKILL (``--parent-pid`` makes
    the agent ask the kernel for a parent-death signal), so they never
    outlive it as orphans.
    """

    curve_key = "local"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._reported: set[str] = set()

    def start(self, spec: AgentSpec, endpoint: str) -> None:
        settings = msgspec.structs.replace(
            spec.settings,
            connect=endpoint,
            parent_pid=os.getpid(),
            log_file=str(agent_log(self.log_dir, spec.agent_id)),
        )
        stderr = agent_stderr(self.log_dir, spec.agent_id).open("ab")
        self.processes[spec.agent_id] = subprocess.Popen(
            [sys.executable, *AGENT_COMMAND],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=agent_environment(settings, spec.token),
        )
        self._reported.discard(spec.agent_id)
        stderr.close()
        log.info("agent_spawned", agent=spec.agent_id, pid=self.processes[spec.agent_id].pid)

    def exited(self) -> dict[str, int]:
        ended = {}
        for agent_id, process in self.processes.items():
            code = process.poll()
            if code is not None and agent_id not in self._reported:
                self._reported.add(agent_id)
                ended[agent_id] = code
        return ended

    def kill(self, agent_id: str) -> None:
        process = self.processes.get(agent_id)
        if process is not None and process.poll() is None:
            process.kill()

    def stop(self, grace_s: float) -> None:
        """Give agents told to shut down a moment to exit by themselves, then
        SIGTERM (they drain), then SIGKILL whatever is left after ``grace_s``."""
        deadline = time.monotonic() + grace_s
        self._wait_all(min(2.0, grace_s / 3))
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        self._wait_all(max(0.0, deadline - time.monotonic()))
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()

    def _wait_all(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return
