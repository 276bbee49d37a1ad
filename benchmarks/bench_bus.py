"""gra's bus (Router/Dealer) against raw pyzmq DEALER/ROUTER, echoing over ipc://.

Prints a table of ratios measured in this one run, and writes the full result
(every trial, machine info) to benchmarks/results/bus-<UTC time>.json.

    python benchmarks/bench_bus.py            # quick: a few seconds
    python benchmarks/bench_bus.py --full     # more messages and trials
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bus import FULL_BUS, QUICK_BUS, run_bus_benchmark
from benchmarks.harness import write_result

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full sizes (a few minutes)")
    parser.add_argument("--payload-bytes", type=int, help="task body size (default 1024)")
    parser.add_argument("--in-flight", type=int, help="in flight for throughput (default 100)")
    parser.add_argument("--messages", type=int, help="messages per throughput trial")
    parser.add_argument("--latency-messages", type=int, help="messages per 1-in-flight trial")
    parser.add_argument("--deep-in-flight", type=int, help="in flight for the loss test (1000)")
    parser.add_argument("--deep-messages", type=int, help="messages per loss-test trial")
    parser.add_argument("--trials", type=int, help="raw/gra alternations per measurement")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    args = parser.parse_args()

    settings = FULL_BUS if args.full else QUICK_BUS
    overrides = {
        "payload_bytes": args.payload_bytes,
        "throughput_in_flight": args.in_flight,
        "throughput_messages": args.messages,
        "latency_messages": args.latency_messages,
        "deep_in_flight": args.deep_in_flight,
        "deep_messages": args.deep_messages,
        "trials": args.trials,
    }
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    report = run_bus_benchmark(settings)
    print(
        f"bus: gra Router/Dealer vs raw pyzmq over ipc://, echo peer in its own process; "
        f"{report['frame_bytes']} B task frames, median of {settings.trials} trials"
    )
    print(report["table"])
    if not args.no_write:
        print(f"\nwrote {write_result(args.results_dir, 'bus', report)}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
