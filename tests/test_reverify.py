"""`gra calibrate --reverify`: the verified run's recorded evidence judged again by
the current verifier in the real sandbox, and scored (no model runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gra.sandbox import sandbox_unavailable

CONFIG = """
[run]
target = 1
[seeds]
path = "seeds.jsonl"
[verify]
enabled = true
[[agents]]
model = "a"
backend = "plugin"
factory = "tests.doubles:scripted"
[[agents]]
model = "b"
backend = "plugin"
factory = "tests.doubles:scripted"
[[agents]]
model = "sandbox"
backend = "sandbox"
roles = ["verifier"]
"""
TASK = "Write `double(x)` returning twice x."
RIGHT = "```python\ndef double(x):\n    return 2 * x\n```"
WRONG = "```python\ndef double(x):\n    return x + 2\n```"


def _verdict(item_id: str, response: str, recorded: str, kind: str, **evidence: object) -> dict:
    verification = {
        "kind": kind, "verdict": recorded, "method": "tests", "reason": "recorded",
        "evidence": "", "verifier": "sandbox", "testers": ["a", "b"], **evidence,
    }  # fmt: skip
    return {
        "id": item_id, "decision": "rejected", "stage": "verification", "reason": "",
        "mean": None, "std": None, "adjudicated": False, "reviews": [], "adjudication": None,
        "domain": kind, "instruction": TASK if kind == "coding" else "What is 6 times 7?",
        "response": response, "verification": verification,
    }  # fmt: skip


@pytest.fixture(autouse=True)
def sandbox() -> None:
    problem = sandbox_unavailable()
    assert problem is None, f"the sandbox is unavailable: {problem}"


def test_recorded_evidence_is_judged_again_and_scored(tmp_path: Path) -> None:
    (tmp_path / "seeds.jsonl").write_text('{"instruction": "x", "response": "y"}\n')
    (tmp_path / "gra.toml").write_text(CONFIG)
    tests = [["assert double(2) == 4", "assert double(0) == 0"]]
    verdicts = [
        # Recorded as failed; the evidence says it passes.
        _verdict("good-code", RIGHT, "failed", "coding", test_sets=tests),
        _verdict("bad-code", WRONG, "passed", "coding", test_sets=tests),
        _verdict("good-math", "6 x 7 = 42. The answer is 42.", "cannot_verify", "math",
                 programs=["print(6 * 7)", "print(42)"]),
        _verdict("bad-math", "The answer is 48.", "cannot_verify", "math",
                 programs=["print(6 * 7)", "print(42)"]),
    ]  # fmt: skip
    run = tmp_path / "cal" / "verified"
    run.mkdir(parents=True)
    (run / "verdicts.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    labels = {"good-code": "good", "bad-code": "bad", "good-math": "good", "bad-math": "bad"}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"id": i, "instruction": "x", "response": "y", "label": label}) + "\n"
            for i, label in labels.items()
        )
    )
    command = [sys.executable, "-m", "gra", "calibrate", str(tmp_path / "gra.toml")]
    command += ["--input", str(pairs), "--out", str(tmp_path / "cal"), "--reverify"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    again = {
        json.loads(line)["id"]: json.loads(line)["verification"]
        for line in (tmp_path / "cal" / "reverified" / "verdicts.jsonl").read_text().splitlines()
    }
    assert {i: v["verdict"] for i, v in again.items()} == {
        "good-code": "passed",
        "bad-code": "failed",
        "good-math": "passed",
        "bad-math": "failed",
    }
    assert again["good-code"]["tests_run"] == 2
    assert again["good-code"]["testers"] == ["a", "b"]  # what the run recorded is kept
    result = json.loads((tmp_path / "cal" / "reverified" / "calibration.json").read_text())
    alone = result["configurations"]["verifier alone (on_pass=accept, unverified=reject)"]
    assert alone["accuracy"] == 1.0
    # The original run's files are untouched.
    recorded = (run / "verdicts.jsonl").read_text()
    assert recorded == "".join(json.dumps(v) + "\n" for v in verdicts)


def test_reverify_without_a_verified_run_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "seeds.jsonl").write_text('{"instruction": "x", "response": "y"}\n')
    (tmp_path / "gra.toml").write_text(CONFIG)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id": "a", "instruction": "x", "response": "y", "label": "good"}\n')
    command = [sys.executable, "-m", "gra", "calibrate", str(tmp_path / "gra.toml")]
    command += ["--input", str(pairs), "--out", str(tmp_path / "cal"), "--reverify"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "no verified run to judge again" in done.stderr
    assert "Traceback" not in done.stderr
