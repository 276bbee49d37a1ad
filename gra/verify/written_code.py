"""Read the code a tester or a solver wrote as plain text (fenced blocks).

Asked for code inside a JSON string, small models write a function on one
line or close the object inside the string (``gra.verify.repair``); asked for
a fenced block, they write code the way their training data does. These
functions turn such a reply into the role's output, or say why they cannot.
"""

from __future__ import annotations

import ast

from gra.errors import InvalidOutput
from gra.verify.repair import fleet_code

__all__ = ["read_solver_reply", "read_tester_reply"]

# The wire's limits (gra.protocols.roles): longer entries are dropped, not sent.
MAX_TESTS = 16
MAX_TEST_CHARS = 1_000
MAX_SOURCE_CHARS = 6_000


def _statement_lines(source: str) -> list[tuple[ast.stmt, str]]:
    """Each top-level statement of ``source`` with its own text (decorators included)."""
    lines = source.splitlines()
    statements = []
    for node in ast.parse(source).body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        statements.append((node, "\n".join(lines[first - 1 : node.end_lineno])))
    return statements


def _written_before_the_cut(text: str) -> str | None:
    """The complete statements of a reply cut off inside its last code block (at
    max_tokens, often while the model repeats its asserts): its lines up to the
    last point where the code compiles. None when the reply was not cut there
    (its fences are closed) or nothing before the cut compiles.

    Only a cut is trimmed: a reply whose closed block does not compile is left
    refused, since dropping lines from the middle of a solution would make a
    different, wrong one that then votes."""
    lines = text.splitlines()
    if sum(line.lstrip().startswith("```") for line in lines) % 2 == 0:
        return None
    for end in range(len(lines) - 1, 0, -1):
        source = fleet_code("\n".join(lines[:end]))
        if source is not None:
            return source
    return None


def read_tester_reply(text: str) -> tuple[tuple[str, ...], str]:
    """A tester's reply split into its assert statements and its own solution.

    The reply's Python (its fenced blocks, joined) is read statement by
    statement: top-level ``assert`` statements are the tests, in order;
    everything else (imports, the function) is the solution. Raises
    InvalidOutput when the reply holds no compiling Python or no assert.
    """
    source = fleet_code(text) or _written_before_the_cut(text)
    if source is None:
        raise InvalidOutput("tester wrote no compiling Python")
    tests: list[str] = []
    solution: list[str] = []
    for node, code in _statement_lines(source):
        if isinstance(node, ast.Assert):
            tests.append(ast.unparse(node))  # one line, whatever the layout
        elif isinstance(node, ast.FunctionDef) and _is_test_function(node):
            tests.extend(ast.unparse(statement) for statement in node.body)
        elif not _is_test_scaffold(node):
            solution.append(code)
    tests = [test for test in tests if len(test) <= MAX_TEST_CHARS][:MAX_TESTS]
    if not tests:
        raise InvalidOutput("tester wrote no assert statement")
    written = "\n\n".join(solution)
    if len(written) > MAX_SOURCE_CHARS:
        raise InvalidOutput(f"tester's solution is longer than {MAX_SOURCE_CHARS} characters")
    return tuple(tests), written


def _is_test_function(node: ast.stmt) -> bool:
    """``def test_x(): assert ...``: a function of bare asserts, which read the same
    at top level (asserts that use the function's own names are not bare)."""
    return (
        isinstance(node, ast.FunctionDef)
        and node.name.lower().startswith(("test", "check"))
        and not node.args.args
        and bool(node.body)
        and all(isinstance(statement, ast.Assert) for statement in node.body)
    )


def _is_test_scaffold(node: ast.stmt) -> bool:
    """Statements that only run or report the tests (``print("ok")``, a main guard)."""
    if isinstance(node, ast.If):
        test = node.test
        return (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
        )
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)


def read_solver_reply(text: str) -> str:
    """A solver's reply as the program to run; InvalidOutput when it holds none."""
    source = fleet_code(text)
    if source is None:
        raise InvalidOutput("solver wrote no compiling Python program")
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidOutput(f"solver's program is longer than {MAX_SOURCE_CHARS} characters")
    return source
