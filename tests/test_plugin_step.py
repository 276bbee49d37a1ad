"""A plugin's role and protocol step through the live supervisor: `gra run` with
real agent processes, the plugin found by its entry points alone.

The plugin is ``examples/gra-screen``; it is made installed for the run by a
dist-info (its pyproject's entry points) in a folder on the PYTHONPATH, which
is what ``pip install`` would leave. Its screen bans the phrase the scripted
generator of model ``b`` writes ("... from b that adds ..."), so every item
``b`` generates is rejected by the step and every item ``a`` generates passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gra.config import load_config
from gra.errors import ConfigError
from gra.supervisor.steps import load_steps
from tests.conftest import ROOT, run_gra, scripted_config
from tests.test_fleet import read_jsonl

PLUGIN = ROOT / "examples" / "gra-screen"
# Only a and b generate, so that the balanced draws give each some items; all three
# review, and all serve the screen (never on an item their own model generated).
ROLES = {
    "a": ["generator", "reviewer", "screen"],
    "b": ["generator", "reviewer", "screen"],
    "c": ["reviewer", "screen"],
}
SCREEN = '[protocol.steps.screen]\nbanned = ["from b that"]\n'


def install(site: Path) -> None:
    """What installing the plugin leaves for importlib.metadata: a dist-info with
    the entry points its pyproject.toml declares."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = site / f"gra_screen-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
            for group, eps in groups.items()
        )
    )


@pytest.fixture
def plugin_installed(tmp_path: Path, double_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    site = tmp_path / "site"
    install(site)
    path = os.pathsep.join([str(site), str(PLUGIN), os.environ["PYTHONPATH"]])
    double_env.setenv("PYTHONPATH", path)  # gra run and the agents it starts
    return double_env


def test_a_plugin_step_rejects_items_through_the_live_supervisor(
    tmp_path: Path, plugin_installed: pytest.MonkeyPatch
) -> None:
    config = scripted_config(
        tmp_path, list(ROLES), roles=ROLES, target=100, max_instances=8, extra=SCREEN
    )
    out = tmp_path / "out"
    run_gra("run", str(config), "--out", str(out), "--no-progress")
    accepted, rejected = read_jsonl(out / "accepted.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert len(accepted) + len(rejected) == 8
    by = {m: [r for r in accepted + rejected if r["generator"]["model"] == m] for m in "ab"}
    assert by["a"] and by["b"], "the balanced draws gave both generators items"
    for record in by["a"]:
        assert (record["decision"], record["stage"]) == ("accepted", "accepted")
        (check,) = record["checks"]
        assert check["name"] == "screen" and not check["rejected"]
        assert check["reason"] == "no banned term, within the word limit"
    for record in by["b"]:
        assert (record["decision"], record["stage"]) == ("rejected", "screen")
        assert record["reason"] == "names the banned term 'from b that'"
        assert record["mean"] == 9.0, "the committee had accepted it"
        (check,) = record["checks"]
        assert check["rejected"] and "from b that adds two numbers" in check["evidence"]
    for record in accepted + rejected:
        assert record["checks"][0]["model"] != record["generator"]["model"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["rejected_screen"] == len(by["b"])
    assert summary["counts"]["accepted"] == len(by["a"])
    screened = sum(
        roles.get("screen", {}).get("calls", 0)
        for roles in (m["roles"] for m in summary["models"].values())
    )
    assert screened == 8, "each agent ran the plugin's role on its own"
    journal = [e["event"]["event"] for e in read_jsonl(out / "journal.jsonl") if e["t"] == "event"]
    assert journal.count("checker_drawn") == journal.count("checked") == 8


def test_a_step_no_plugin_provides_is_a_config_error_before_agents_start(
    tmp_path: Path, plugin_installed: pytest.MonkeyPatch
) -> None:
    extra = SCREEN + "[protocol.steps.screem]\n"
    config = scripted_config(tmp_path, list(ROLES), roles=ROLES, extra=extra)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "protocol.steps.screem: no installed plugin provides this step" in done.stderr
    assert "(installed: screen)" in done.stderr
    assert not list((out / "logs").glob("agent-*")), "no agent started"
    assert not (out / "journal.jsonl").exists()


def test_bad_settings_or_an_unserved_role_are_config_errors_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    install(site)
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    bad = SCREEN + "max_words = 0\n"
    config = load_config(scripted_config(tmp_path, list(ROLES), roles=ROLES, extra=bad))
    with pytest.raises(ConfigError, match=r"fleet.toml: protocol.steps.screen: .*max_words"):
        load_steps(config, str(tmp_path / "fleet.toml"))
    unserved = {m: [r for r in roles if r != "screen"] for m, roles in ROLES.items()}
    config = load_config(scripted_config(tmp_path, list(ROLES), roles=unserved, extra=SCREEN))
    with pytest.raises(ConfigError, match="no agent serves its role 'screen'"):
        load_steps(config, "fleet.toml")
    served = load_config(scripted_config(tmp_path, list(ROLES), roles=ROLES, extra=SCREEN))
    (step,) = load_steps(served, "fleet.toml")
    assert step.settings.banned == ("from b that",) and step.settings.max_words == 2_000
