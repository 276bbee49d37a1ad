"""`gra review` (committee only) and `gra review --refine` (GRA-Refine) on
existing pairs, through the real CLI, real agent processes and sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEEDS, scripted_config

SEED_IDS = [json.loads(line)["id"] for line in SEEDS.read_text().splitlines()]


def review(config: Path, out: Path, *extra: str) -> tuple[list[dict], dict]:
    command = [sys.executable, "-m", "gra", "review", str(config), "--input", str(SEEDS)]
    done = subprocess.run(
        [*command, "--out", str(out), "--no-progress", *extra],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    return verdicts, json.loads((out / "summary.json").read_text())


def test_review_judges_every_pair_once(tmp_path: Path, double_env: pytest.MonkeyPatch) -> None:
    double_env.setenv("GRA_DOUBLE_SCORES", json.dumps({"harsh": 3}))
    config = scripted_config(tmp_path, ["kind1", "kind2", "harsh", "kind3"])
    verdicts, summary = review(config, tmp_path / "out")
    assert sorted(v["id"] for v in verdicts) == sorted(SEED_IDS)
    counts = summary["counts"]
    assert counts["generated"] == 0 and summary["instances_finished"] == len(SEED_IDS)
    for verdict in verdicts:
        models = [r["model"] for r in verdict["reviews"]]
        assert 1 <= len(models) <= 3 and len(set(models)) == len(models)
        assert verdict["refined"] is False and verdict["original_response"] is None
        if "harsh" in models:
            # 3 from harsh puts tau out of reach ((3 + 10 + 10) / 3 < 8): rejected on
            # score as soon as it is in, over the reviews in by then.
            assert verdict["decision"] == "rejected" and verdict["stage"] == "score"
            assert models[-1] == "harsh"
            assert verdict["mean"] == (9.0 * (len(models) - 1) + 3.0) / len(models)
        else:
            assert len(models) == 3
            assert verdict["decision"] == "accepted" and verdict["mean"] == 9.0
    rejected = sum(v["decision"] == "rejected" for v in verdicts)
    assert counts["rejected_score"] == rejected and counts["accepted"] == len(verdicts) - rejected


def test_refine_keeps_the_rewrite_only_when_accepted(
    tmp_path: Path, double_env: pytest.MonkeyPatch
) -> None:
    double_env.setenv("GRA_DOUBLE_SCORES", json.dumps({"harsh": 0}))
    config = scripted_config(tmp_path, ["kind1", "kind2", "harsh", "kind3"])
    verdicts, summary = review(config, tmp_path / "out", "--refine")
    originals = {json.loads(x)["id"]: json.loads(x) for x in SEEDS.read_text().splitlines()}
    assert len(verdicts) == len(SEED_IDS) and summary["counts"]["generated"] == len(SEED_IDS)
    kept = {"refined": 0, "original": 0}
    for verdict in verdicts:
        original = originals[verdict["id"]]
        assert verdict["instruction"] == original["instruction"]
        assert verdict["original_response"] == original["response"]
        assert verdict["refined_response"].startswith("A better answer, rewritten by")
        if verdict["decision"] == "accepted":
            assert verdict["refined"] and verdict["response"] == verdict["refined_response"]
            kept["refined"] += 1
        else:
            assert not verdict["refined"] and verdict["response"] == original["response"]
            kept["original"] += 1
    assert kept["refined"] and kept["original"]
