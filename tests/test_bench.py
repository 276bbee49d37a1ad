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
    machine_info,
    run_bus_benchmark,
    run_scheduler_benchmark,
    source_state,
    write_result,
)

ROOT = Path(__file__).resolve().parent.parent


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_source_state_names_the_commit_and_what_differs_from_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    clean = source_state(repo)
    assert clean["commit"] == _git(repo, "rev-parse", "HEAD")
    assert clean["clean"] is True and clean["dirty_paths"] == [] and clean["diff_sha256"] is None
    (repo / "a.txt").write_text("two\n")
    edited = source_state(repo)
    assert edited["clean"] is False and edited["dirty_paths"] == ["a.txt"]
    (repo / "new.py").write_text("x = 1\n")  # untracked files are code that ran too
    more = source_state(repo)
    assert more["dirty_paths"] == ["a.txt", "new.py"]
    assert len({edited["diff_sha256"], more["diff_sha256"]}) == 2
    assert source_state(tmp_path / "not-a-repo")["commit"] is None


def test_every_result_file_records_the_code_it_measured(tmp_path: Path) -> None:
    path = write_result(tmp_path, "probe", {"machine": machine_info(), "value": 1})
    data = json.loads(path.read_text())
    assert data["source"]["commit"] == _git(ROOT, "rev-parse", "HEAD")
    assert isinstance(data["source"]["clean"], bool)
    assert isinstance(data["source_changed_during_run"], bool)
    # A result without machine info still gets the code it was written from.
    bare = json.loads(write_result(tmp_path, "bare", {"value": 2}).read_text())
    assert bare["source"]["commit"] == data["source"]["commit"]


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
