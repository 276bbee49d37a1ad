"""A model file that is not a usable GGUF is reported at once, in one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gra.models import ModelError, resolve
from tests.conftest import SEEDS

ROOT = Path(__file__).resolve().parent.parent


def test_a_file_that_is_not_gguf_is_refused_before_any_agent_starts(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("this is not a model\n")
    with pytest.raises(ModelError, match=r"notes.gguf: not a GGUF model file"):
        resolve(str(text))
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="not a GGUF"):
        resolve(str(empty))


def config_with_model(tmp_path: Path, model: Path) -> Path:
    config = tmp_path / "job.toml"
    config.write_text(
        f"""
[run]
target = 2
[seeds]
path = "{SEEDS}"
[limits]
startup_timeout_s = 600
[[agents]]
model = "{model}"
name = "broken"
[[agents]]
model = "a"
backend = "plugin"
factory = "tests.doubles:scripted"
"""
    )
    return config


@pytest.mark.parametrize("content", [b"GGUF" + os.urandom(4000), b"GGUF"])
def test_a_truncated_gguf_stops_the_run_as_soon_as_its_agent_says_so(
    tmp_path: Path, content: bytes
) -> None:
    """The header passes the supervisor's check; llama.cpp then fails to load it. The
    agent exits with its 'unusable model' code and the run ends then (before: it
    waited the whole startup_timeout_s, 600 s here, and printed a traceback)."""
    model = tmp_path / "truncated.gguf"
    model.write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gra",
            "run",
            str(config_with_model(tmp_path, model)),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("gra:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "truncated.gguf" in errors[0] and "not a usable GGUF" in errors[0]
