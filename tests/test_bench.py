"""The bus and scheduler benchmarks behind `gra bench` measure what they claim.

No timing is asserted (the machine is shared): these check that the runs do
the work they report, that the bound is computed from the settings, and that
a result file is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gra.bench import (
    BusSettings,
    SchedulerSettings,
    run_bus_benchmark,
    run_scheduler_benchmark,
    write_result,
)


def test_the_bound_follows_from_service_times_and_capacities() -> None:
    settings = SchedulerSettings(models=4, agents_per_model=8, capacity=4, service_s=0.1)
    # 128 slots, 5 tasks of 0.1 s per instance (generate, 3 reviews, annotate).
    assert settings.tasks_per_instance == 5 and settings.stages == 3
    assert settings.bounds()["capacity"] == pytest.approx(256.0)
    assert settings.in_flight == 154  # 2 x 3 stages x 128 slots / 5 tasks, rounded up
    assert settings.bounds()["in_flight"] == pytest.approx(154 / 0.3)
    assert settings.bounds()["bound"] == pytest.approx(256.0)
    # Few instances in flight bind instead: 30 instances of 2 steps of 0.1 s.
    narrow = SchedulerSettings(max_in_flight=30, enrich=False, reviewers=2)
    assert narrow.tasks_per_instance == 3 and narrow.bounds()["bound"] == pytest.approx(150.0)


def test_scheduler_run_finishes_every_instance_through_the_real_conductor(
    tmp_path: Path,
) -> None:
    tiny = SchedulerSettings(
        instances=120, models=3, agents_per_model=2, capacity=2, service_s=0.02, reviewers=2
    )
    report = run_scheduler_benchmark([tiny], workdir=tmp_path)
    (run,) = report["runs"]
    assert run["instances_finished"] == run["accepted"] == 120
    assert run["sim_agents"]["served"] == 120 * tiny.tasks_per_instance
    assert run["retries"] == run["agents_lost"] == run["bus_dropped_frames"] == 0
    assert run["max_in_flight_tasks"] <= tiny.total_capacity
    assert len(run["rss_curve"]) > 10 and run["achieved_items_per_s"] > 0
    # The run's own outputs are real gra outputs.
    accepted = (tmp_path / "main" / "out" / "accepted.jsonl").read_text().splitlines()
    assert len(accepted) == 120
    checks = {c["metric"].split(":")[1].strip(): c for c in report["checks"]}
    assert checks["accepted / finished"]["passed"]
    written = write_result(tmp_path / "results", "scheduler", report)
    assert json.loads(written.read_text())["runs"][0]["instances_finished"] == 120


def test_bus_run_loses_nothing_through_gra() -> None:
    report = run_bus_benchmark(
        BusSettings(
            throughput_messages=2_000,
            latency_messages=200,
            deep_messages=3_000,
            trials=1,
            warmup_messages=200,
        )
    )
    lost = next(c for c in report["checks"] if c["metric"].startswith("lost"))
    assert lost["passed"], lost


def test_gra_bench_command_is_wired() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gra", "bench", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--results" in done.stdout
