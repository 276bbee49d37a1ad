"""llama.cpp: what the prompt cache saves, and gra's overhead over raw backend time.

Two measurements, both on real models, each judged as a ratio taken in the
same run (the machines are shared and noisy):

(a) Prompt cache. One mixed sequence of real role prompts (generate, review,
    annotate, adjudicate over the seed items, as one agent sees them) is sent
    to two backends of the same model loaded side by side, calls interleaved:
    one with the prompt cache off (``prompt_cache_mib=0``: llama-cpp-python
    still reuses the prefix shared with the previous call) and one with it on.
    Compared: prompt tokens evaluated (not reused from the KV cache), the
    seconds spent evaluating them, and the whole call time.

(b) Overhead. A real ``gra run`` on llama.cpp agents (a generated TOML,
    ``max_in_flight = 1``, dedup off). Its wall time is taken from the
    supervisor's ``fleet_ready`` (model loading excluded) to its last
    ``instance_finished``. The backend time inside it is the *union* of the
    intervals of all raw ``create_chat_completion`` calls, from the agents'
    ``llama_call`` log lines: the time during which at least one model was
    computing a call the job asked for. Warm-ups (``prompt_warmed``: an idle
    agent evaluating a role's shared prompt prefix) are gra's own work and are
    not counted as model time; they are reported apart (their count, their
    seconds, the time in which only a warm-up ran), with the ratio that would
    count them and the time to the first accepted item. Agents run in parallel
    (the committee's reviews), so the sum of call seconds would count parallel
    work twice and make the overhead look negative; with one instance in flight
    the union is the instance's critical path (generate + slowest review +
    adjudicate + annotate, retries included). Overhead = wall / union - 1: the
    share of the run in which no real call was computing, i.e. supervisor, bus,
    agent runtime, parsing, journalling and warm-ups alone.
    Target: at most 5%. The per-agent sums are printed too, and checked
    against summary.json's seconds per model.

    python benchmarks/bench_llamacpp.py
    python benchmarks/bench_llamacpp.py --only cache --models gemma-3-270m

Writes benchmarks/results/llamacpp-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Check, format_table, machine_info, utc_stamp, write_result
from gra.agents.roles import get_role
from gra.backends.base import Sampling
from gra.backends.llamacpp import DEFAULT_PROMPT_CACHE_MIB, LlamaCppBackend
from gra.logs import configure
from gra.models import resolve
from gra.protocols.roles import (
    AdjudicateRequest,
    AnnotateRequest,
    GenerateRequest,
    Inspiration,
    ReviewerFeedback,
    ReviewRequest,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = ROOT / "examples" / "seeds.jsonl"
OVERHEAD_TARGET = 0.05

# ---- (a) the prompt cache --------------------------------------------------------


def call_sequence(n_calls: int) -> list[tuple[str, Any]]:
    """Role requests in the order one agent of a fleet gets them: mostly reviews, mixed roles."""
    seeds = [json.loads(line) for line in SEEDS.read_text().splitlines() if line.strip()]
    inspirations = [
        Inspiration(tuple(s["keywords"]), s["summary"]) for s in seeds if s.get("keywords")
    ]
    pattern = ("generator", "reviewer", "reviewer", "annotator", "reviewer", "adjudicator")
    calls: list[tuple[str, Any]] = []
    for i in range(n_calls):
        role = pattern[i % len(pattern)]
        seed = seeds[i % len(seeds)]
        match role:
            case "generator":
                pair = tuple(inspirations[(i + k) % len(inspirations)] for k in range(2))
                request: Any = GenerateRequest(seed["domain"], (), inspirations=pair)
            case "reviewer":
                request = ReviewRequest(seed["domain"], seed["instruction"], seed["response"])
            case "annotator":
                request = AnnotateRequest(seed["instruction"], seed["response"])
            case _:
                feedback = (
                    ReviewerFeedback(9.5, "Strengths: correct.\nWeaknesses: terse."),
                    ReviewerFeedback(6.0, "Strengths: clear.\nWeaknesses: one gap."),
                )
                request = AdjudicateRequest(
                    seed["domain"], seed["instruction"], seed["response"], feedback
                )
        calls.append((role, request))
    return calls


async def _cache_run(model: str, n_calls: int, max_tokens: int, threads: int) -> dict[str, Any]:
    path = resolve(model)
    backends = {
        "off": LlamaCppBackend(model, path, n_threads=threads, prompt_cache_mib=0),
        "on": LlamaCppBackend(
            model, path, n_threads=threads, prompt_cache_mib=DEFAULT_PROMPT_CACHE_MIB
        ),
    }
    for backend in backends.values():
        await backend.start()
    calls: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for i, (role_name, request) in enumerate(call_sequence(n_calls)):
            role = get_role(role_name)
            sampling = Sampling(
                max_tokens=min(max_tokens, role.sampling.max_tokens),
                temperature=role.sampling.temperature,
                top_p=role.sampling.top_p,
                seed=1000 + i,
            )
            messages = role.prompt(request)
            # Alternate which goes first so that drift in machine load hits both alike.
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            for name in order:
                backend = backends[name]
                completion = await backend.complete(messages, role.schema, sampling)
                stats = backend.last_call
                assert stats is not None
                calls[name].append(
                    {"role": role_name, "completion_tokens": completion.completion_tokens}
                    | asdict(stats)
                    | {"prompt_reused": stats.prompt_reused}
                )
    finally:
        for backend in backends.values():
            await backend.aclose()
    totals = {
        name: {
            "calls": len(rows),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
            "prompt_evaluated": sum(r["prompt_evaluated"] for r in rows),
            "prompt_eval_s": sum(r["prompt_eval_seconds"] for r in rows),
            "call_s": sum(r["seconds"] for r in rows),
            "completion_tokens": sum(r["completion_tokens"] for r in rows),
        }
        for name, rows in calls.items()
    }
    for t in totals.values():
        t["prompt_eval_share"] = t["prompt_eval_s"] / t["call_s"] if t["call_s"] else None
    return {"model": model, "n_calls": n_calls, "totals": totals, "calls": calls}


def cache_checks(runs: list[dict[str, Any]]) -> list[Check]:
    checks = []
    for run in runs:
        off, on = run["totals"]["off"], run["totals"]["on"]
        model = run["model"]
        evaluated = on["prompt_evaluated"] / off["prompt_evaluated"]
        checks.append(
            Check(
                f"{model}: prompt tokens evaluated, cache on / off",
                f"{on['prompt_evaluated']:,} of {on['prompt_tokens']:,}",
                f"{off['prompt_evaluated']:,} of {off['prompt_tokens']:,}",
                evaluated,
                "< 1 (fewer)",
                evaluated < 1,
            )
        )
        checks.append(
            Check(
                f"{model}: prompt-eval seconds, cache on / off",
                f"{on['prompt_eval_s']:.2f}s ({100 * on['prompt_eval_share']:.0f}% of calls)",
                f"{off['prompt_eval_s']:.2f}s ({100 * off['prompt_eval_share']:.0f}% of calls)",
                on["prompt_eval_s"] / off["prompt_eval_s"],
                "< 1 (less)",
                on["prompt_eval_s"] < off["prompt_eval_s"],
            )
        )
        checks.append(
            Check(
                f"{model}: whole call seconds, cache on / off",
                f"{on['call_s']:.2f}s ({on['completion_tokens']} out tok)",
                f"{off['call_s']:.2f}s ({off['completion_tokens']} out tok)",
                on["call_s"] / off["call_s"],
                "info",
                None,
            )
        )
    return checks


# ---- (b) overhead of a real run ------------------------------------------------------

_AGENTS = {
    "qwen2.5-coder-0.5b": '[[agents]]\nmodel = "qwen2.5-coder-0.5b"\n',
    "qwen2.5-coder-1.5b": '[[agents]]\nmodel = "qwen2.5-coder-1.5b"\n',
    "gemma-3-270m": '[[agents]]\nmodel = "gemma-3-270m"\nroles = ["reviewer", "adjudicator"]\n',
}


def run_config(models: list[str], instances: int) -> str:
    agents = "\n".join(_AGENTS[m] for m in models)
    return f"""
[run]
target = {instances}
max_instances = {instances}
max_in_flight = 1
few_shot = 2
seed = 7
[seeds]
path = "{SEEDS}"
[dedup]
enabled = false
[limits]
task_deadline_s = 400
{agents}"""


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return rows


def union_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def analyse_run(out: Path) -> dict[str, Any]:
    """Wall time (fleet ready -> last instance finished) against the union of call intervals."""
    supervisor = _read_jsonl(out / "logs" / "supervisor.jsonl")
    ready = min(_ts(e["timestamp"]) for e in supervisor if e.get("event") == "fleet_ready")
    finished = [_ts(e["timestamp"]) for e in supervisor if e.get("event") == "instance_finished"]
    calls, warmups = [], []
    for log in sorted((out / "logs").glob("agent-*.jsonl")):
        for e in _read_jsonl(log):
            if e.get("event") == "llama_call":
                calls.append(e | {"agent": log.stem.removeprefix("agent-")})
            elif e.get("event") == "prompt_warmed":
                warmups.append(e)
    if not calls or not finished:
        raise RuntimeError(f"{out}: no llama_call or instance_finished in the logs")
    end = max(finished)
    wall = end - ready

    def inside(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
        spans = [(r["started_at"], r["started_at"] + r["seconds"]) for r in rows]
        return union_intervals(
            [(max(s, ready), min(e, end)) for s, e in spans if e > ready and s < end]
        )

    # The judged ratio counts the real calls only: a warm-up (an idle agent
    # evaluating a role's shared prompt prefix) is gra's own work, not a call the
    # job asked for, so time in which only warm-ups ran counts as overhead.
    merged = inside(calls)
    busy = sum(e - s for s, e in merged)
    # Reported apart: with warm-ups counted as model time too (the old figure).
    merged_all = inside(calls + warmups)
    busy_all = sum(e - s for s, e in merged_all)
    points = [ready, *(x for span in merged for x in span), end]
    gaps = [b - a for a, b in zip(points[::2], points[1::2], strict=True)]
    accepted = [
        _ts(e["timestamp"])
        for e in supervisor
        if e.get("event") == "instance_finished" and e.get("decision") == "accepted"
    ]
    per_agent: dict[str, dict[str, float]] = {}
    for c in calls:
        slot = per_agent.setdefault(
            c["agent"], {"calls": 0, "seconds": 0.0, "prompt_tokens": 0, "prompt_evaluated": 0}
        )
        slot["calls"] += 1
        slot["seconds"] += c["seconds"]
        slot["prompt_tokens"] += c["prompt_tokens"]
        slot["prompt_evaluated"] += c["prompt_evaluated"]
    summary = json.loads((out / "summary.json").read_text())
    return {
        "wall_s": wall,
        "busy_union_s": busy,
        "overhead": wall / busy - 1 if busy else None,
        "busy_union_with_warmups_s": busy_all,
        "overhead_with_warmups": wall / busy_all - 1 if busy_all else None,
        # Time inside the run in which a warm-up ran and no real call did.
        "warmup_only_s": busy_all - busy,
        "first_accepted_s": min(accepted) - ready if accepted else None,
        "calls": len(calls),
        "calls_sum_s": sum(c["seconds"] for c in calls),
        "warmups": len(warmups),
        "warmups_sum_s": sum(w["seconds"] for w in warmups),
        "warmups_in_run": sum(1 for w in warmups if w["started_at"] + w["seconds"] > ready),
        "summary_seconds": sum(m["seconds"] for m in summary["models"].values()),
        "summary_calls": sum(m["calls"] for m in summary["models"].values()),
        "idle_gaps": {
            "count": len(gaps),
            "total_s": sum(gaps),
            "first_s": gaps[0],
            "last_s": gaps[-1],
            "median_s": statistics.median(gaps),
            "max_s": max(gaps),
        },
        "per_agent": per_agent,
        "counts": summary["counts"],
        "instances_finished": summary["instances_finished"],
        "retries": summary["retries"],
    }


def run_overhead(models: list[str], instances: int, keep: Path | None) -> dict[str, Any]:
    workdir = keep or Path(tempfile.mkdtemp(prefix="gra-bench-llamacpp-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "run.toml"
    config.write_text(run_config(models, instances))
    out = workdir / "out"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gra run failed ({done.returncode}): {done.stderr[-2000:]}")
    return {
        "models": models,
        "instances": instances,
        "workdir": str(workdir),
        "process_s": time.monotonic() - started,
    } | analyse_run(out)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def overhead_checks(run: dict[str, Any]) -> list[Check]:
    gaps = run["idle_gaps"]
    return [
        Check(
            f"gra run wall / union of the {run['calls']} real calls (warm-ups excluded)",
            f"{run['wall_s']:.2f}s",
            f"{run['busy_union_s']:.2f}s",
            run["wall_s"] / run["busy_union_s"],
            f"<= {1 + OVERHEAD_TARGET:.2f}",
            run["overhead"] <= OVERHEAD_TARGET,
        ),
        Check(
            f"warm-ups: {run['warmups']} ({run['warmups_sum_s']:.2f}s), time only a warm-up "
            "ran / wall",
            f"{run['warmup_only_s']:.2f}s",
            f"{run['wall_s']:.2f}s",
            run["warmup_only_s"] / run["wall_s"] if run["wall_s"] else None,
            "info",
            None,
        ),
        Check(
            "gra run wall / union of calls and warm-ups (warm-ups as model time)",
            f"{run['wall_s']:.2f}s",
            f"{run['busy_union_with_warmups_s']:.2f}s",
            run["wall_s"] / run["busy_union_with_warmups_s"]
            if run["busy_union_with_warmups_s"]
            else None,
            "info",
            None,
        ),
        Check(
            "time to the first accepted item / whole run",
            _seconds(run["first_accepted_s"]),
            f"{run['wall_s']:.2f}s",
            run["first_accepted_s"] / run["wall_s"]
            if run["first_accepted_s"] is not None and run["wall_s"]
            else None,
            "info",
            None,
        ),
        Check(
            f"time no model computed ({gaps['count']} gaps, max {gaps['max_s'] * 1000:.0f} ms)",
            f"{gaps['total_s']:.2f}s",
            f"{run['wall_s']:.2f}s",
            gaps["total_s"] / run["wall_s"],
            "info",
            None,
        ),
        Check(
            "sum of call seconds: agent logs / summary.json",
            f"{run['calls_sum_s']:.2f}s ({run['calls']} calls)",
            f"{run['summary_seconds']:.2f}s ({run['summary_calls']} calls)",
            run["calls_sum_s"] / run["summary_seconds"] if run["summary_seconds"] else None,
            "~1 (same calls)",
            None,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("cache", "overhead"))
    parser.add_argument(
        "--models",
        nargs="+",
        default=["qwen2.5-coder-0.5b", "gemma-3-270m"],
        help="models of the cache comparison",
    )
    parser.add_argument("--calls", type=int, default=12, help="calls in the cache sequence")
    parser.add_argument("--max-tokens", type=int, default=160, help="cap per call in (a)")
    parser.add_argument(
        "--run-models",
        nargs="+",
        default=["qwen2.5-coder-0.5b", "gemma-3-270m"],
        choices=sorted(_AGENTS),
        help="the agents of the gra run (quickstart: all three; slower)",
    )
    parser.add_argument("--instances", type=int, default=5, help="instances of the gra run")
    parser.add_argument("--keep", type=Path, help="keep the gra run in this directory")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    configure(level="warning")  # the backends' per-call debug lines stay off the console

    info = machine_info()
    started = time.monotonic()
    report: dict[str, Any] = {"benchmark": "llamacpp", "utc": utc_stamp(), "machine": info}
    checks: list[Check] = []
    threads = max(1, (os.cpu_count() or 2) // 2)
    if args.only in (None, "cache"):
        runs = [
            asyncio.run(_cache_run(m, args.calls, args.max_tokens, threads)) for m in args.models
        ]
        report["cache"] = {"threads": threads, "max_tokens": args.max_tokens, "runs": runs}
        cache = cache_checks(runs)
        checks += cache
        print("(a) prompt cache: the same call sequence, cache off vs on (interleaved)")
        print(format_table(cache, "cache on", "cache off"))
        for run in runs:
            print(f"\n{run['model']}: per call, prompt tokens evaluated / in prompt (off | on)")
            for off, on in zip(run["calls"]["off"], run["calls"]["on"], strict=True):
                print(
                    f"  {off['role']:<11} {off['prompt_evaluated']:>4} / {off['prompt_tokens']:<4}"
                    f" {off['prompt_eval_seconds']:5.2f}s | {on['prompt_evaluated']:>4} / "
                    f"{on['prompt_tokens']:<4} {on['prompt_eval_seconds']:5.2f}s"
                )
    if args.only in (None, "overhead"):
        run = run_overhead(args.run_models, args.instances, args.keep)
        report["overhead"] = run
        overhead = overhead_checks(run)
        checks += overhead
        print(
            f"\n(b) overhead: gra run, {run['instances']} instances, max_in_flight 1, agents "
            f"{', '.join(run['models'])}\n"
            "    wall = fleet_ready -> last instance_finished; busy = union of raw call "
            "intervals (time at least one model computed)"
        )
        print(format_table(overhead, "measured", "baseline"))
        for agent, a in run["per_agent"].items():
            print(
                f"  {agent}: {a['calls']} calls, {a['seconds']:.2f}s, prompt tokens evaluated "
                f"{a['prompt_evaluated']:,} of {a['prompt_tokens']:,}"
            )
        print(f"  counts {run['counts']}, retries {run['retries']}")
    info["load_average_after"] = list(os.getloadavg())
    report["checks"] = [asdict(c) | {"verdict": c.verdict} for c in checks]
    report["passed"] = all(c.passed for c in checks if c.passed is not None)
    report["wall_s"] = time.monotonic() - started
    print(f"\nload average before {info['load_average']}, after {info['load_average_after']}")
    if not args.no_write:
        print(f"wrote {write_result(args.results_dir, 'llamacpp', report)}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
