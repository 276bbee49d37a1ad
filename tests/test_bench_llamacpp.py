"""benchmarks/bench_llamacpp.py's overhead figure counts what it says, on written logs.

No model runs and nothing is timed: a run's logs are written by hand, with
real calls, warm-ups and gaps at known times, and the analysis must find them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_llamacpp import analyse_run, overhead_checks

T0 = 1_800_000_000.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _call(event: str, start: float, seconds: float) -> dict[str, Any]:
    return {
        "event": event,
        "started_at": T0 + start,
        "seconds": seconds,
        "prompt_tokens": 100,
        "prompt_evaluated": 40,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A 100 s run: real calls cover 80 s, a warm-up covers 10 s of the rest alone
    and 5 s under a call, and one warm-up ran before the fleet was ready."""
    out = tmp_path / "out"
    _write(
        out / "logs" / "supervisor.jsonl",
        [
            {"event": "fleet_ready", "timestamp": _stamp(T0)},
            {"event": "instance_finished", "timestamp": _stamp(T0 + 45), "decision": "rejected"},
            {"event": "instance_finished", "timestamp": _stamp(T0 + 60), "decision": "accepted"},
            {"event": "instance_finished", "timestamp": _stamp(T0 + 100), "decision": "accepted"},
        ],
    )
    _write(
        out / "logs" / "agent-a-0.jsonl",
        [
            _call("prompt_warmed", -8, 6),  # before the run: in no figure
            _call("llama_call", 0, 40),
            _call("llama_call", 50, 40),
        ],
    )
    _write(
        out / "logs" / "agent-b-0.jsonl",
        [
            _call("prompt_warmed", 35, 15),  # 35-40 under a call, 40-50 alone
            _call("llama_call", 20, 10),  # inside a's first call: counted once
        ],
    )
    models = {"calls": 3, "seconds": 90.0, "roles": {}}
    (out / "summary.json").write_text(
        json.dumps(
            {
                "models": {"a": models},
                "counts": {"accepted": 2, "rejected": 1},
                "instances_finished": 3,
                "retries": 0,
            }
        )
    )
    return out


def test_overhead_counts_real_calls_only_and_reports_warmups_apart(run_dir: Path) -> None:
    run = analyse_run(run_dir)
    assert run["wall_s"] == pytest.approx(100.0)
    assert run["calls"] == 3
    assert run["busy_union_s"] == pytest.approx(80.0)  # 0-40, 50-90
    assert run["overhead"] == pytest.approx(100 / 80 - 1)
    # With warm-ups as model time, 10 s more are busy (40-50): the old, kinder figure.
    assert run["busy_union_with_warmups_s"] == pytest.approx(90.0)
    assert run["warmup_only_s"] == pytest.approx(10.0)
    assert run["warmups"] == 2 and run["warmups_in_run"] == 1
    assert run["first_accepted_s"] == pytest.approx(60.0)
    # The gaps are those of real calls: 40-50 and 90-100.
    assert run["idle_gaps"]["total_s"] == pytest.approx(20.0)
    judged = overhead_checks(run)[0]
    assert "warm-ups excluded" in judged.metric
    assert judged.ratio == pytest.approx(1.25) and judged.passed is False
