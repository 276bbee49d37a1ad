"""The Ray launcher on a real Ray cluster of several nodes on this machine.

``ray.cluster_utils.Cluster`` starts real Ray nodes (each its own raylet and
object store) in this process's session; `gra run` is a separate process that
joins the cluster as a driver, as it would on a real cluster. Agents are
backed by the scripted test double (tests/doubles.py), so the tests are about
placement, healing and keys, not models. Ray's footprint is kept small: a CPU
or two per node, 80 MB object stores, no dashboard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from gra.config import ConfigError, load_config
from gra.status import read_status, render_status
from tests.conftest import ROOT, pid_alive, scripted_config
from tests.test_fleet import _free_port, check_outputs

_STORE = 80 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"head": 4},
            "object_store_memory": _STORE,
            "include_dashboard": False,
            # A dead node is declared dead in about 2 s instead of 15.
            "_system_config": {
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 4,
            },
        },
    )
    cluster.add_node(num_cpus=2, resources={"worker": 4}, object_store_memory=_STORE)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def _node_ids(cluster: object) -> dict[str, str]:
    """The node id of each node of the cluster, by the custom resource it holds."""
    out = {}
    for node in cluster.list_all_nodes():  # type: ignore[attr-defined]
        for name in node._ray_params.resources or {}:
            out[name] = node.node_id
    return out


def ray_config(
    directory: Path,
    cluster: object,
    placement: dict[str, str],
    *,
    port: int | None = None,
    keys: Path | None = None,
    target: int = 6,
    delay_s: float = 0.05,
    max_in_flight: int = 4,
    extra_launcher: str = "",
    **kwargs: object,
) -> Path:
    """``scripted_config`` on the Ray launcher; ``placement``: TOML lines per model.

    Without ``port`` and ``keys``, the bus is the Ray launcher's default: tcp on
    any free port, CURVE with keys made for the run."""
    runtime_env = {
        "env_vars": {"PYTHONPATH": str(ROOT), "GRA_DOUBLE_DELAY_S": str(delay_s)},
    }
    launcher = [
        "[launcher]",
        'kind = "ray"',
        f'address = "{cluster.address}"',  # type: ignore[attr-defined]
        "runtime_env = " + _inline(runtime_env),
        extra_launcher,
    ]
    path = scripted_config(
        directory,
        list(placement),
        target=target,
        max_in_flight=max_in_flight,
        endpoint=f"tcp://127.0.0.1:{port}" if port else None,
        curve_keys=keys,
        extra="\n".join(launcher),
        **kwargs,  # type: ignore[arg-type]
    )
    text = path.read_text()
    for model, lines in placement.items():
        text = text.replace(f'model = "{model}"\n', f'model = "{model}"\n{lines}\n', 1)
    path.write_text(text)
    return path


def _inline(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def gra_run(config: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(run: subprocess.Popen[str], timeout: float) -> str:
    try:
        _, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        _, stderr = run.communicate()
        pytest.fail(f"gra run did not end within {timeout} s: {stderr[-3000:]}")
    assert run.returncode == 0, stderr[-3000:]
    return stderr


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def summary_of(out: Path) -> dict:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_a_run_places_agents_on_both_nodes_and_keyless_agents_stay_out(
    tmp_path: Path, cluster: object
) -> None:
    """Agents pinned by custom resources land on their nodes; the run passes the
    checks of a local run; an agent started by hand without the run's CURVE key,
    even one claiming a launched agent's id and model, gets no frame in."""
    nodes = _node_ids(cluster)
    keys = tmp_path / "keys"
    port = _free_port()
    config = ray_config(
        tmp_path,
        cluster,
        {
            "a": "num_cpus = 0.5\nresources = {head = 1}",
            "b": "num_cpus = 0.5\nresources = {head = 1}",
            "c": "num_cpus = 0.5\nresources = {worker = 1}",
            "d": "num_cpus = 0.5\nresources = {worker = 1}",
        },
        port=port,
        keys=keys,
        target=6,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRA_DOUBLE_DELAY_S": "0.05"}
    command = [sys.executable, "-m", "gra", "agent", "--connect", f"tcp://127.0.0.1:{port}"]
    command += ["--backend", "plugin", "--factory", "tests.doubles:scripted"]
    intruders = [
        subprocess.Popen([*command, "--model", model, "--agent-id", agent_id], env=env)
        for model, agent_id in (("a", "a-0"), ("c", "intruder"))
    ]
    out = tmp_path / "out"
    try:
        finish(gra_run(config, out), 240)
    finally:
        for intruder in intruders:
            intruder.kill()
            intruder.wait()

    summary = json.loads((out / "summary.json").read_text())
    agents = summary["agents"]
    assert sorted(agents) == ["a-0", "b-0", "c-0", "d-0"]
    assert {agents["a-0"]["node"], agents["b-0"]["node"]} == {nodes["head"]}
    assert {agents["c-0"]["node"], agents["d-0"]["node"]} == {nodes["worker"]}
    assert all(a["completed"] > 0 for a in agents.values()), agents
    accepted, _ = check_outputs(out, summary)
    assert len(accepted) >= 6
    for record in accepted:
        reviewers = [r["model"] for r in record["reviews"]]
        assert record["generator"]["model"] not in reviewers
    # The intruders never completed a handshake: not a hello, not a frame.
    assert agents["a-0"]["pid"] not in (p.pid for p in intruders)
    assert summary["refused_hellos"] == 0
    assert summary["bus"]["dropped_frames"] == 0
    # The run's key was authorised for the run only.
    assert not list((keys / "authorized").glob("ray-run-*"))
    console = Console(record=True, width=200)
    render_status(read_status(out), console)
    shown = console.export_text()
    assert nodes["head"][:8] in shown and nodes["worker"][:8] in shown


@pytest.mark.slow
@pytest.mark.vllm
def test_a_served_vllm_model_runs_on_the_node_its_entry_asks_for(
    tmp_path: Path, cluster: object
) -> None:
    """An entry with ``serve``, pinned to the worker node: its agent starts the real vLLM
    server (CPU build) there and generates; the scripted models review."""
    from tests.test_vllm_serve import real_serve_entry
    from tests.vllm_server import vllm_available

    assert vllm_available() is None, vllm_available()
    nodes = _node_ids(cluster)
    config = ray_config(
        tmp_path,
        cluster,
        {"a": "num_cpus = 0.5\nresources = {head = 1}", "b": "num_cpus = 0.5"},
        target=2,
        roles={"a": ["reviewer"], "b": ["reviewer"]},
    )
    # A real model on two busy cores: the default heartbeat (5 s to be declared lost), not
    # the scripted tests' 1 s, which ends a starved agent and its server mid-run.
    text = (
        config.read_text()
        .replace("startup_timeout_s = 60", "startup_timeout_s = 900")
        .replace("heartbeat_interval_s = 0.2", "heartbeat_interval_s = 1.0")
    )
    served = real_serve_entry('roles = ["generator"]\nnum_cpus = 1\nresources = {worker = 1}')
    config.write_text(f"{text}[[agents]]\n{served}\n")
    out = tmp_path / "out"
    finish(gra_run(config, out), 1500)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agents"]["qwen-served-0"]["node"] == nodes["worker"]
    accepted, rejected = check_outputs(out, summary)
    generated = [r for r in [*accepted, *rejected] if r["decision"] != "failed"]
    why = [(r["stage"], r["reason"]) for r in [*accepted, *rejected]], summary["agents"]
    assert generated, why
    assert all(r["generator"]["model"] == "qwen-served" for r in generated), why
    assert summary["models"]["qwen-served"]["roles"]["generator"]["completion_tokens"] > 0
    assert summary["agents"]["qwen-served-0"]["completed"] >= len(generated)


@pytest.mark.slow
def test_a_node_killed_mid_run(tmp_path: Path, cluster: object) -> None:
    """Two agents on a node that dies: their tasks move, Ray places their restarts on
    the node that replaces it, and every instance is written exactly once."""
    victim = cluster.add_node(  # type: ignore[attr-defined]
        num_cpus=1, resources={"slot": 2}, object_store_memory=_STORE
    )
    cluster.wait_for_nodes()  # type: ignore[attr-defined]
    config = ray_config(
        tmp_path,
        cluster,
        {
            "a": "num_cpus = 0.25\nresources = {head = 1}",
            "b": "num_cpus = 0.25\nresources = {head = 1}",
            "c": "num_cpus = 0.25\nresources = {slot = 1}",
            "d": "num_cpus = 0.25\nresources = {slot = 1}",
        },
        target=30,
        delay_s=0.4,
        max_in_flight=6,
    )
    # The default number of restarts: one that waits for a node to join is not a failure.
    config.write_text(config.read_text().replace("agent_restarts = 50", "agent_restarts = 3"))
    out = tmp_path / "out"
    run = gra_run(config, out)
    try:
        wait_for(
            lambda: sum(a["completed"] for a in summary_of(out).get("agents", {}).values()) >= 8,
            120,
            "the run to be under way",
        )
        before = summary_of(out)["agents"]
        assert {before["c-0"]["node"], before["d-0"]["node"]} == {victim.node_id}
        cluster.remove_node(victim, allow_graceful=False)  # type: ignore[attr-defined]
        # The agents on it died with it.
        wait_for(
            lambda: not any(pid_alive(before[a]["pid"]) for a in ("c-0", "d-0")),
            30,
            "the dead node's agents to end",
        )
        spare = cluster.add_node(  # type: ignore[attr-defined]
            num_cpus=1, resources={"slot": 2}, object_store_memory=_STORE
        )
        stderr = finish(run, 240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    summary = json.loads((out / "summary.json").read_text())
    agents = summary["agents"]
    assert summary["agents_lost"] >= 2, stderr[-2000:]
    for agent_id in ("c-0", "d-0"):
        assert agents[agent_id]["restarts"] >= 1
        assert agents[agent_id]["node"] == spare.node_id
        assert agents[agent_id]["pid"] != before[agent_id]["pid"]
    if before["c-0"]["in_flight"] or before["d-0"]["in_flight"]:
        assert summary["retries"] >= 1  # the dead agents' tasks went elsewhere
    accepted, _ = check_outputs(out, summary, max_in_flight=6)
    assert len(accepted) >= 30
    cluster.remove_node(spare)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_an_agent_no_node_can_hold_is_reported_at_once(tmp_path: Path, cluster: object) -> None:
    config = ray_config(
        tmp_path,
        cluster,
        {
            "a": "num_cpus = 0.5",
            "b": "num_cpus = 0.5",
            "c": "num_cpus = 0.5\nresources = {tpu_pod = 1}",
            "d": 'num_cpus = 0.5\nnode_labels = {zone = "mars"}',
        },
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "agent c-0 (model 'c') is unplaceable" in last and "tpu_pod 1" in last, last
    assert "agent d-0 (model 'd') is unplaceable" in last and "label zone=mars" in last, last
    assert took < 60, f"took {took:.0f} s to say so"


# ---- config validation: no cluster needed -------------------------------------


def _config(tmp_path: Path, launcher: str, agent_extra: str = "", endpoint: str = "") -> Path:
    path = scripted_config(
        tmp_path,
        ["a", "b"],
        endpoint=endpoint or None,
        allow_unauthenticated=bool(endpoint),
        extra=launcher,
    )
    if agent_extra:
        text = path.read_text().replace('model = "a"\n', f'model = "a"\n{agent_extra}\n', 1)
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("launcher", "agent_extra", "endpoint", "message"),
    [
        ('[launcher]\nkind = "ray"\nadress = "auto"', "", "tcp://127.0.0.1:5555", "adress"),
        ('[launcher]\nkind = "slurm"', "", "", "$.launcher.kind"),
        (
            '[launcher]\nkind = "ray"',
            "",
            "ipc:///tmp/gra-test.sock",
            "bus.endpoint: the Ray launcher's agents run on other nodes",
        ),
        (
            '[launcher]\nkind = "ray"\naddress = "nowhere"',
            "",
            "tcp://127.0.0.1:5555",
            "launcher.address: 'nowhere' is not",
        ),
        ('[launcher]\nkind = "ray"\nconnect = "ipc:///x"', "", "tcp://0.0.0.0:5555", "connect"),
        ("", "num_gpus = 1", "", "agents[0].num_gpus: a placement on a cluster; only for"),
        ('[launcher]\naddress = "auto"', "", "", 'launcher.address: only for kind = "ray"'),
        (
            '[launcher]\nkind = "ray"',
            "resources = {GPU = 1}",
            "tcp://127.0.0.1:5555",
            "resources.GPU: use num_gpus",
        ),
        ('[launcher]\nkind = "ray"', "num_cpus = -1", "tcp://127.0.0.1:5555", "num_cpus"),
    ],
)
@pytest.mark.filterwarnings("ignore")
def test_launcher_config_errors_name_the_key(
    tmp_path: Path, launcher: str, agent_extra: str, endpoint: str, message: str
) -> None:
    path = _config(tmp_path, launcher, agent_extra, endpoint)
    with pytest.raises(ConfigError, match=r"fleet\.toml") as error:
        load_config(path)
    assert message in str(error.value)


def test_ray_launcher_without_ray_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, '[launcher]\nkind = "ray"', endpoint="tcp://127.0.0.1:5555")
    monkeypatch.setitem(sys.modules, "ray", None)  # what an interpreter without Ray sees
    with pytest.raises(ConfigError, match=r'needs Ray on this machine: pip install "gra\[ray\]"'):
        load_config(path)


def test_a_remote_agent_takes_no_placement(tmp_path: Path) -> None:
    path = scripted_config(
        tmp_path,
        ["a", "b"],
        remote=("r",),
        endpoint="tcp://127.0.0.1:5555",
        allow_unauthenticated=True,
        extra='[launcher]\nkind = "ray"',
    )
    path.write_text(path.read_text().replace("remote = true", "remote = true\nnum_cpus = 2"))
    with pytest.raises(ConfigError, match="a remote agent joins by itself"):
        load_config(path)


def test_no_cluster_at_the_address_is_said_at_once(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'[launcher]\nkind = "ray"\naddress = "127.0.0.1:{_free_port()}"',
        endpoint="tcp://127.0.0.1:0",
    )
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "launcher.address: no Ray cluster answers at 127.0.0.1:" in last, last
