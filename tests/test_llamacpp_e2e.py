"""End to end on real llama.cpp with real small models assembled from PyPI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from gra.protocols.records import ItemRecord
from tests.conftest import SEEDS

pytestmark = pytest.mark.slow


def test_short_run_on_real_models(tmp_path: Path) -> None:
    config = tmp_path / "real.toml"
    config.write_text(
        f"""
[run]
target = 1
max_instances = 2
max_in_flight = 2
few_shot = 2
[seeds]
path = "{SEEDS}"
[limits]
task_deadline_s = 400
[[agents]]
model = "qwen2.5-coder-0.5b"
[[agents]]
model = "gemma-3-270m"
roles = ["reviewer", "adjudicator"]
"""
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    records = []
    for name in ("accepted.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            records.append(msgspec.json.decode(line, type=ItemRecord))
    counts = summary["counts"]
    finished = sum(counts[k] for k in counts if k.startswith("rejected_")) + counts["failed"]
    assert finished + counts["accepted"] == len(records) == summary["instances_finished"]
    assert 1 <= len(records) <= 2
    for record in records:
        assert record.generator.model == "qwen2.5-coder-0.5b"
        if record.decision == "failed":
            assert record.reason
            continue
        assert record.instruction.strip() and record.response.strip()
        assert [r.model for r in record.reviews] == ["gemma-3-270m"]
        review = record.reviews[0]
        assert 0 <= review.score <= 10
        if record.stage == "instruction_check":
            assert record.mean is None and not review.checks.passed()
            continue
        assert record.mean == pytest.approx(review.score, abs=1e-3)
        assert (record.decision == "accepted") == (record.mean >= 8.0)
    usage = summary["models"]["qwen2.5-coder-0.5b"]
    assert usage["calls"] >= 1 and usage["completion_tokens"] > 0 and usage["seconds"] > 0
