"""Code inside JSON strings: does letting the grammar accept raw newlines give more
usable tester and solver programs than strict JSON strings?

The real ``tester`` and ``solver`` roles (their prompts and sampling) run on
real models through gra's ``LlamaCppBackend``, once with JSON strings that may
hold raw newlines and tabs (``raw``, gra's default) and once with strict JSON
strings (``strict``: raw control characters refused, llama.cpp's own rule),
on the same instructions with the same seeds, the two sides alternating which
goes first. Instructions: the good pairs of the labelled sets
(``benchmarks/labelled``), coding ones from HumanEval (whose canonical
solution and tests are the ground truth) and math ones with their answers.

Counted per side: outputs the role accepts; programs written on more than one
line; programs that compile as written (``ast.parse``); programs usable after
the verifier's mending (``gra.verify.repair.fleet_code``); usable programs
that run in the sandbox without error (solvers: and print an answer);
correct ones (a tester's solution passes HumanEval's tests, a solver's answer
equals the labelled one); and the testers' asserts that hold for the
canonical solution.

    python benchmarks/bench_code_strings.py                       # both models, 16 + 16
    python benchmarks/bench_code_strings.py --models qwen2.5-coder-0.5b --coding 8 --math 8

Writes benchmarks/results/code-strings-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import machine_info, utc_stamp, write_result
from gra.agents.roles import Role
from gra.backends.base import Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.data.humaneval import Problem, read_problems, solution_code
from gra.errors import InvalidOutput
from gra.models import resolve
from gra.protocols.roles import SolverRequest, UnitTestRequest
from gra.sandbox.runner import run_python_async, sandbox_unavailable
from gra.verify.math_answers import answers_equivalent, solver_answer
from gra.verify.repair import fleet_code
from gra.verify.roles import SOLVER, TESTER

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "benchmarks" / "labelled"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
SIDES = ("raw", "strict")  # raw newlines and tabs in JSON strings, or strict JSON
COUNTS = ("outputs", "valid", "multiline", "compiles", "usable", "runs", "correct")


def log(message: str) -> None:
    print(f"[bench_code_strings] {message}", file=sys.stderr, flush=True)


def good_rows(name: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` good pairs of a labelled set, report split first."""
    rows = [json.loads(line) for line in (LABELLED / f"{name}.jsonl").read_text().splitlines()]
    good = [r for r in rows if r["label"] == "good"]
    good.sort(key=lambda r: r["split"] != "report")
    return good[:limit]


def compiles(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


_HELD = """
_tests = {tests!r}
_held = 0
for _test in _tests:
    try:
        exec(_test, globals())
        _held += 1
    except BaseException:
        pass
print(_held)
"""


async def asserts_held(problem: Problem, tests: tuple[str, ...]) -> int:
    """How many of ``tests`` hold for the canonical solution (0 if the run fails)."""
    result = await run_python_async(solution_code(problem) + _HELD.format(tests=list(tests)))
    lines = result.stdout.split()
    return int(lines[-1]) if result.status == "ok" and lines else 0


async def judge_tester(output: Any, problem: Problem) -> dict[str, Any]:
    program = output.solution
    source = fleet_code(program)
    row: dict[str, Any] = {
        "multiline": "\n" in program.strip(),
        "compiles": compiles(program),
        "usable": source is not None,
        "asserts": len(output.tests),
        "asserts_held": await asserts_held(problem, output.tests),
    }
    if source is not None:
        ran = await run_python_async(source)
        row["runs"] = ran.status == "ok"
        check = f"{source}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
        row["correct"] = row["runs"] and (await run_python_async(check)).status == "ok"
    return row


async def judge_solver(output: Any, answer: str) -> dict[str, Any]:
    program = output.program
    source = fleet_code(program)
    row: dict[str, Any] = {
        "multiline": "\n" in program.strip(),
        "compiles": compiles(program),
        "usable": source is not None,
    }
    if source is not None:
        ran = await run_python_async(source)
        said = solver_answer(ran.stdout) if ran.status == "ok" else None
        row["runs"] = said is not None
        row["correct"] = said is not None and answers_equivalent(said, answer)
    return row


async def one_call(
    backend: LlamaCppBackend, role: Role[Any, Any], request: Any, seed: int
) -> tuple[dict[str, Any], Any]:
    default = role.sampling
    sampling = Sampling(default.max_tokens, default.temperature, default.top_p, seed=seed)
    started = time.perf_counter()
    completion = await backend.complete(role.prompt(request), role.schema, sampling)
    row: dict[str, Any] = {
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 3),
        "tokens": completion.completion_tokens,
        "finish_reason": completion.finish_reason,
        "text": completion.text,
    }
    try:
        output = role.parse(request, completion.text)
    except InvalidOutput as exc:
        row["invalid"] = str(exc)[:300]
        return row, None
    return row, output


async def measure_model(
    model: str, coding: list[dict[str, Any]], math: list[dict[str, Any]], threads: int
) -> list[dict[str, Any]]:
    path = resolve(model)
    backends = {
        side: LlamaCppBackend(
            model, path, n_threads=threads, prompt_cache_mib=0, raw_newlines=side == "raw"
        )
        for side in SIDES
    }
    for backend in backends.values():
        await backend.start()
    problems = {p.task_id: p for p in read_problems()}
    tasks: list[tuple[str, dict[str, Any]]] = [("coding", r) for r in coding]
    tasks += [("math", r) for r in math]
    rows: list[dict[str, Any]] = []
    try:
        for n, (domain, item) in enumerate(tasks):
            order = SIDES if n % 2 == 0 else SIDES[::-1]
            for side in order:
                if domain == "coding":
                    request: Any = UnitTestRequest("coding", item["instruction"])
                    row, output = await one_call(backends[side], TESTER, request, 1000 + n)
                    problem = problems[item["source"].split(":", 1)[1]]
                    if output is not None:
                        row |= await judge_tester(output, problem)
                else:
                    request = SolverRequest("math", item["instruction"])
                    row, output = await one_call(backends[side], SOLVER, request, 1000 + n)
                    if output is not None:
                        row |= await judge_solver(output, item["answer"])
                row |= {"model": model, "side": side, "domain": domain, "task": item["id"]}
                row["valid"] = output is not None
                rows.append(row)
                log(
                    f"{model} {domain} {item['id']} {side}: {row['tokens']} tokens "
                    f"{row['seconds']:.1f} s, valid {row['valid']}, "
                    f"usable {row.get('usable')}, runs {row.get('runs')}, "
                    f"correct {row.get('correct')}"
                )
    finally:
        for backend in backends.values():
            await backend.aclose()
    return rows


def tally(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per (model, domain) and side."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        for group in (f"{row['model']} {row['domain']}", f"all {row['domain']}"):
            key = f"{group} {row['side']}"
            counts = table.setdefault(key, dict.fromkeys((*COUNTS, "asserts", "asserts_held"), 0))
            counts["outputs"] += 1
            for name in COUNTS[1:]:
                counts[name] += bool(row.get(name))
            counts["asserts"] += row.get("asserts", 0)
            counts["asserts_held"] += row.get("asserts_held", 0)
    return table


def format_tally(table: dict[str, dict[str, int]]) -> str:
    head = ["group side", *COUNTS, "asserts held"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key in sorted(table):
        counts = table[key]
        held = f"{counts['asserts_held']}/{counts['asserts']}" if counts["asserts"] else "-"
        lines.append(f"| {key} | " + " | ".join(str(counts[c]) for c in COUNTS) + f" | {held} |")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--coding", type=int, default=16, help="coding instructions per model")
    parser.add_argument("--math", type=int, default=16, help="math instructions per model")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per model")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    problem = sandbox_unavailable()
    if problem is not None:
        print(f"bench_code_strings: {problem}", file=sys.stderr)
        return 2
    stamp, before, started = utc_stamp(), machine_info(), time.perf_counter()
    coding, math = good_rows("coding", args.coding), good_rows("math", args.math)
    rows = [row for m in args.models for row in await measure_model(m, coding, math, args.threads)]
    table = tally(rows)
    text = format_tally(table)
    print(text)
    path = write_result(
        args.results_dir,
        "code-strings",
        {
            "benchmark": "code-strings",
            "utc": stamp,
            "machine": before,
            "load_average_after": machine_info()["load_average"],
            "wall_s": round(time.perf_counter() - started, 1),
            "settings": {k: str(v) for k, v in vars(args).items()},
            "sides": {"raw": "raw newlines and tabs in strings", "strict": "strict JSON"},
            "counts": table,
            "table": text,
            "calls": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
