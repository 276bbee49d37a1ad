"""Agents as Ray actors: the launcher seam's cluster implementation.

``[launcher] kind = "ray"``. Each agent the supervisor launches (a replica of
an ``[[agents]]`` entry that is not ``remote``) becomes one Ray actor, placed
with its entry's ``num_cpus`` (default 1), ``num_gpus``, ``resources`` and
``node_labels``. The actor runs ``python -m gra agent`` on its node as a child
process (which dies with it) and waits for it; the agent connects back to the
supervisor's tcp endpoint like any other agent. Protocol, bus and journal are
the same as for local agents.

Keys: on a CURVE bus the launcher makes a key pair for this run, authorises
its public key (``keys/authorized/ray-run-*.key``, removed when the run
ends) and hands the secret to its actors in their arguments; an actor writes
it to a private directory on its node for its agent and deletes it when the
agent ends. Admission then seats the launched agents by agent id, per-run
token and that key, exactly as it seats local ones. Ray itself does not
authenticate: whoever can submit work to the cluster can run code on its
nodes anyway, so the cluster is the trust boundary for what actors receive,
while the supervisor's port, reachable by more than the cluster, stays CURVE.

Who decides: the supervisor's heartbeats and reassignment stay the source of
truth. An actor that ends (its agent exited, its node died, or the conductor
killed a hung agent) is reported by ``exited()`` like a local process that
exited, and the conductor starts it again (``limits.agent_restarts``) as a
new actor, which Ray places on a node with room. An agent no live node could
ever hold (a resource or label no node has) stops the run before anything
starts, naming the agent, what it asks for and what the nodes have; one
whose only fitting node dies mid-run waits for a node that fits to join
(the supervisor's ``model_grace_s`` decides what happens to its tasks).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
import zmq

from gra.bus.security import SUPERVISOR, create_keys, load_public
from gra.config import RAY_DEFAULT_ENDPOINT, AgentConfig, AgentSettings, Config
from gra.errors import RunError
from gra.protocols.messages import AGENT_NODE_ENV
from gra.rundir import agent_stderr
from gra.supervisor.launcher import AGENT_COMMAND, AgentSpec, agent_environment

log = structlog.get_logger("gra.launcher.ray")

# The exit code reported for an actor that ended without its agent's own exit
# code (its node died, or it was killed): what a local process killed by
# SIGKILL reports.
ACTOR_LOST = -signal.SIGKILL
_WILDCARD_HOSTS = ("0.0.0.0", "*", "[::]", "::")
_TAIL_BYTES = 4000


@dataclass(frozen=True)
class RunKey:
    """The CURVE key pair the launched agents of one run share."""

    name: str
    public: bytes
    secret: bytes
    server_public: bytes
    authorized: Path


def make_run_key(keys_dir: Path) -> RunKey:
    """A fresh key pair, authorised in ``keys_dir`` (made if needed) until ``revoke``."""
    create_keys(keys_dir, [])
    public, secret = zmq.curve_keypair()
    name = f"ray-run-{secrets.token_hex(6)}"
    authorized = keys_dir / "authorized" / f"{name}.key"
    _write_certificate(authorized, public)
    return RunKey(name, public, secret, load_public(keys_dir / f"{SUPERVISOR}.key"), authorized)


def _write_certificate(path: Path, public: bytes, secret: bytes | None = None) -> None:
    """A ZeroMQ certificate file (the format ``zmq.auth.load_certificate`` reads), mode 600."""
    lines = ["#   gra: a CURVE certificate", "metadata", "curve"]
    lines.append(f'    public-key = "{public.decode("ascii")}"')
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def cluster_bus(config: Config) -> Config:
    """``config`` with the bus a Ray run uses: tcp on every interface and any free
    port unless it names an endpoint, and CURVE with keys made for this run (in a
    private directory removed when the process ends) unless it names a keys
    directory or allows plain tcp. So a laptop's config runs on a cluster with
    only its ``[launcher]`` table changed."""
    bus = config.bus
    keys = bus.curve_keys
    if keys is None and not bus.allow_unauthenticated:
        keys = tempfile.mkdtemp(prefix="gra-run-keys-")
        atexit.register(shutil.rmtree, keys, True)
    bus = msgspec.structs.replace(
        bus, endpoint=bus.endpoint or RAY_DEFAULT_ENDPOINT, curve_keys=keys
    )
    return msgspec.structs.replace(config, bus=bus)


class AgentHost:
    """One gra agent process on the node Ray placed this actor on."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self._process: subprocess.Popen[bytes] | None = None
        self._terminated = False

    def where(self) -> dict[str, str]:
        import ray

        context = ray.get_runtime_context()
        return {
            "node": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "host": os.uname().nodename,
        }

    def run(
        self, settings: bytes, token: str, key: tuple[bytes, bytes, bytes] | None
    ) -> tuple[int, str]:
        """Start the agent with ``settings`` (AgentSettings as JSON), wait for it; its exit
        code and the tail of its stderr."""
        import ray

        directory = Path(tempfile.mkdtemp(prefix="gra-agent-"))
        try:
            directory.chmod(0o700)
            here = msgspec.json.decode(settings, type=AgentSettings)
            here = msgspec.structs.replace(here, parent_pid=os.getpid())
            if key is not None:
                public, secret, server = key
                _write_certificate(directory / "agent.key_secret", public, secret)
                _write_certificate(directory / "supervisor.key", server)
                here = msgspec.structs.replace(
                    here,
                    curve_secret=str(directory / "agent.key_secret"),
                    server_key=str(directory / "supervisor.key"),
                )
            node = ray.get_runtime_context().get_node_id()
            env = agent_environment(here, token, **{AGENT_NODE_ENV: node})
            stderr_path = directory / "stderr"
            with stderr_path.open("wb") as stderr:
                self._process = subprocess.Popen(
                    [sys.executable, *AGENT_COMMAND],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    env=env,
                )
            if self._terminated:
                self._process.terminate()
            code = self._process.wait()
            with stderr_path.open("rb") as stderr:
                stderr.seek(max(0, stderr_path.stat().st_size - _TAIL_BYTES))
                tail = stderr.read().decode(errors="replace")
            return code, tail
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def terminate(self) -> None:
        """SIGTERM: the agent finishes what it has and leaves."""
        self._terminated = True
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)


@dataclass
class _Launched:
    agent_id: str
    actor: Any
    run: Any
    where: Any
    started: float
    node: str | None = None
    warned: bool = False


@dataclass
class _Placement:
    """What one agent asks of a node."""

    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        asks = ", ".join(f"{k} {v:g}" for k, v in sorted(self.resources.items()) if v)
        if self.labels:
            asks += (", " if asks else "") + ", ".join(
                f"label {k}={v}" for k, v in sorted(self.labels.items())
            )
        return asks or "nothing"


def placement_of(entry: AgentConfig) -> _Placement:
    resources = {"CPU": 1.0 if entry.num_cpus is None else entry.num_cpus}
    if entry.num_gpus:
        resources["GPU"] = entry.num_gpus
    resources.update(entry.resources or {})
    return _Placement(resources, dict(entry.node_labels or {}))


def _fits(placement: _Placement, node: dict[str, Any]) -> bool:
    totals = node.get("Resources") or {}
    if any(totals.get(name, 0.0) < amount for name, amount in placement.resources.items()):
        return False
    labels = node.get("Labels") or {}
    for key, value in placement.labels.items():
        if value.startswith("!") or "(" in value:
            continue  # an operator of Ray's selectors: Ray judges those itself
        if labels.get(key) != value:
            return False
    return True


def _describe_node(node: dict[str, Any]) -> str:
    totals = node.get("Resources") or {}
    shown = ", ".join(
        f"{k} {v:g}"
        for k, v in sorted(totals.items())
        if not k.startswith("node:") and k not in ("memory", "object_store_memory")
    )
    labels = {k: v for k, v in (node.get("Labels") or {}).items() if not k.startswith("ray.io/")}
    if labels:
        shown += ", labels " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{node.get('NodeManagerAddress', '?')} ({shown})"


def _probe(address: str | None) -> None:
    """Fail fast when nothing listens at the cluster's address: ``ray.init`` would
    otherwise retry a dead address for minutes."""
    target = address
    if target in (None, "auto"):
        target = os.environ.get("RAY_ADDRESS") or target
    if target is None or target in ("auto", "local"):
        return  # Ray finds (or starts) the cluster on this machine itself
    host, _, port = target.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise RunError(
            f"launcher.address: no Ray cluster answers at {target} ({why}); start one with "
            "`ray start --head`, or set launcher.address"
        ) from None


def advertised_endpoint(bound: str, node_ip: str) -> str:
    """``bound`` with a wildcard host replaced by ``node_ip``: what agents on other nodes dial."""
    if not bound.startswith("tcp://"):
        return bound
    host, _, port = bound[len("tcp://") :].rpartition(":")
    return f"tcp://{node_ip}:{port}" if host in _WILDCARD_HOSTS else bound


class RayLauncher:
    """Launched agents as actors on a Ray cluster (see the module docstring)."""

    def __init__(self, config: Config, specs: list[AgentSpec], log_dir: Path) -> None:
        try:
            import ray
        except ImportError:
            raise RunError('[launcher] kind = "ray" needs Ray: pip install "gra[ray]"') from None
        self._ray = ray
        self.log_dir = log_dir
        self.settings = config.launcher
        self._entries = {entry.model_id: entry for entry in config.agents if not entry.remote}
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            self._connect(config)
        self._check_placeable(specs)
        self.key: RunKey | None = None
        self.curve_key = "local"
        if config.bus.curve_keys:
            self.key = make_run_key(config.resolve(config.bus.curve_keys))
            self.curve_key = self.key.name
            atexit.register(self._revoke)
        self._actor_class = ray.remote(AgentHost)
        self._launched: dict[str, _Launched] = {}
        self._ended: dict[str, int] = {}
        self.nodes: dict[str, str] = {}

    # ---- the Launcher interface ---------------------------------------------

    def start(self, spec: AgentSpec, endpoint: str) -> None:
        ray = self._ray
        placement = placement_of(self._entries[spec.model])
        unplaceable = self._unplaceable(spec, placement, ray.nodes())
        if unplaceable:
            # Its node died mid-run: Ray holds the actor until a node that fits
            # joins (an autoscaler's, say); meanwhile its tasks go to other models.
            log.warning("agent_waits_for_a_node", agent=spec.agent_id, why=unplaceable)
        options: dict[str, Any] = {
            "num_cpus": placement.resources.get("CPU", 0.0),
            "num_gpus": placement.resources.get("GPU", 0.0),
            "resources": {k: v for k, v in placement.resources.items() if k not in ("CPU", "GPU")},
            "max_restarts": 0,
            "max_concurrency": 3,
        }
        if placement.labels:
            options["label_selector"] = placement.labels
        if self.settings.strategy == "spread":
            options["scheduling_strategy"] = "SPREAD"
        actor = self._actor_class.options(**options).remote(spec.agent_id)
        key = (self.key.public, self.key.secret, self.key.server_public) if self.key else None
        target = self.settings.connect or advertised_endpoint(endpoint, self._node_ip())
        self._launched[spec.agent_id] = _Launched(
            spec.agent_id,
            actor,
            actor.run.remote(
                msgspec.json.encode(msgspec.structs.replace(spec.settings, connect=target)),
                spec.token,
                key,
            ),
            actor.where.remote(),
            time.monotonic(),
        )
        self._ended.pop(spec.agent_id, None)
        log.info("agent_actor_created", agent=spec.agent_id, asks=placement.describe())

    def exited(self) -> dict[str, int]:
        ray = self._ray
        ended, self._ended = self._ended, {}
        self._note_placements()
        runs = {launched.run: launched for launched in self._launched.values()}
        if runs:
            ready, _ = ray.wait(list(runs), num_returns=len(runs), timeout=0)
            for ref in ready:
                launched = runs[ref]
                code, tail = self._outcome(ref)
                if tail:
                    self._append_log(launched.agent_id, tail)
                del self._launched[launched.agent_id]
                ended[launched.agent_id] = code
        return ended

    def kill(self, agent_id: str) -> None:
        launched = self._launched.pop(agent_id, None)
        if launched is None:
            return
        with contextlib.suppress(Exception):
            self._ray.kill(launched.actor, no_restart=True)
        self._ended[agent_id] = ACTOR_LOST

    def stop(self, grace_s: float) -> None:
        """Agents told to shut down get a moment to exit by themselves, then SIGTERM
        (they drain), then their actors are killed; the run's key is revoked."""
        ray = self._ray
        try:
            deadline = time.monotonic() + grace_s
            runs = [launched.run for launched in self._launched.values()]
            if runs:
                _, left = ray.wait(runs, num_returns=len(runs), timeout=min(2.0, grace_s / 3))
                waiting = set(left)
                for launched in self._launched.values():
                    if launched.run in waiting:
                        launched.actor.terminate.remote()
                if left:
                    ray.wait(
                        left,
                        num_returns=len(left),
                        timeout=max(0.0, deadline - time.monotonic()),
                    )
            for launched in self._launched.values():
                with contextlib.suppress(Exception):
                    ray.kill(launched.actor, no_restart=True)
            self._launched.clear()
        finally:
            self._revoke()
            if self._connected_here:
                with contextlib.suppress(Exception):
                    ray.shutdown()

    # ---- helpers -------------------------------------------------------------

    def _connect(self, config: Config) -> None:
        address = self.settings.address
        kwargs: dict[str, Any] = {
            "address": address,
            "namespace": "gra",
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if self.settings.runtime_env:
            kwargs["runtime_env"] = dict(self.settings.runtime_env)
        if address == "local":
            kwargs["include_dashboard"] = False
        _probe(address)
        try:
            self._ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "RAY_ADDRESS / this machine"
            raise RunError(
                f"launcher.address: cannot join the Ray cluster at {where}: {exc} "
                "(start one with `ray start --head`, or set launcher.address)"
            ) from None

    def _node_ip(self) -> str:
        return str(self._ray.util.get_node_ip_address())

    def _check_placeable(self, specs: list[AgentSpec]) -> None:
        """Stop before anything starts if some agent fits no live node of the cluster."""
        nodes = self._ray.nodes()
        problems = []
        for spec in specs:
            why = self._unplaceable(spec, placement_of(self._entries[spec.model]), nodes)
            if why and why not in problems:
                problems.append(why)
        if problems:
            raise RunError("; ".join(problems))

    def _unplaceable(
        self, spec: AgentSpec, placement: _Placement, nodes: list[dict[str, Any]]
    ) -> str | None:
        alive = [n for n in nodes if n.get("Alive")]
        if any(_fits(placement, node) for node in alive):
            return None
        have = "; ".join(_describe_node(n) for n in alive) or "none"
        return (
            f"agent {spec.agent_id} (model {spec.model!r}) is unplaceable: it asks for "
            f"{placement.describe()} and no live node of the Ray cluster has that "
            f"(nodes: {have})"
        )

    def _outcome(self, ref: Any) -> tuple[int, str]:
        from ray.exceptions import RayActorError, RayError

        try:
            code, tail = self._ray.get(ref, timeout=0)
            return int(code), str(tail)
        except RayActorError as exc:
            return ACTOR_LOST, f"gra: the agent's Ray actor died: {str(exc).splitlines()[0]}\n"
        except RayError as exc:
            return ACTOR_LOST, f"gra: the agent's Ray actor failed: {str(exc).splitlines()[0]}\n"

    def _note_placements(self) -> None:
        """Where each new actor landed (logged once); a warning for one still unplaced."""
        pending = {a.where: a for a in self._launched.values() if a.node is None}
        if not pending:
            return
        ray = self._ray
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        for ref in ready:
            launched = pending.pop(ref)
            try:
                where = ray.get(ref, timeout=0)
            except Exception:  # the actor died first; exited() reports it
                launched.node = ""
                continue
            launched.node = where["node"]
            self.nodes[launched.agent_id] = where["node"]
            log.info("agent_placed", agent=launched.agent_id, node=where["node"], ip=where["ip"])
        now = time.monotonic()
        for launched in pending.values():
            if not launched.warned and now - launched.started > self.settings.placement_timeout_s:
                launched.warned = True
                log.warning(
                    "agent_not_placed",
                    agent=launched.agent_id,
                    waited_s=round(now - launched.started),
                    why="every node that could hold it is busy (see `ray status`)",
                )

    def _append_log(self, agent_id: str, text: str) -> None:
        with (
            contextlib.suppress(OSError),
            agent_stderr(self.log_dir, agent_id).open("a") as handle,
        ):
            handle.write(text if text.endswith("\n") else text + "\n")

    def _revoke(self) -> None:
        if self.key is not None:
            self.key.authorized.unlink(missing_ok=True)
