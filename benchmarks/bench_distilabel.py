"""The same generate-then-review job through gra and through distilabel, timed.

One generator model writes N items and every judge model reviews each of
them, on the same GGUF files, llama.cpp settings, prompts, JSON schemas,
max_tokens and temperatures. gra runs first (``gra run`` on a generated
config); the generator prompts of its N instances (domain and seed
inspirations, read back from its journal) then become distilabel's input
rows, so both frameworks get byte-identical generator prompts, and
``benchmarks/distilabel_job.py`` fills gra's reviewer prompt with
distilabel's own generations. Prints a table and writes
benchmarks/results/distilabel-<UTC time>.json.

Run it alone on the machine (it loads three models twice), for example:

    scripts/setup_distilabel.sh
    python benchmarks/bench_distilabel.py --items 8
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import shutil
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
from gra.models import assemble
from gra.protocols.roles import Example, GenerateRequest, Inspiration, ReviewRequest
from gra.rundir import SUMMARY, read_summary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DISTILABEL_PYTHON = ROOT / ".cache" / "distilabel-venv" / "bin" / "python"
JOB = Path(__file__).resolve().parent / "distilabel_job.py"
SEEDS = ROOT / "examples" / "seeds.jsonl"
TARGET_SPEEDUP = 1.5
# Stand-ins for the reviewer prompt's fields, filled in by distilabel_job.py.
PLACEHOLDERS = {
    "domain": "<<GRA-BENCH-DOMAIN>>",
    "instruction": "<<GRA-BENCH-INSTRUCTION>>",
    "response": "<<GRA-BENCH-RESPONSE>>",
}


def log(message: str) -> None:
    print(f"[bench_distilabel] {message}", file=sys.stderr, flush=True)


def default_threads() -> int:
    """gra's llama.cpp default (half the cores), used on both sides."""
    return max(1, (os.cpu_count() or 2) // 2)


# ---- gra ---------------------------------------------------------------------


def gra_config(args: argparse.Namespace, path: Path) -> None:
    """A fleet in which every instance is exactly one generate and one review per judge.

    The generator model serves only the generator role and the judges only
    the reviewer role, so each instance has the same generator and committee
    as distilabel's fixed pipeline; with every model involved no adjudicator
    is left, and annotation and deduplication are off because the
    distilabel job has no such steps.
    """
    agents = [(args.generator, "generator")] + [(j, "reviewer") for j in args.judges]
    lines = [
        "[run]",
        f"target = {args.items}",
        f"max_instances = {args.items}",
        f"max_in_flight = {args.max_in_flight}",
        f"few_shot = {args.few_shot}",
        f"seed = {args.seed}",
        "",
        "[seeds]",
        f"path = {json.dumps(str(SEEDS))}",
        "",
        "[annotate]",
        "enrich = false",
        "seeds = false",
        "",
        "[dedup]",
        "enabled = false",
    ]
    for model, role in agents:
        lines += [
            "",
            "[[agents]]",
            f"model = {json.dumps(model)}",
            f'roles = ["{role}"]',
            f"n_ctx = {args.n_ctx}",
            f"n_threads = {args.threads}",
        ]
    path.write_text("\n".join(lines) + "\n")


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every finished child process and its own children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_gra(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    config, out = workdir / "gra.toml", workdir / "gra-run"
    gra_config(args, config)
    gra = Path(sys.executable).with_name("gra")
    command = [str(gra), "run", str(config), "--out", str(out), "--no-progress"]
    log(f"gra: {' '.join(command)}")
    started, cpu = time.time(), children_cpu_s()
    with (workdir / "gra.log").open("wb") as output:
        proc = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    wall, cpu = time.time() - started, children_cpu_s() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"gra run failed ({proc.returncode}); see {workdir / 'gra.log'}")
    summary = read_summary(out)
    assert summary is not None, f"{out}: gra run wrote no {SUMMARY}"
    events = [
        json.loads(line)
        for line in (out / "logs" / "supervisor.jsonl").read_text().splitlines()
        if line.strip()
    ]
    ready = min(_timestamp(e["timestamp"]) for e in events if e.get("event") == "fleet_ready")
    done = max(_timestamp(e["timestamp"]) for e in events if e.get("event") == "instance_finished")
    starts = [
        entry
        for line in (out / "journal.jsonl").read_text().splitlines()
        if (entry := json.loads(line)).get("t") == "start" and entry.get("kind", "item") == "item"
    ]
    items = {}
    for name in ("accepted.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                items[record["id"]] = {
                    k: record.get(k) for k in ("instruction", "response", "decision", "stage")
                } | {"reviews_in": len(record.get("reviews") or ())}
    usage = {
        model: {
            "calls": numbers.calls,
            "prompt_tokens": numbers.prompt_tokens,
            "completion_tokens": numbers.completion_tokens,
        }
        for model, numbers in summary.models.items()
    }
    return {
        "generator": args.generator,
        "process_wall_s": wall,
        "cpu_s": cpu,
        "load_s": ready - started,
        "job_s": done - ready,
        "summary_wall_s": summary.wall_seconds,
        "items_finished": summary.instances_finished,
        "counts": summary.counts,
        "retries": summary.retries,
        "agents_lost": summary.agents_lost,
        "usage": usage,
        "starts": starts,
        "items": items,
        "out": str(out),
    }


# ---- distilabel ----------------------------------------------------------------


def generator_messages(start: dict[str, Any]) -> list[dict[str, str]]:
    """gra's generator prompt for one journaled instance, rendered by gra itself."""
    request = GenerateRequest(
        start["domain"],
        tuple(Example(e["instruction"], e["response"]) for e in start["examples"]),
        inspirations=tuple(
            Inspiration(tuple(i["keywords"]), i["summary"]) for i in start.get("inspirations", ())
        ),
    )
    return [dict(m) for m in get_role("generator").prompt(request)]


def review_template() -> list[dict[str, str]]:
    reviewer = get_role("reviewer")
    messages = [dict(m) for m in reviewer.prompt(ReviewRequest(**PLACEHOLDERS))]
    text = "".join(m["content"] for m in messages)
    for marker in PLACEHOLDERS.values():
        if text.count(marker) != 1:
            raise SystemExit(f"gra's reviewer prompt does not hold {marker} exactly once")
    return messages


def distilabel_spec(
    args: argparse.Namespace, starts: list[dict[str, Any]], out: Path
) -> dict[str, Any]:
    generator, reviewer = get_role("generator"), get_role("reviewer")

    def sampling(role: Any) -> dict[str, Any]:
        s = role.sampling
        return {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "schema": role.schema,
        }

    return {
        "items": [
            {"id": s["instance"], "domain": s["domain"], "messages": generator_messages(s)}
            for s in starts
        ],
        "generator": {"name": args.generator, "path": str(assemble(args.generator))}
        | sampling(generator),
        "judges": [{"name": j, "path": str(assemble(j))} for j in args.judges],
        "review": sampling(reviewer)
        | {"messages": review_template(), "placeholders": PLACEHOLDERS},
        "llama": {"n_ctx": args.n_ctx, "n_threads": args.threads, "n_batch": 256},
        "input_batch_size": args.batch_size,
        "out": str(out),
    }


def llama_libraries(package_dir: Path) -> dict[str, str]:
    """sha256 of each shared library a llama_cpp package holds, by file name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((package_dir / "lib").glob("*.so*"))
    }


def llama_build_mismatch(gra_package: Path, distilabel_package: Path) -> str | None:
    """Why the two sides would not run the same llama.cpp build (None: they would).

    A like-for-like timing needs the same kernels on both sides; and a native
    build (AVX-512, AMX), which pip hands distilabel's venv unless told
    otherwise, dies on virtual machines that do not grant that state."""
    ours, theirs = llama_libraries(gra_package), llama_libraries(distilabel_package)
    if not ours:
        return f"no llama.cpp libraries in {gra_package / 'lib'}"
    if ours != theirs:
        differing = sorted(
            name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name)
        )
        return (
            f"distilabel's llama-cpp-python ({distilabel_package}) is not gra's build "
            f"(differs: {', '.join(differing)}): run scripts/setup_distilabel.sh"
        )
    return None


def distilabel_llama_package() -> Path:
    """Where distilabel's venv has llama_cpp, found without importing it."""
    done = subprocess.run(
        [
            str(DISTILABEL_PYTHON),
            "-c",
            "import importlib.util; "
            "print(importlib.util.find_spec('llama_cpp').submodule_search_locations[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


def run_distilabel(
    args: argparse.Namespace, starts: list[dict[str, Any]], workdir: Path
) -> dict[str, Any]:
    out = workdir / "distilabel-result.json"
    spec_path = workdir / "distilabel-spec.json"
    spec_path.write_text(json.dumps(distilabel_spec(args, starts, out), indent=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    command = [str(DISTILABEL_PYTHON), str(JOB), str(spec_path)]
    log(f"distilabel: {' '.join(command)}")
    started, cpu = time.time(), children_cpu_s()
    with (workdir / "distilabel.log").open("wb") as output:
        proc = subprocess.run(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=workdir, check=False
        )
    wall, cpu = time.time() - started, children_cpu_s() - cpu
    if not out.is_file():
        raise SystemExit(
            f"distilabel job failed ({proc.returncode}); see {workdir / 'distilabel.log'}"
        )
    result = json.loads(out.read_text())
    result["process_wall_s"] = wall
    result["cpu_s"] = cpu
    result["returncode"] = proc.returncode
    return result


# ---- report --------------------------------------------------------------------


def _total(usage: dict[str, dict[str, int]], key: str) -> int:
    return sum(int(u[key]) for u in usage.values())


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def checks(gra: dict[str, Any], dl: dict[str, Any], n: int) -> list[Check]:
    """Rows of the table: value = gra, baseline = distilabel."""
    g_tokens, d_tokens = (
        _total(gra["usage"], "completion_tokens"),
        _total(dl["usage"], "completion_tokens"),
    )
    g_gen, g_rev = calls(gra["usage"], gra["generator"])
    d_gen, d_rev = calls(dl["usage"], gra["generator"])
    g_valid = gra["counts"]["generated"]
    d_valid = sum(1 for item in dl["items"] if item["generator_valid"])
    same = identical_generations(gra, dl)
    # The headline is per unit of equal work: gra stops reviewing an item once its
    # outcome is certain and the texts differ in length, so the job walls compare
    # unequal work and are shown, not judged.
    per_token = _ratio(g_tokens / gra["job_s"], d_tokens / dl["job_s"])
    return [
        Check(
            "completion tokens/s, job (the equal-work figure)",
            f"{g_tokens / gra['job_s']:.2f}",
            f"{d_tokens / dl['job_s']:.2f}",
            per_token,
            f">= {TARGET_SPEEDUP}",
            per_token >= TARGET_SPEEDUP if per_token is not None else None,
        ),
        Check(
            "job wall s, models loaded (ratio: distilabel/gra; unequal work)",
            f"{gra['job_s']:.1f}",
            f"{dl['job_s']:.1f}",
            _ratio(dl["job_s"], gra["job_s"]),
            "-",
            None,
        ),
        Check(
            "process wall s, incl. loads (ratio: distilabel/gra)",
            f"{gra['process_wall_s']:.1f}",
            f"{dl['process_wall_s']:.1f}",
            _ratio(dl["process_wall_s"], gra["process_wall_s"]),
            "-",
            None,
        ),
        Check(
            "CPU s, all processes (ratio: distilabel/gra)",
            f"{gra['cpu_s']:.1f}",
            f"{dl['cpu_s']:.1f}",
            _ratio(dl["cpu_s"], gra["cpu_s"]),
            "-",
            None,
        ),
        Check(
            f"cores busy on average over the process wall (of {os.cpu_count()})",
            f"{gra['cpu_s'] / gra['process_wall_s']:.2f}",
            f"{dl['cpu_s'] / dl['process_wall_s']:.2f}",
            _ratio(gra["cpu_s"] / gra["process_wall_s"], dl["cpu_s"] / dl["process_wall_s"]),
            "-",
            None,
        ),
        Check(
            "model load s (before the first item)",
            f"{gra['load_s']:.1f}",
            f"{dl['load_s']:.1f}",
            _ratio(gra["load_s"], dl["load_s"]),
            "-",
            None,
        ),
        Check(
            "items/s, job",
            f"{n / gra['job_s']:.4f}",
            f"{n / dl['job_s']:.4f}",
            _ratio(n / gra["job_s"], n / dl["job_s"]),
            "-",
            None,
        ),
        Check("generator calls", str(g_gen), str(d_gen), _ratio(g_gen, d_gen), "-", None),
        Check("review calls", str(g_rev), str(d_rev), _ratio(g_rev, d_rev), "-", None),
        Check(
            "completion tokens",
            str(g_tokens),
            str(d_tokens),
            _ratio(g_tokens, d_tokens),
            "-",
            None,
        ),
        Check(
            "items with a valid generation",
            f"{g_valid}/{n}",
            f"{d_valid}/{n}",
            _ratio(g_valid, d_valid),
            "-",
            None,
        ),
        Check("identical generations (same text)", f"{same}/{n}", f"{same}/{n}", None, "-", None),
    ]


def calls(usage: dict[str, dict[str, int]], generator: str) -> tuple[int, int]:
    """(generator calls, review calls) that returned an output."""
    generate = int(usage.get(generator, {}).get("calls", 0))
    return generate, _total(usage, "calls") - generate


def identical_generations(gra: dict[str, Any], dl: dict[str, Any]) -> int:
    """Items whose instruction and response came out the same on both sides.

    llama.cpp's sampler starts from the same default seed in both, so equal
    prompts often give equal texts: then both sides did exactly the same work.
    """
    same = 0
    for item in dl["items"]:
        mine = gra["items"].get(item["id"])
        if (
            mine
            and item["generator_valid"]
            and (mine["instruction"], mine["response"])
            == (
                item["instruction"],
                item["response"],
            )
        ):
            same += 1
    return same


def differences(args: argparse.Namespace, gra: dict[str, Any], dl: dict[str, Any]) -> list[str]:
    d_invalid_reviews = sum(1 for i in dl["items"] for r in i["reviews"] if not r["valid"])
    d_invalid_generations = sum(1 for i in dl["items"] if not i["generator_valid"])
    g_gen, g_rev = calls(gra["usage"], args.generator)
    generated = gra["counts"]["generated"]
    early = [
        item["stage"]
        for item in gra["items"].values()
        if item["decision"] == "rejected" and item["reviews_in"] < len(args.judges)
    ]
    return [
        f"gra keeps up to {args.max_in_flight} items in flight and each model is its own "
        "agent process: the generator writes item k+1 while the judges review item k. "
        f"distilabel moves rows in batches of {args.batch_size}; a step starts when a whole "
        "batch has reached it (with N <= batch size: all generations first, then all reviews, "
        "the judges in parallel).",
        f"Both use {args.threads} llama.cpp thread(s) per model (gra's default), n_ctx "
        f"{args.n_ctx}, n_batch 256, llama.cpp's JSON-schema grammar, gra's prompts and "
        "sampling. gra's agents keep saved prompt states: a judge evaluates its rubric once "
        "while it waits for the first generation, and resumes from it for every review.",
        "Same grammar, different sampling cost: distilabel's LlamaCppLLM (plain "
        "llama-cpp-python) masks the whole vocabulary with the grammar at every token; gra "
        "asks the grammar only about the highest-logit candidates (or, between JSON values, "
        "the tokens under allowed byte prefixes) and draws the same tokens for the same seed "
        "(benchmarks/bench_grammar.py).",
        "gra asks a model again when its output fails the schema or the role's checks "
        f"(instruction >= 4 words): {g_gen - generated} extra generator call(s) here "
        f"({gra['retries']} task retries on another agent). distilabel makes exactly one "
        f"call per step and row: {d_invalid_generations} of its generations were unusable "
        f"JSON (reviewed anyway, as raw text) and {d_invalid_reviews} reviews were not JSON.",
        "gra rejects an item as soon as its outcome is certain (one reviewer failed an "
        "instruction check, or the scores in put the committee mean out of reach of tau) and "
        f"cancels its other reviews, queued or running: {early.count('instruction_check')} "
        f"item(s) rejected that way on a check and {early.count('score')} on score here, "
        f"{len(args.judges) * generated - g_rev} review(s) not completed (gra counts only "
        "completed calls; one cancelled while running had used CPU until then). distilabel "
        "completes every review.",
        "gra decides each item (checks, committee mean and spread; with every model "
        "involved no adjudicator is free, so no adjudication calls), journals every step "
        "and writes accepted/rejected JSONL; distilabel only collects the texts.",
        "gra's annotation (enrichment) and deduplication are off; the distilabel job has "
        "no such steps.",
        "Sampling (temperature 0.8) starts from llama.cpp's default seed on both sides, so "
        "equal prompts often give equal texts (see 'identical generations'); where they "
        "differ, lengths differ too: compare completion tokens/s as well as wall time.",
        "gra ran first, then distilabel, on the same machine; load average is recorded.",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=8, help="items generated (and reviewed)")
    parser.add_argument("--generator", default="qwen2.5-coder-0.5b")
    parser.add_argument(
        "--judges", nargs="+", default=["qwen2.5-coder-1.5b", "gemma-3-270m"], metavar="MODEL"
    )
    parser.add_argument(
        "--batch-size", type=int, default=50, help="distilabel input_batch_size (its default: 50)"
    )
    parser.add_argument("--max-in-flight", type=int, default=4, help="gra (its default: 4)")
    parser.add_argument("--few-shot", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    args = parser.parse_args()
    if args.generator in args.judges:
        parser.error("the generator must not judge its own items")

    if not DISTILABEL_PYTHON.is_file():
        raise SystemExit(f"no {DISTILABEL_PYTHON}: run scripts/setup_distilabel.sh first")
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bench_distilabel: llama_cpp is not installed here (make install)")
    gra_llama = Path(spec.submodule_search_locations[0])
    mismatch = llama_build_mismatch(gra_llama, distilabel_llama_package())
    if mismatch is not None:
        raise SystemExit(f"bench_distilabel: {mismatch}")

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="gra-bench-distilabel-"))
    started = time.monotonic()
    try:
        gra = run_gra(args, workdir)
        log(f"gra: {gra['items_finished']} items, job {gra['job_s']:.1f}s")
        dl = run_distilabel(args, gra["starts"], workdir)
        log(f"distilabel: {dl['items_finished']} items, job {dl['job_s']:.1f}s")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_after"] = list(os.getloadavg())
    rows = checks(gra, dl, args.items)
    table = format_table(rows, "gra", "distilabel")
    notes = differences(args, gra, dl)
    print(
        f"{args.items} items: {args.generator} generates, {', '.join(args.judges)} review; "
        f"load average before {info['load_average']}, after {info['load_average_after']}"
    )
    print(table)
    print("\nWhat differs:")
    for note in notes:
        print(f"- {note}")
    gra.pop("starts")
    result = {
        "benchmark": "distilabel",
        "utc": utc_stamp(),
        "machine": info,
        "settings": vars(args) | {"results_dir": str(args.results_dir)},
        "checks": [asdict(c) | {"verdict": c.verdict} for c in rows],
        "table": table,
        "passed": rows[0].passed,
        "differences": notes,
        "gra": gra,
        "distilabel": dl,
        "workdir": str(workdir) if args.keep else None,
        "wall_s": time.monotonic() - started,
    }
    if not args.no_write:
        path = write_result(args.results_dir, "distilabel", result)
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
