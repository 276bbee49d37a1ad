"""Verification through the live supervisor: real agent processes, real sockets,
a real sandbox agent running the generated code.

The models are the scripted stand-in (``tests.doubles``): generators write an
``add`` function (``GRA_DOUBLE_WRONG`` makes one model's subtract), testers
write asserts for a function they call ``add`` (the name is a guess, as a real
tester's would be), solvers print 4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_gra, scripted_config

VERIFY = """
[verify]
enabled = true
test_sets = 2
[[agents]]
model = "sandbox"
backend = "sandbox"
roles = ["verifier"]
"""


def records(out: Path, name: str) -> list[dict]:
    path = out / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_wrong_code_is_rejected_by_execution_and_right_code_passes(
    tmp_path: Path, double_env: pytest.MonkeyPatch
) -> None:
    double_env.setenv("GRA_DOUBLE_WRONG", json.dumps(["a"]))
    config = scripted_config(tmp_path, ["a", "b", "c"], target=4, max_instances=12, extra=VERIFY)
    text = config.read_text().replace("[run]\n", "[run]\ndomains = {coding = 1}\n", 1)
    config.write_text(text)
    out = tmp_path / "out"
    run_gra("run", str(config), "--out", str(out), "--no-progress")
    accepted, rejected = records(out, "accepted.jsonl"), records(out, "rejected.jsonl")
    assert accepted, "no item passed"
    for record in accepted:
        assert record["generator"]["model"] != "a"
        verification = record["verification"]
        assert verification["verdict"] == "passed" and verification["kind"] == "coding"
        assert verification["verifier"] == "sandbox"
        assert record["generator"]["model"] not in verification["testers"]
        assert len(verification["test_sets"]) == 2
    wrong = [r for r in rejected if r["generator"]["model"] == "a"]
    assert wrong, "the wrong model never generated"
    for record in wrong:
        assert (record["decision"], record["stage"]) == ("rejected", "verification")
        assert record["verification"]["verdict"] == "failed"
        assert "add(2, 3) == 5" in record["verification"]["evidence"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["rejected_verification"] == len(wrong)
    assert summary["verification"]["failed"] == len(wrong)
    assert summary["models"]["sandbox"]["roles"]["verifier"]["calls"] >= len(accepted) + len(wrong)
    assert "per_criterion" in summary["agreement"]


def test_review_recognises_unlabelled_pairs_and_verifies_what_it_can(
    tmp_path: Path, double_env: pytest.MonkeyPatch
) -> None:
    pairs = [
        (
            "code-good",
            "Write a Python function add(a, b).",
            "```python\ndef add(a, b):\n    return a + b\n```",
        ),
        (
            "code-bad",
            "Write a Python function add(a, b).",
            "```python\ndef add(a, b):\n    return a * b\n```",
        ),
        ("math-good", "What is 2 + 2?", "2 + 2 = 4. The answer is 4."),
        ("math-bad", "What is 2 + 2?", "2 + 2 = 5. The answer is 5."),
        ("prose", "Name a colour of the sky.", "Blue."),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "instruction": q, "response": a}) + "\n" for i, q, a in pairs)
    )
    config = scripted_config(tmp_path, ["a", "b", "c"], extra=VERIFY)
    out = tmp_path / "out"
    run_gra("review", str(config), "--input", str(path), "--out", str(out), "--no-progress")
    verdicts = {v["id"]: v for v in records(out, "verdicts.jsonl")}
    assert verdicts["code-good"]["verification"]["verdict"] == "passed"
    assert verdicts["code-good"]["decision"] == "accepted"
    assert verdicts["code-bad"]["verification"]["verdict"] == "failed"
    assert verdicts["code-bad"]["stage"] == "verification"
    assert verdicts["math-good"]["verification"]["kind"] == "math"
    assert verdicts["math-good"]["verification"]["verdict"] == "passed"
    assert verdicts["math-bad"]["verification"]["verdict"] == "failed"
    assert verdicts["math-bad"]["decision"] == "rejected"
    assert verdicts["prose"]["verification"] is None
    assert verdicts["prose"]["decision"] == "accepted"
