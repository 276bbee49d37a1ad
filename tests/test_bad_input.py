"""Bad configs and bad seed files: one clear error naming the file and the place,
a non-zero exit, no traceback, and nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from gra.cli import main
from tests.conftest import SEEDS, scripted_config

pytestmark = pytest.mark.guarantee  # README, Reliability

GOOD_AGENTS = """
[[agents]]
model = "a"
backend = "plugin"
factory = "tests.doubles:scripted"
[[agents]]
model = "b"
backend = "plugin"
factory = "tests.doubles:scripted"
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def write(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f'[seeds]\npath = "{SEEDS}"\n[run]\ntargte = 3\n{GOOD_AGENTS}', "unknown field `targte`"),
        (f'[seeds]\npath = "{SEEDS}"\n[run]\ntarget = "many"\n{GOOD_AGENTS}', "$.run.target"),
        (f'[seeds]\npath = "{SEEDS}"\n[run]\ntarget = 0\n{GOOD_AGENTS}', "$.run.target"),
        (f'[seeds]\npath = "{SEEDS}"\n[protocol]\ntau = 11\n{GOOD_AGENTS}', "$.protocol.tau"),
        (
            f'[seeds]\npath = "{SEEDS}"\n{GOOD_AGENTS}\n[[agents]]\nmodel="c"\nbackend = "gpt"',
            "$.agents[2].backend",
        ),
        (f'[seeds]\npath = "{SEEDS}"\n[[agents]]\nmodel = "a"\n', "at least 2 distinct models"),
        (
            f'[seeds]\npath = "{SEEDS}"\n{GOOD_AGENTS}\n[[agents]]\nmodel="c"\nroles=["poet"]',
            "agents[2].roles: unknown role 'poet'",
        ),
        (
            f'[seeds]\npath = "{SEEDS}"\n[[agents]]\nmodel="a"\nbackend="vllm"\n'
            '[[agents]]\nmodel="b"\nbackend="vllm"\nurl="http://x"',
            "agents[0].url",
        ),
        (f"{GOOD_AGENTS}", "missing [seeds] section"),
        (
            f'[seeds]\npath = "{SEEDS}"\n'
            '[[agents]]\nmodel="a"\nroles=["reviewer"]\n[[agents]]\nmodel="b"\nroles=["reviewer"]',
            "no agent serves the generator role",
        ),
        ("[seeds\npath=", "not valid TOML"),
    ],
)
def test_bad_config_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    config = write(tmp_path, body)
    code, err = run_cli(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2
    assert str(config) in err and expected in err, err
    assert not (tmp_path / "out" / "journal.jsonl").exists(), "the run started anyway"


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "run", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml: cannot read config" in err


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(
        tmp_path,
        f'[seeds]\npath = "{SEEDS}"\n[[agents]]\nmodel = "missing.gguf"\n'
        '[[agents]]\nmodel = "qwen2.5-coder-0.5b"\n',
    )
    code, err = run_cli(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and "missing.gguf" in err and "neither a known model" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"instruction": "a", "response": "b"}\nnot json\n', ":2: not a JSON object"),
        ('{"instruction": "a", "response": "b"}\n[1, 2]\n', ":2: expected a JSON object"),
        ('{"instruction": "a"}\n', ":1: field 'response' must be a non-empty string"),
        ('{"instruction": "", "response": "b"}\n', ":1: field 'instruction'"),
        ('{"instruction": "a", "response": "b", "domain": 7}\n', ":1: field 'domain'"),
        ('{"id": "x", "instruction": "a", "response": "b"}\n' * 2, ":2: duplicate id 'x'"),
        ("\n\n", "no seed items"),
    ],
)
def test_bad_seed_file_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    seeds = write(tmp_path, content, "seeds.jsonl")
    config = scripted_config(tmp_path, ["a", "b"])
    config.write_text(config.read_text().replace(str(SEEDS), str(seeds)))
    code, err = run_cli(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2
    assert f"{seeds}{expected}" in err or (str(seeds) in err and expected in err), err


def test_seed_file_that_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(b"\xff\xfe\x00binary")
    config = scripted_config(tmp_path, ["a", "b"])
    config.write_text(config.read_text().replace(str(SEEDS), str(seeds)))
    code, err = run_cli(capsys, "run", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and f"{seeds}: not UTF-8 text" in err


def test_existing_run_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").write_text('{"t":"run","config_path":"x","seed":0,"at":0}\n')
    config = scripted_config(tmp_path, ["a", "b"])
    code, err = run_cli(capsys, "run", str(config), "--out", str(out))
    assert code == 2 and "already holds a run" in err and "--resume" in err
