"""Run configuration: TOML decoded by msgspec into typed structs.

A wrong key or value fails before anything starts, with the file and the
key's path in the message. Relative paths are relative to the config file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from gra.backends.base import DEFAULT_PROMPT_CACHE_MIB
from gra.errors import ConfigError
from gra.protocols.peer_review import Policy, VerifyPolicy
from gra.protocols.roles import DEFAULT_DOMAINS

Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
# Attempts at a model output that fails validation, per task (``limits.output_retries``,
# handed to every agent in its AgentSettings).
OutputRetries = Annotated[int, msgspec.Meta(ge=0, le=20)]
DEFAULT_OUTPUT_RETRIES = 2

# "sandbox": no model; an agent whose roles run code (the verifier).
BackendName = Literal["llamacpp", "vllm", "openai", "plugin", "sandbox"]
BACKENDS: tuple[str, ...] = get_args(BackendName)


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class ServeConfig(_Strict):
    """A vLLM server each agent of the entry starts on its own node and talks to
    (gra.backends.vllm_server): one config for a laptop or a GPU cluster, no server
    addresses. Relative paths resolve against the config file's directory."""

    # The weights: a directory on the node (or a name vLLM finds offline).
    model: Annotated[str, msgspec.Meta(min_length=1)]
    # An interpreter that has vLLM installed.
    python: Annotated[str, msgspec.Meta(min_length=1)] = "python3"
    # More arguments for vLLM's server (--dtype, --max-model-len ...), after gra's.
    args: tuple[str, ...] = ()
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    # 0: a free port, chosen when the agent starts.
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    startup_timeout_s: Seconds = 900.0
    # Set in the server's environment (VLLM_CPU_KVCACHE_SPACE, say).
    env: dict[str, str] | None = None


class AgentConfig(_Strict):
    """One model and the agent process(es) hosting it."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    backend: BackendName = "llamacpp"
    roles: tuple[str, ...] = (
        "generator",
        "reviewer",
        "adjudicator",
        "refiner",
        "annotator",
        "tester",
        "solver",
    )
    # Identity for the exclusion rules; defaults to ``model``.
    name: str | None = None
    replicas: Positive = 1
    capacity: Positive | None = None
    # vllm / openai
    url: str | None = None
    # vllm: start the server too, beside each agent (instead of ``url``).
    serve: ServeConfig | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    # llamacpp
    n_ctx: Positive = 4096
    n_threads: Positive | None = None
    # RAM (MiB) for saved model states that later prompts resume from; 0: off.
    prompt_cache_mib: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_PROMPT_CACHE_MIB
    # plugin: "module:callable" returning a Backend
    factory: str | None = None
    # Agents on other machines join by themselves (``gra agent --connect``).
    remote: bool = False
    # Remote agents on a CURVE bus: the name of the authorised key
    # (keys/authorized/NAME.key) they hold. That key may register as this
    # entry's model only, with its roles, at most ``replicas`` agents at once.
    key: str | None = None
    # [launcher] kind = "ray": what each replica reserves on the cluster (Ray's
    # actor options of the same names) and the node labels it must run on.
    num_cpus: Annotated[float, msgspec.Meta(ge=0)] | None = None
    num_gpus: Annotated[float, msgspec.Meta(ge=0)] | None = None
    resources: dict[str, Annotated[float, msgspec.Meta(ge=0)]] | None = None
    node_labels: dict[str, str] | None = None

    @property
    def model_id(self) -> str:
        return self.name or (Path(self.model).stem if self.model.endswith(".gguf") else self.model)


class AgentSettings(_Strict):
    """Everything one agent process runs with, in one shape: its ``[[agents]]`` entry
    and its place in the fleet. The supervisor hands it to each agent it starts
    (JSON in the environment, gra.protocols.messages.AGENT_SETTINGS_ENV); ``gra agent``
    builds it from its flags. So every default lives here or in AgentConfig, and a
    value the supervisor sets is the value the agent uses."""

    # The supervisor's endpoint; a launcher fills it in when it starts the agent.
    connect: str
    agent_id: Annotated[str, msgspec.Meta(min_length=1)]
    entry: AgentConfig
    output_retries: OutputRetries = DEFAULT_OUTPUT_RETRIES
    # llamacpp: the GGUF file (the supervisor resolves and verifies it once);
    # unset: ``entry.model`` from the catalog.
    model_path: str | None = None
    # The agent dies with this process (a launched agent's supervisor or actor).
    parent_pid: int | None = None
    log_file: str | None = None
    # CURVE: this agent's secret key file and the supervisor's public key file.
    curve_secret: str | None = None
    server_key: str | None = None


_agent_settings_decoder = msgspec.json.Decoder(AgentSettings)


def agent_settings(
    source: bytes | dict[str, Any], name: Callable[[str], str] = lambda field: field
) -> AgentSettings:
    """``source`` (a supervisor's JSON, or ``gra agent``'s flags as a dict) as
    AgentSettings; anything wrong is a ConfigError naming the field, as ``name``
    spells a field path (``entry.n_ctx``; "": the whole) for whoever gave it."""
    try:
        if isinstance(source, bytes):
            settings = _agent_settings_decoder.decode(source)
        else:
            settings = msgspec.convert(source, AgentSettings)
    except msgspec.ValidationError as exc:
        why, at, path = str(exc).rpartition(" - at `$.")
        message = f"{name(path.rstrip('`'))}: {why}" if at else f"{name('')}: {exc}"
        raise ConfigError(message) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{name('')}: not JSON: {exc}") from None
    from gra.agents.roles import known_roles

    unknown = sorted(set(settings.entry.roles) - set(known_roles()))
    if unknown:
        raise ConfigError(
            f"{name('entry.roles')}: unknown roles {unknown} (known: {known_roles()})"
        )
    problem = entry_problem(settings.entry)
    if problem is not None:
        raise ConfigError(f"{name('entry.' + problem[0])}: {problem[1]}")
    if bool(settings.curve_secret) != bool(settings.server_key):
        missing = "server_key" if settings.curve_secret else "curve_secret"
        raise ConfigError(
            f"{name(missing)}: CURVE needs both this agent's secret key file and the "
            "supervisor's public key file"
        )
    return settings


def entry_problem(agent: AgentConfig) -> tuple[str, str] | None:
    """What an entry lacks whatever the fleet around it, as (field, why)."""
    if agent.serve is not None and agent.backend != "vllm":
        return "serve", f"serve starts a vLLM server: the backend must be vllm, not {agent.backend}"
    if agent.serve is not None and agent.url:
        return "url", "serve starts the server and sets the url: leave url out"
    if agent.backend in ("vllm", "openai") and not agent.url and agent.serve is None:
        return "url", f"the {agent.backend} backend needs the server's url (or a serve table)"
    if agent.backend == "plugin" and ":" not in (agent.factory or ""):
        return "factory", "the plugin backend needs 'module:callable'"
    if agent.backend == "sandbox" and set(agent.roles) - {"verifier"}:
        return "roles", "a sandbox agent hosts no model; it can only be a verifier"
    return None


class RunSettings(_Strict):
    # Accepted items wanted per synthesis round.
    target: Positive = 4
    # Synthesis rounds: the pool grows with each round's accepted items.
    rounds: Positive = 1
    max_instances: Positive | None = None
    # Instances in progress at once; unset: as many as keep every agent busy
    # (see Conductor._room_for_an_instance).
    max_in_flight: Positive | None = None
    seed: int = 0
    few_shot: Annotated[int, msgspec.Meta(ge=0, le=16)] = 3
    out: str | None = None
    # Which domains to synthesise, with relative weights ({coding = 2, math = 1});
    # default: the seed pool's proportions.
    domains: dict[str, Annotated[float, msgspec.Meta(gt=0)]] | None = None


class SeedSettings(_Strict):
    path: str
    instruction: str = "instruction"
    response: str = "response"
    domain: str = "domain"
    id: str = "id"
    keywords: str = "keywords"
    summary: str = "summary"
    default_domain: str = "general"
    # Leave malformed rows out (each reported) instead of stopping.
    skip_bad_rows: bool = False


class DedupSettings(_Strict):
    """Post-processing of each round's accepted items (the paper's step 5)."""

    enabled: bool = True
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.9
    seeds_in_pool: bool = True
    text: Literal["pair", "instruction", "response"] = "pair"


class AnnotateSettings(_Strict):
    """Metadata enrichment: a random model writes each accepted item's keyword
    triple and summary (and picks its domain label) so later rounds can use it."""

    enrich: bool = True
    # Seeds without keywords or summary (or domain) are annotated before round 1.
    seeds: bool = True
    labels: tuple[str, ...] = DEFAULT_DOMAINS


class Limits(_Strict):
    task_deadline_s: Seconds = 600.0
    task_retries: Annotated[int, msgspec.Meta(ge=0, le=20)] = 2
    output_retries: OutputRetries = DEFAULT_OUTPUT_RETRIES
    startup_timeout_s: Seconds = 600.0
    # How long a task waits for its model to come back (an agent restarting)
    # when no uninvolved model can take the role over; then the instance fails.
    model_grace_s: Seconds = 60.0
    # How often a local agent that died is started again before it is given up.
    agent_restarts: Annotated[int, msgspec.Meta(ge=0)] = 3
    # A model whose tasks fail this many times in a row leaves the rotation for
    # breaker_backoff_s (doubling per trip, up to 10 min); its tasks go to others.
    breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    breaker_backoff_s: Seconds = 30.0


class BusSettings(_Strict):
    # Default: a private ipc:// socket. ``tcp://0.0.0.0:5555`` lets remote agents join.
    endpoint: str | None = None
    heartbeat_interval_s: Seconds = 1.0
    heartbeat_misses: Annotated[int, msgspec.Meta(ge=2)] = 5
    # A `gra keys` directory: the tcp bus then admits only CURVE-authorised agents.
    curve_keys: str | None = None
    # A tcp bus without CURVE lets anyone who reaches the port join and write
    # data; it is refused unless this says the risk is taken knowingly.
    allow_unauthenticated: bool = False


class LauncherSettings(_Strict):
    """Where the supervisor starts its (non-remote) agents: ``local`` child
    processes, or actors on a Ray cluster (gra.supervisor.ray_launcher)."""

    kind: Literal["local", "ray"] = "local"
    # ray: "auto" (the cluster this machine is part of), "ray://HOST:10001" (Ray
    # Client) or a GCS address "HOST:6379"; "local" starts a private one-node Ray.
    address: str | None = None
    # ray: the endpoint agents connect back to (default: the bus endpoint, a
    # wildcard host replaced by this node's address on the cluster).
    connect: str | None = None
    # ray: Ray's runtime_env for the agents (env_vars, working_dir, py_modules...).
    runtime_env: dict[str, Any] | None = None
    # ray: "spread" puts an entry's replicas on different nodes where it can.
    strategy: Literal["default", "spread"] = "default"
    # ray: an agent not placed on a node within this long is reported (once).
    placement_timeout_s: Seconds = 120.0


class Config(_Strict):
    agents: tuple[AgentConfig, ...]
    # Required by `gra run`; `gra review` takes its pairs from --input instead.
    seeds: SeedSettings | None = None
    run: RunSettings = RunSettings()
    protocol: Policy = Policy()
    limits: Limits = Limits()
    bus: BusSettings = BusSettings()
    launcher: LauncherSettings = LauncherSettings()
    dedup: DedupSettings = DedupSettings()
    annotate: AnnotateSettings = AnnotateSettings()
    # Verification by execution of coding and math items (off: the paper's protocol).
    verify: VerifyPolicy = VerifyPolicy()
    # Where the config file lives; relative paths resolve against it.
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    try:
        config = msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = msgspec.structs.replace(config, base_dir=str(path.resolve().parent))
    config = _resolve_serve_paths(config)
    config = _load_reviewer_weights(config, path)
    _check(config, path)
    return config


def _resolve_serve_paths(config: Config) -> Config:
    """``serve.python`` and ``serve.model`` given as paths relative to the config file
    become absolute (agents run elsewhere); a model that is no path here stays a name."""

    def resolved(serve: ServeConfig) -> ServeConfig:
        python = serve.python
        if "/" in python:
            python = str(config.resolve(python))
        model = serve.model
        if config.resolve(model).exists():
            model = str(config.resolve(model))
        return msgspec.structs.replace(serve, python=python, model=model)

    agents = tuple(
        msgspec.structs.replace(agent, serve=resolved(agent.serve)) if agent.serve else agent
        for agent in config.agents
    )
    return msgspec.structs.replace(config, agents=agents)


def _load_reviewer_weights(config: Config, path: Path) -> Config:
    """Replace ``[protocol] reviewer_weights = "calibration.json"`` by the weights
    that file holds (``gra calibrate`` writes them under "weights")."""
    weights = config.protocol.reviewer_weights
    where = f"{path}: protocol.reviewer_weights"
    if isinstance(weights, str):
        if not weights:
            weights = {}
        else:
            file = config.resolve(weights)
            try:
                data = json.loads(file.read_text())
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read {file}: {exc.strerror}") from exc
            except ValueError as exc:
                raise ConfigError(f"{where}: {file} is not JSON: {exc}") from exc
            found = data.get("weights") if isinstance(data, dict) else None
            try:
                weights = msgspec.convert(found, dict[str, Annotated[float, msgspec.Meta(ge=0)]])
            except msgspec.ValidationError as exc:
                raise ConfigError(
                    f'{where}: {file} has no valid "weights" table '
                    f"(model -> number >= 0; gra calibrate writes one): {exc}"
                ) from exc
    bad = [m for m, w in weights.items() if not math.isfinite(w)]
    if bad:
        raise ConfigError(f"{where}: weights must be finite numbers: {bad}")
    models = {a.model_id for a in config.agents if a.backend != "sandbox"}
    if weights and not set(weights) & models:
        raise ConfigError(
            f"{where}: no weight is for a model of this fleet "
            f"(weights for {sorted(weights)}; fleet {sorted(models)})"
        )
    protocol = msgspec.structs.replace(config.protocol, reviewer_weights=weights)
    return msgspec.structs.replace(config, protocol=protocol)


def _check(config: Config, path: Path) -> None:
    from gra.agents.roles import known_roles

    roles = set(known_roles())
    for i, agent in enumerate(config.agents):
        where = f"{path}: agents[{i}]"
        for role in agent.roles:
            if role not in roles:
                raise ConfigError(f"{where}.roles: unknown role {role!r} (known: {sorted(roles)})")
        problem = entry_problem(agent)
        if problem is not None:
            raise ConfigError(f"{where}.{problem[0]}: {problem[1]}")
        if agent.key is not None and not agent.remote:
            raise ConfigError(f"{where}.key: only remote agents name a key (local ones share one)")
        if agent.remote and config.bus.curve_keys and not agent.key:
            raise ConfigError(
                f"{where}.key: a remote agent on a CURVE bus needs the name of the key its "
                "agents hold (keys/authorized/NAME.key): that key may then register as this "
                "model and nothing else"
            )
        if agent.key == "local":
            raise ConfigError(f"{where}.key: 'local' is the supervisor's own agents' key")
    endpoint = config.bus.endpoint or (
        RAY_DEFAULT_ENDPOINT if config.launcher.kind == "ray" else ""
    )
    # On Ray without a keys directory, the launcher makes keys for the run; remote
    # agents need keys of their own.
    run_keys = config.launcher.kind == "ray" and not any(a.remote for a in config.agents)
    if (
        endpoint.startswith("tcp://")
        and not config.bus.curve_keys
        and not config.bus.allow_unauthenticated
        and not run_keys
    ):
        raise ConfigError(
            f"{path}: bus.endpoint: {endpoint} without curve_keys lets anyone who reaches "
            "the port join the fleet and write data; set bus.curve_keys (make keys with "
            "`gra keys`), or allow_unauthenticated = true on a network you trust"
        )
    _check_launcher(config, path)
    models = {a.model_id for a in config.agents if a.backend != "sandbox"}
    if len(models) < 2:
        raise ConfigError(
            f"{path}: agents: the protocol needs at least 2 distinct models, got {sorted(models)}"
        )
    require_role(config, path, "reviewer")
    if config.verify.enabled and not any("verifier" in a.roles for a in config.agents):
        raise ConfigError(
            f"{path}: verify.enabled: no agent serves the verifier role; add one:\n"
            '[[agents]]\nmodel = "sandbox"\nbackend = "sandbox"\nroles = ["verifier"]'
        )


def require_role(config: Config, path: Path, role: str) -> None:
    """A job needs some agent to serve ``role`` (generation, say, or --refine)."""
    if not any(role in a.roles for a in config.agents):
        raise ConfigError(f"{path}: agents: no agent serves the {role} role")


# The Ray launcher's bus unless the config names one: every interface, any free port
# (the launcher tells its agents which).
RAY_DEFAULT_ENDPOINT = "tcp://0.0.0.0:0"
_RAY_PLACEMENT = ("num_cpus", "num_gpus", "resources", "node_labels")


def _check_launcher(config: Config, path: Path) -> None:
    """``[launcher]`` and the agents' placement keys agree with each other and the bus."""
    launcher = config.launcher
    if launcher.kind != "ray":
        for key in ("address", "connect", "runtime_env"):
            if getattr(launcher, key) is not None:
                raise ConfigError(f'{path}: launcher.{key}: only for kind = "ray"')
        for i, agent in enumerate(config.agents):
            for key in _RAY_PLACEMENT:
                if getattr(agent, key) is not None:
                    raise ConfigError(
                        f"{path}: agents[{i}].{key}: a placement on a cluster; only for "
                        '[launcher] kind = "ray"'
                    )
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            f'{path}: launcher.kind: "ray" needs Ray on this machine: pip install "gra[ray]"'
        )
    address = launcher.address
    if address is not None and not (
        address in ("auto", "local") or address.startswith("ray://") or _host_port(address)
    ):
        raise ConfigError(
            f'{path}: launcher.address: {address!r} is not "auto", "local", '
            '"ray://HOST:PORT" or a GCS address "HOST:PORT"'
        )
    endpoint = config.bus.endpoint or RAY_DEFAULT_ENDPOINT
    if not endpoint.startswith("tcp://"):
        raise ConfigError(
            f"{path}: bus.endpoint: the Ray launcher's agents run on other nodes and connect "
            f"back over tcp; {endpoint} is on this machine only (leave endpoint unset for "
            '"tcp://0.0.0.0:0", any free port, or name a tcp one)'
        )
    if launcher.connect is not None and not (
        launcher.connect.startswith("tcp://") and _host_port(launcher.connect[6:])
    ):
        raise ConfigError(f"{path}: launcher.connect: {launcher.connect!r} is not tcp://HOST:PORT")
    for i, agent in enumerate(config.agents):
        if agent.remote and any(getattr(agent, key) is not None for key in _RAY_PLACEMENT):
            raise ConfigError(
                f"{path}: agents[{i}]: a remote agent joins by itself; the launcher places "
                "only the others (remove remote = true or the placement keys)"
            )
        for name in agent.resources or {}:
            if name in ("CPU", "GPU"):
                raise ConfigError(
                    f"{path}: agents[{i}].resources.{name}: use num_{name.lower()}s instead"
                )


def _host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit())
