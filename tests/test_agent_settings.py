"""An agent's settings travel in one shape, AgentSettings (gra/config.py): the
supervisor hands a launched agent the Struct it built, ``gra agent``'s flags build
the same Struct, and every default is stated once, in the Struct."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import msgspec
import pytest

from gra.bus import Router
from gra.cli import agent_settings_of, build_parser
from gra.config import AgentConfig, AgentSettings, load_config
from gra.errors import ConfigError
from gra.protocols.messages import AGENT_SETTINGS_ENV, Hello
from gra.supervisor.job import agent_specs
from gra.supervisor.launcher import AgentSpec, LocalLauncher
from tests.conftest import scripted_config


async def _hello(router: Router, timeout_s: float = 60) -> Hello:
    deadline = time.monotonic() + timeout_s
    while True:
        _, frame = await asyncio.wait_for(router.recv(), deadline - time.monotonic())
        if isinstance(frame, Hello):
            return frame


async def test_a_launched_agent_runs_with_the_struct_the_supervisor_built(
    router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Field for field, with no default restated on the way: before, AgentConfig went
    through argv and argparse into AgentOptions, which stated n_ctx, output_retries and
    prompt_cache_mib again and dropped them for all but llama.cpp agents, so a default
    changed in AgentConfig never reached a plugin agent. Nothing of it is in argv."""
    config = load_config(scripted_config(tmp_path, ["a", "b"], extra="output_retries = 7"))
    built = agent_specs(config)[0].settings
    # Values no default has, as a changed default of AgentConfig would give.
    entry = msgspec.structs.replace(
        built.entry, factory="tests.doubles:recording", n_ctx=1234, prompt_cache_mib=7, capacity=2
    )
    spec = AgentSpec(msgspec.structs.replace(built, entry=entry), token="t0ken-of-the-run")
    record_path = tmp_path / "received.json"
    monkeypatch.setenv("GRA_DOUBLE_SETTINGS_OUT", str(record_path))
    launcher = LocalLauncher(tmp_path)
    launcher.start(spec, router.bound)
    try:
        hello = await _hello(router)
        argv = Path(f"/proc/{launcher.processes[spec.agent_id].pid}/cmdline").read_bytes()
    finally:
        launcher.kill(spec.agent_id)
        launcher.stop(5)
    record = json.loads(record_path.read_text())
    sent = msgspec.structs.replace(
        spec.settings,
        connect=router.bound,
        parent_pid=os.getpid(),
        log_file=str(tmp_path / f"agent-{spec.agent_id}.jsonl"),
    )
    assert msgspec.convert(record["settings"], AgentSettings) == sent
    assert (sent.output_retries, sent.entry.n_ctx, sent.entry.prompt_cache_mib) == (7, 1234, 7)
    assert (hello.agent_id, hello.model, hello.capacity) == (spec.agent_id, "a", 2)
    assert hello.token == "t0ken-of-the-run"
    assert record["environment"] == [], "the agent's children would inherit these"
    for text in (spec.agent_id, router.bound, "t0ken", "tests.doubles"):
        assert text.encode() not in argv, f"{text} is in the process list"


def test_gra_agent_flags_state_no_default() -> None:
    """A flag left out keeps the Struct's default: argparse states none of its own."""
    stated = vars(build_parser().parse_args(["agent"]))
    stated = {k: v for k, v in stated.items() if v not in (None, False)}
    del stated["handler"], stated["command"]
    assert stated == {}
    args = build_parser().parse_args(["agent", "--connect", "tcp://h:1", "--model", "m"])
    settings = agent_settings_of(args)
    assert settings == AgentSettings("tcp://h:1", settings.agent_id, AgentConfig(model="m"))


def test_gra_agent_flags_build_the_struct_a_config_entry_is() -> None:
    args = build_parser().parse_args([
        "agent", "--connect", "tcp://h:1", "--agent-id", "big-1", "--backend", "vllm",
        "--url", "http://gpu:8000", "--model", "qwen-7b", "--capacity", "16",
        "--role", "reviewer, adjudicator", "--output-retries", "0",
        "--curve-secret", "k/agents/big.key_secret", "--server-key", "k/supervisor.key",
    ])  # fmt: skip
    entry = AgentConfig(
        model="qwen-7b",
        backend="vllm",
        url="http://gpu:8000",
        capacity=16,
        roles=("reviewer", "adjudicator"),
    )
    assert agent_settings_of(args) == AgentSettings(
        "tcp://h:1",
        "big-1",
        entry,
        output_retries=0,
        curve_secret="k/agents/big.key_secret",
        server_key="k/supervisor.key",
    )


def _settings_json(**entry: object) -> str:
    return json.dumps({"connect": "ipc:///x", "agent_id": "a-0", "entry": {"model": "m", **entry}})


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (_settings_json(n_ctx=0), "entry.n_ctx: Expected `int` >= 1"),
        (_settings_json(capacity="8"), "entry.capacity: Expected `int | null`, got `str`"),
        (_settings_json(bogus=1), "entry: Object contains unknown field `bogus`"),
        (_settings_json(backend="openai"), "entry.url: the openai backend needs"),
        (_settings_json(roles=["generator", "poet"]), "entry.roles: unknown roles ['poet']"),
        (json.dumps({"connect": "ipc:///x", "entry": {"model": "m"}}), "`agent_id`"),
        ('{"connect": ', "not JSON"),
    ],
)
def test_bad_settings_from_the_supervisor_name_the_field(
    raw: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AGENT_SETTINGS_ENV, raw)
    args = build_parser().parse_args(["agent", "--settings-env"])
    with pytest.raises(ConfigError, match="GRA_AGENT_SETTINGS") as caught:
        agent_settings_of(args)
    assert named in str(caught.value)


def test_settings_from_the_supervisor_are_taken_out_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(AGENT_SETTINGS_ENV, _settings_json(capacity=3))
    settings = agent_settings_of(build_parser().parse_args(["agent", "--settings-env"]))
    assert settings.entry.capacity == 3 and settings.agent_id == "a-0"
    assert AGENT_SETTINGS_ENV not in os.environ
    with pytest.raises(ConfigError, match="is not set"):
        agent_settings_of(build_parser().parse_args(["agent", "--settings-env"]))
    monkeypatch.setenv(AGENT_SETTINGS_ENV, _settings_json())
    with pytest.raises(ConfigError, match="--model is given"):
        agent_settings_of(build_parser().parse_args(["agent", "--settings-env", "--model", "x"]))
