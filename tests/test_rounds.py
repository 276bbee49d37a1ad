"""Synthesis rounds: round 2 draws on round 1's accepted items, each round's
output is kept apart, and the summary reports per round. Seeds with bad rows
can be skipped and counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import SEEDS, scripted_config
from tests.test_fleet import read_jsonl


def run(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out)]
    return subprocess.run(
        [*command, "--no-progress", *extra], capture_output=True, text=True, timeout=180
    )


def test_round_two_draws_on_round_one(tmp_path: Path, double_env) -> None:
    seeds = tmp_path / "seeds.jsonl"
    rows = [
        {
            "id": f"s{i}",
            "domain": "coding",
            "instruction": f"Write a function number {i}.",
            "response": "def f(): ...",
            "keywords": ["functions", "python", f"topic{i}"],
            "summary": f"A small function, number {i}.",
        }
        for i in range(3)
    ]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = scripted_config(tmp_path, ["a", "b", "c"], target=3, max_in_flight=2, rounds=2)
    text = config.read_text().replace("target = 3", "target = 3\nfew_shot = 16")
    config.write_text(
        text.replace(str(Path(__file__).parent.parent / "examples/seeds.jsonl"), str(seeds))
    )
    out = tmp_path / "out"
    done = run(config, out)
    assert done.returncode == 0, done.stderr[-2000:]

    round1 = read_jsonl(out / "round-1" / "accepted.jsonl")
    round2 = read_jsonl(out / "round-2" / "accepted.jsonl")
    assert len(round1) >= 3 and len(round2) >= 3
    assert {r["round"] for r in round1} == {1} and {r["round"] for r in round2} == {2}
    round1_ids = {r["id"] for r in round1}
    for record in round2:
        # few_shot covers the whole domain pool: every round-1 item is drawn on.
        assert round1_ids <= set(record["seed_ids"]), record["seed_ids"]
    for record in round1 + round2:
        # Metadata enrichment: a random model wrote keywords and summary.
        assert record["annotator"] in {"a", "b", "c"}
        assert record["summary"] == f"Annotated by {record['annotator']}."
        assert record["keywords"] == ["arithmetic", "functions", record["annotator"]]
    top = read_jsonl(out / "accepted.jsonl")
    assert sorted(r["id"] for r in top) == sorted(r["id"] for r in round1 + round2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"]["1"]["accepted"] == len(round1)
    assert summary["rounds"]["2"]["accepted"] == len(round2)
    journal = read_jsonl(out / "journal.jsonl")
    assert [e["round"] for e in journal if e["t"] == "round_done"] == [1, 2]


def test_skip_bad_rows_continues_and_reports(tmp_path: Path, double_env) -> None:
    seeds = tmp_path / "seeds.jsonl"
    good = {"instruction": "Add two numbers.", "response": "a + b", "domain": "math"}
    seeds.write_text(json.dumps(good) + "\nnot json\n" + json.dumps({"instruction": "x"}) + "\n")
    config = scripted_config(tmp_path, ["a", "b"], target=1)
    config.write_text(
        config.read_text().replace(
            str(Path(__file__).parent.parent / "examples/seeds.jsonl"), str(seeds)
        )
    )
    strict = run(config, tmp_path / "strict")
    assert strict.returncode == 2 and f"{seeds}:2" in strict.stderr
    lenient = run(config, tmp_path / "lenient", "--skip-bad-rows")
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    assert f"skipped 2 bad rows of {seeds}" in lenient.stderr
    summary = json.loads((tmp_path / "lenient" / "summary.json").read_text())
    assert summary["seed_rows_skipped"] == 2 and summary["counts"]["accepted"] >= 1


def test_seeds_are_annotated_by_the_fleet_before_generation(tmp_path: Path, double_env) -> None:
    seeds = [json.loads(line) for line in SEEDS.read_text().splitlines()]
    bare = tmp_path / "bare.jsonl"  # the example seeds without their keywords and summaries
    bare.write_text(
        "".join(
            json.dumps({k: v for k, v in s.items() if k not in ("keywords", "summary")}) + "\n"
            for s in seeds
        )
    )
    config = scripted_config(tmp_path, ["a", "b", "c"], target=3)
    config.write_text(config.read_text().replace(str(SEEDS), str(bare)))
    out = tmp_path / "out"
    done = run(config, out)
    assert done.returncode == 0, done.stderr[-2000:]
    annotations = read_jsonl(out / "seed_annotations.jsonl")
    assert sorted(a["seed"] for a in annotations) == sorted(s["id"] for s in seeds)
    by_seed = {a["seed"]: a for a in annotations}
    for entry in annotations:
        assert entry["keywords"] == ["arithmetic", "functions", entry["annotator"]]
    journal = read_jsonl(out / "journal.jsonl")
    starts = [e for e in journal if e["t"] == "start"]
    annotating = [i for i, e in enumerate(starts) if e["kind"] == "seed_annotation"]
    generating = [i for i, e in enumerate(starts) if e["kind"] == "item"]
    assert max(annotating) < min(generating), "generation started before the pool was annotated"
    for start in (starts[i] for i in generating):
        # The paper's generator: (keywords, summary) pairs of the pool, as annotated.
        assert len(start["inspirations"]) == len(start["seed_ids"]) > 0
        for seed_id, inspiration in zip(start["seed_ids"], start["inspirations"], strict=True):
            assert inspiration["keywords"] == by_seed[seed_id]["keywords"]
            assert inspiration["summary"] == by_seed[seed_id]["summary"]


def test_domain_weights_choose_what_to_synthesise(tmp_path: Path, double_env) -> None:
    config = scripted_config(tmp_path, ["a", "b", "c"], target=12)
    config.write_text(config.read_text().replace("[seeds]", "domains = {math = 1}\n[seeds]", 1))
    out = tmp_path / "out"
    done = run(config, out)
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_jsonl(out / "accepted.jsonl") + read_jsonl(out / "rejected.jsonl")
    assert len(records) >= 12 and {r["domain"] for r in records} == {"math"}
    math_seeds = {json.loads(x)["id"] for x in SEEDS.read_text().splitlines() if '"math"' in x}
    assert all(set(r["seed_ids"]) <= math_seeds for r in records)


def test_interrupted_second_round_resumes_in_round_two(tmp_path: Path, double_env) -> None:
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.1")
    config = scripted_config(tmp_path, ["a", "b", "c"], target=8, rounds=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"]
    first = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        candidates = out / "round-2" / "candidates.jsonl"
        while not candidates.exists() or len(candidates.read_text().splitlines()) < 2:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        first.kill()
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    round1 = read_jsonl(out / "round-1" / "accepted.jsonl")
    done = run(config, out, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_jsonl(out / "round-1" / "accepted.jsonl") == round1, "round 1 was redone"
    journal = read_jsonl(out / "journal.jsonl")
    assert [e["round"] for e in journal if e["t"] == "round_done"] == [1, 2]
    # Every instance started after the kill belongs to round 2.
    restarted = journal[max(i for i, e in enumerate(journal) if e["t"] == "run") :]
    assert {e["round"] for e in restarted if e["t"] == "start"} <= {2}
    round2 = read_jsonl(out / "round-2" / "accepted.jsonl")
    assert len(round2) >= 8 and {r["round"] for r in round2} == {2}
    top = read_jsonl(out / "accepted.jsonl")
    assert len(top) == len({r["id"] for r in top}) == len(round1) + len(round2)
