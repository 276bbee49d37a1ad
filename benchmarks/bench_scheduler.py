"""The real Conductor over simulated agents, against the theoretical bound.

Simulated agents are remote agents on the real wire protocol (hello, heartbeats,
tasks, results with valid role outputs), many per OS process, each "model"
sleeping a fixed service time. Two runs: ``main`` (throughput and the
supervisor's RSS curve) and ``many_agents`` (a large fleet). Prints a table of
ratios and writes benchmarks/results/scheduler-<UTC time>.json.

    python benchmarks/bench_scheduler.py           # quick: seconds
    python benchmarks/bench_scheduler.py --full    # 100,000 instances; 1,000 agents
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import write_result
from benchmarks.scheduler import (
    FULL_SCHEDULER,
    QUICK_SCHEDULER,
    SchedulerSettings,
    print_scheduler_report,
    run_scheduler_benchmark,
)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 instances; 1,000 agents")
    parser.add_argument("--only", choices=("main", "many_agents"), help="run one of the two")
    main_run = parser.add_argument_group("the main run")
    main_run.add_argument("--instances", type=int)
    main_run.add_argument("--models", type=int)
    main_run.add_argument("--agents-per-model", type=int)
    main_run.add_argument("--capacity", type=int, help="tasks in flight per agent")
    main_run.add_argument("--service-s", type=float, help="fixed service time per task")
    main_run.add_argument("--reviewers", type=int)
    parser.add_argument(
        "--no-enrich", action="store_true", help="no annotation step: 1 + reviewers tasks"
    )
    main_run.add_argument("--in-flight-factor", type=float, help="see SchedulerSettings")
    main_run.add_argument("--max-in-flight", type=int, help="overrides --in-flight-factor")
    main_run.add_argument("--rss-every", type=int, help="RSS sample every N instances")
    main_run.add_argument("--time-limit-s", type=float, help="stop after this long; 0: none")
    many = parser.add_argument_group("the many-agents run")
    many.add_argument("--many-agents", type=int, help="total simulated agents")
    many.add_argument("--many-instances", type=int)
    many.add_argument("--many-service-s", type=float)
    many.add_argument("--many-time-limit-s", type=float, help="0: none")
    parser.add_argument("--processes", type=int, help="processes hosting simulated agents")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="trace Python allocations (slower) and report what grew from 10%% to 90%% in",
    )
    parser.add_argument(
        "--trace-frames",
        type=int,
        help="with --trace-memory: tracemalloc too, this many frames (slows the supervisor)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    args = parser.parse_args()

    main_settings, many_settings = FULL_SCHEDULER if args.full else QUICK_SCHEDULER
    main_settings = _override(
        main_settings,
        instances=args.instances,
        models=args.models,
        agents_per_model=args.agents_per_model,
        capacity=args.capacity,
        service_s=args.service_s,
        reviewers=args.reviewers,
        in_flight_factor=args.in_flight_factor,
        max_in_flight=args.max_in_flight,
        rss_every=args.rss_every,
        time_limit_s=args.time_limit_s,
        processes=args.processes,
        enrich=False if args.no_enrich else None,
        trace_memory=args.trace_memory or None,
        trace_frames=args.trace_frames,
    )
    per_model = None
    if args.many_agents is not None:
        per_model = max(1, args.many_agents // many_settings.models)
    many_settings = _override(
        many_settings,
        agents_per_model=per_model,
        instances=args.many_instances,
        service_s=args.many_service_s,
        time_limit_s=args.many_time_limit_s,
        processes=args.processes,
        enrich=False if args.no_enrich else None,
        trace_memory=args.trace_memory or None,
        trace_frames=args.trace_frames,
    )
    runs = [s for s in (main_settings, many_settings) if args.only in (None, s.name)]
    report = run_scheduler_benchmark(runs, keep=args.keep)
    print_scheduler_report(report)
    if report["workdir"]:
        print(f"\nrun directories kept in {report['workdir']}")
    if not args.no_write:
        print(f"\nwrote {write_result(args.results_dir, 'scheduler', report)}")
    return 0 if report["passed"] else 1


def _override(settings: SchedulerSettings, **values: Any) -> SchedulerSettings:
    return dataclasses.replace(settings, **{k: v for k, v in values.items() if v is not None})


if __name__ == "__main__":
    sys.exit(main())
