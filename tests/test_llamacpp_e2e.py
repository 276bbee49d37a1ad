"""End to end on real llama.cpp with real small models assembled from PyPI."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from gra.protocols.records import ItemRecord
from tests.conftest import SEEDS, run_gra

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
    run_gra("run", str(config), "--out", str(out), "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    records = []
    for name in ("accepted.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            records.append(msgspec.json.decode(line, type=ItemRecord))
    counts = summary["counts"]
    finished = sum(counts[k] for k in counts if k.startswith("rejected_")) + counts["failed"]
    assert finished + counts["accepted"] == len(records) == summary["instances_finished"]
    assert 1 <= len(records) <= 2
    # Real work, not failures only: an item the models generated and reviewed.
    judged = [r for r in records if r.decision != "failed"]
    assert judged, [r.reason for r in records]
    # The run report, written when the run ended, shows this run.
    page = (out / "report.html").read_text()
    assert 'data-plot="funnel"' in page and "qwen2.5-coder-0.5b" in page
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


def test_annotation_and_keyword_generation_on_a_real_model(tmp_path: Path) -> None:
    seeds = tmp_path / "bare.jsonl"
    seeds.write_text(
        json.dumps(
            {
                "id": "s1",
                "instruction": "Write a Python function that checks whether a number is prime.",
                "response": "def is_prime(n):\n"
                "    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))",
            }
        )
        + "\n"
        + json.dumps(
            {
                "id": "s2",
                "instruction": "Write a Python function that reverses the words of a sentence.",
                "response": "def reverse_words(s):\n    return ' '.join(reversed(s.split()))",
            }
        )
        + "\n"
    )
    config = tmp_path / "annotate.toml"
    config.write_text(
        f"""
[run]
target = 1
max_instances = 1
few_shot = 2
[seeds]
path = "{seeds}"
default_domain = "coding"
[dedup]
enabled = false
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
    run_gra("run", str(config), "--out", str(out), "--no-progress")
    annotations = [json.loads(x) for x in (out / "seed_annotations.jsonl").read_text().splitlines()]
    assert sorted(a["seed"] for a in annotations) == ["s1", "s2"]
    for entry in annotations:
        assert entry["annotator"] == "qwen2.5-coder-0.5b"
        assert len(entry["keywords"]) == 3 and all(k.strip() for k in entry["keywords"])
        assert entry["summary"].strip()
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    item_starts = [e for e in journal if e["t"] == "start" and e["kind"] == "item"]
    # Every shot carries the keywords and summary the fleet wrote (the two seeds
    # may have been given different domains, so an item may draw on one only).
    assert item_starts and all(
        len(e["inspirations"]) == len(e["seed_ids"]) > 0 for e in item_starts
    )
    generated = [
        e["event"]["item"]
        for e in journal
        if e["t"] == "event" and e["event"]["event"] == "generated"
    ]
    assert generated, "the generator never wrote an item"
    # The generator's own keyword triple comes first.
    assert all(len(item["keywords"]) == 3 for item in generated)
    records = [
        json.loads(line)
        for name in ("accepted.jsonl", "rejected.jsonl")
        if (out / name).exists()
        for line in (out / name).read_text().splitlines()
    ]
    assert [r for r in records if r["decision"] != "failed"], [r["reason"] for r in records]


def test_review_and_refine_on_real_models(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"id": "p1", "domain": "math", "instruction": "What is 12 x 12?",
                    "response": "12 x 12 = 144."})
        + "\n"
        + json.dumps({"id": "p2", "domain": "coding",
                      "instruction": "Write a Python expression that squares x.",
                      "response": "x ** 2"})
        + "\n"
    )  # fmt: skip
    config = tmp_path / "review.toml"
    config.write_text(
        """
[limits]
task_deadline_s = 400
[[agents]]
model = "qwen2.5-coder-0.5b"
roles = ["refiner", "reviewer", "adjudicator"]
[[agents]]
model = "gemma-3-270m"
roles = ["reviewer", "adjudicator"]
"""
    )
    for flags in ([], ["--refine"]):
        out = tmp_path / ("refined" if flags else "reviewed")
        review = ["review", str(config), "--input", str(pairs), "--out", str(out)]
        run_gra(*review, "--no-progress", *flags)
        verdicts = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
        assert sorted(v["id"] for v in verdicts) == ["p1", "p2"]
        judged = [v for v in verdicts if v["decision"] != "failed"]
        assert judged, [v["reason"] for v in verdicts]
        for verdict in judged:
            assert verdict["reviews"] and all(0 <= r["score"] <= 10 for r in verdict["reviews"])
            if flags:
                assert verdict["refined_response"] and verdict["original_response"]
                kept = "refined_response" if verdict["refined"] else "original_response"
                assert verdict["response"] == verdict[kept]
                assert [r["model"] for r in verdict["reviews"]] == ["gemma-3-270m"]
