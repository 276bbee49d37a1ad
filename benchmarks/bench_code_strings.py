"""Code in JSON strings or as plain text: which gives more usable tester and solver
programs?

Three ways to ask the real ``tester`` and ``solver`` roles for their code, on
real models through gra's ``LlamaCppBackend``:

- ``text``: plain text, fenced code blocks, no grammar (the roles as shipped,
  ``gra.verify.roles``);
- ``raw``: one JSON object whose strings hold the code, the grammar letting
  them hold raw newlines and tabs (the roles' earlier JSON form, kept here as
  the baseline);
- ``strict``: the same JSON with strict strings (raw control characters
  refused, llama.cpp's own rule).

Same instructions, same seeds, the sides alternating which goes first.
Instructions: the good pairs of the labelled sets (``benchmarks/labelled``),
coding ones from HumanEval (whose canonical solution and tests are the ground
truth) and math ones with their answers.

Counted per side: outputs the role accepts; programs written on more than one
line; programs that compile as written (``ast.parse``); programs usable after
the verifier's mending (``gra.verify.repair.fleet_code``); usable programs
that run in the sandbox without error (solvers: and print an answer);
correct ones (a tester's solution passes HumanEval's tests, a solver's answer
equals the labelled one); and the testers' asserts that hold for the
canonical solution.

    python benchmarks/bench_code_strings.py                       # both models, 16 + 16
    python benchmarks/bench_code_strings.py --models qwen2.5-coder-0.5b --coding 8 --math 8
    python benchmarks/bench_code_strings.py --sides raw strict    # the grammar's two rules

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
from gra.backends.base import ChatMessages, Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.data.humaneval import Problem, read_problems, solution_code
from gra.errors import InvalidOutput
from gra.models import resolve
from gra.protocols.roles import SolverOutput, SolverRequest, UnitTestOutput, UnitTestRequest
from gra.sandbox.runner import run_python_async, sandbox_unavailable
from gra.verify.math_answers import answers_equivalent, solver_answer
from gra.verify.repair import fleet_code
from gra.verify.roles import SOLVER, TESTER

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "benchmarks" / "labelled"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
SIDES = {
    "text": "plain text, fenced code blocks (the roles as shipped)",
    "raw": "JSON, raw newlines and tabs allowed in strings",
    "strict": "JSON, strict strings",
}

# The roles' JSON form, before their code became plain text: the baseline.
_JSON_ONLY = "Answer with one JSON object only, exactly in the requested shape."
_JSON_TESTER_SYSTEM = (
    "You write unit tests for programming tasks. You see only the task, never a solution.\n"
    "Write Python assert statements that any correct solution must pass. Rules: call the "
    "function exactly by the name and with the arguments the task gives; one assert per "
    "entry, on one line, in the form `assert CALL == EXPECTED`; work out each expected "
    "value carefully from the task's words; cover the ordinary case and the edge cases the "
    "task describes (empty input, zero, negative numbers, ties, boundaries); use only "
    "inputs the task allows; do not define functions or import anything in the tests.\n"
    "Then write your own complete, correct solution to the task: the whole function, with "
    "any imports it needs, as Python source.\n"
    "Reply as JSON with two keys: tests (a list of assert statements) and solution (the "
    f"Python source). {_JSON_ONLY}"
)
_JSON_SOLVER_SYSTEM = (
    "You solve math problems by writing a short Python program. You see only the problem.\n"
    "Write a program that computes the problem's final answer and prints it, alone, on the "
    "last line of its output. Use exact arithmetic where you can (fractions.Fraction, or "
    "sympy, which is available); no input(), no files, no network.\n"
    f"Reply as JSON with one key: program (the Python source). {_JSON_ONLY}"
)


def _json_tester_prompt(request: UnitTestRequest) -> ChatMessages:
    user = f"Task:\n{request.instruction}\n\nWrite {request.count} assert statements."
    return [
        {"role": "system", "content": _JSON_TESTER_SYSTEM},
        {"role": "user", "content": user},
    ]


def _json_solver_prompt(request: SolverRequest) -> ChatMessages:
    return [
        {"role": "system", "content": _JSON_SOLVER_SYSTEM},
        {"role": "user", "content": f"Problem:\n{request.instruction}"},
    ]


def _json_tests_check(request: UnitTestRequest, output: UnitTestOutput) -> None:
    if not any(t.strip().startswith("assert ") for t in output.tests):
        raise InvalidOutput("tester wrote no assert statement")


def _json_program_check(request: SolverRequest, output: SolverOutput) -> None:
    if "print" not in output.program:
        raise InvalidOutput("solver program prints nothing")


JSON_TESTER: Role[UnitTestRequest, UnitTestOutput] = Role(
    "tester", UnitTestRequest, UnitTestOutput, _json_tester_prompt, TESTER.sampling,
    _json_tests_check,
)  # fmt: skip
JSON_SOLVER: Role[SolverRequest, SolverOutput] = Role(
    "solver", SolverRequest, SolverOutput, _json_solver_prompt, SOLVER.sampling,
    _json_program_check,
)  # fmt: skip


def roles_for(side: str) -> tuple[Role[Any, Any], Role[Any, Any]]:
    """The tester and the solver as ``side`` asks for their code."""
    return (TESTER, SOLVER) if side == "text" else (JSON_TESTER, JSON_SOLVER)


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
    completion = await backend.complete(role.prompt(request), role.schema_for(request), sampling)
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
    model: str,
    coding: list[dict[str, Any]],
    math: list[dict[str, Any]],
    threads: int,
    sides: tuple[str, ...],
) -> list[dict[str, Any]]:
    path = resolve(model)
    backends = {
        side: LlamaCppBackend(
            model, path, n_threads=threads, prompt_cache_mib=0, raw_newlines=side != "strict"
        )
        for side in sides
    }
    for backend in backends.values():
        await backend.start()
    problems = {p.task_id: p for p in read_problems()}
    tasks: list[tuple[str, dict[str, Any]]] = [("coding", r) for r in coding]
    tasks += [("math", r) for r in math]
    rows: list[dict[str, Any]] = []
    try:
        for n, (domain, item) in enumerate(tasks):
            order = sides if n % 2 == 0 else sides[::-1]
            for side in order:
                tester, solver = roles_for(side)
                if domain == "coding":
                    request: Any = UnitTestRequest("coding", item["instruction"])
                    row, output = await one_call(backends[side], tester, request, 1000 + n)
                    problem = problems[item["source"].split(":", 1)[1]]
                    if output is not None:
                        row |= await judge_tester(output, problem)
                else:
                    request = SolverRequest("math", item["instruction"])
                    row, output = await one_call(backends[side], solver, request, 1000 + n)
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
    parser.add_argument("--sides", nargs=2, choices=list(SIDES), default=["raw", "text"])
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    problem = sandbox_unavailable()
    if problem is not None:
        print(f"bench_code_strings: {problem}", file=sys.stderr)
        return 2
    stamp, before, started = utc_stamp(), machine_info(), time.perf_counter()
    coding, math = good_rows("coding", args.coding), good_rows("math", args.math)
    sides = tuple(args.sides)
    rows = [
        row
        for model in args.models
        for row in await measure_model(model, coding, math, args.threads, sides)
    ]
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
            "sides": {side: SIDES[side] for side in sides},
            "counts": table,
            "table": text,
            "calls": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
