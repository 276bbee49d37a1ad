"""The quick bus and scheduler benchmarks, under a minute in all: what `gra bench` runs.

Prints both tables; bench_bus.py and bench_scheduler.py run the same code at
other sizes and with more options.

    python benchmarks/quick.py                  # print both tables
    python benchmarks/quick.py --results DIR    # and write a JSON result per benchmark
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bus import QUICK_BUS, run_bus_benchmark
from benchmarks.harness import write_result
from benchmarks.scheduler import QUICK_SCHEDULER, print_scheduler_report, run_scheduler_benchmark


def run_quick_benchmarks(results_dir: Path | None = None) -> dict[str, Any]:
    """Both benchmarks at quick sizes (seconds each); prints their tables.

    With ``results_dir`` each benchmark's result is also written there as JSON.
    """
    bus = run_bus_benchmark(QUICK_BUS)
    print("bus: gra Router/Dealer vs raw pyzmq, ipc://, separate echo process")
    print(bus["table"])
    scheduler = run_scheduler_benchmark(QUICK_SCHEDULER)
    print("\nscheduler: the Conductor over simulated agents")
    print_scheduler_report(scheduler)
    if results_dir is not None:
        bus["result_file"] = str(write_result(results_dir, "bus", bus))
        scheduler["result_file"] = str(write_result(results_dir, "scheduler", scheduler))
    return {"bus": bus, "scheduler": scheduler, "passed": bus["passed"] and scheduler["passed"]}


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every judged target was met, 1 otherwise (`gra bench` passes it on)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="directory for a JSON result per benchmark")
    args = parser.parse_args(argv)
    return 0 if run_quick_benchmarks(args.results)["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
