"""`gra calibrate` end to end: real llama.cpp models, real agent processes, the real
sandbox, on a small labelled file; then the weights it wrote drive a review run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_gra

pytestmark = pytest.mark.slow

GOOD_CODE = "```python\ndef add(a, b):\n    return a + b\n```"
BAD_CODE = "```python\ndef add(a, b):\n    return a - b\n```"
INSTRUCTION = "Write a Python function add(a, b) that returns the sum of a and b.\n>>> add(2, 3)\n5"
PAIRS = [
    {"id": "good-code", "label": "good", "instruction": INSTRUCTION, "response": GOOD_CODE},
    {"id": "bad-code", "label": "bad", "instruction": INSTRUCTION, "response": BAD_CODE},
    {
        "id": "good-math",
        "label": "good",
        "instruction": "What is 12 times 12?",
        "response": "12 x 12 = 144.\n\nThe answer is 144.",
    },
]


def test_calibrate_measures_models_committee_and_verifier(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    config = tmp_path / "fleet.toml"
    config.write_text(
        """
[verify]
test_sets = 2  # two testers' sets (coding) or solvers' programs (math) per item: one fewer call
[limits]
task_deadline_s = 400
[[agents]]
model = "qwen2.5-coder-0.5b"
roles = ["reviewer", "adjudicator", "tester", "solver"]
[[agents]]
model = "gemma-3-270m"
roles = ["reviewer"]
"""
    )
    out = tmp_path / "cal"
    done = run_gra(
        "calibrate", str(config), "--input", str(labelled), "--out", str(out), "--no-progress"
    )
    assert "committee (paper)" in done.stdout
    result = json.loads((out / "calibration.json").read_text())
    assert set(result["models"]) == {"qwen2.5-coder-0.5b", "gemma-3-270m"}
    for metrics in result["models"].values():
        assert metrics["n"] == 3
        assert metrics["verdict"] in (
            "better than chance",
            "no better than chance",
            "worse than chance",
        )
    rows = result["configurations"]
    assert {"committee (paper)", "committee + verifier (on_pass=accept)"} <= set(rows)
    assert set(result["weights"]) == set(result["models"])
    # The verifier ran every pair: the stated example alone fails a - b.
    verified = {
        json.loads(line)["id"]: json.loads(line)
        for line in (out / "verified" / "verdicts.jsonl").read_text().splitlines()
    }
    assert verified["bad-code"]["verification"]["verdict"] == "failed"
    assert verified["bad-code"]["decision"] == "rejected"
    assert verified["good-code"]["verification"]["verdict"] in ("passed", "cannot_verify")
    assert result["verification"]["failed"]["bad"] == 1
    # The weights it wrote are what a later run reads.
    weighted = tmp_path / "weighted.toml"
    weighted.write_text(
        config.read_text().replace(
            "[limits]", f'[protocol]\nreviewer_weights = "{out / "calibration.json"}"\n[limits]'
        )
    )
    review_out = tmp_path / "review"
    run_gra(
        "review", str(weighted), "--input", str(labelled), "--out", str(review_out),
        "--no-progress",
    )  # fmt: skip
    assert len((review_out / "verdicts.jsonl").read_text().splitlines()) == 3
