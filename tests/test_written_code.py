"""Testers and solvers write their code as plain text (``gra.verify.written_code``):
their replies are read into the roles' outputs, or refused with a reason."""

from __future__ import annotations

import ast
import dataclasses

import pytest

from gra.errors import InvalidOutput
from gra.protocols.roles import SolverRequest, UnitTestRequest
from gra.verify.roles import SOLVER, TESTER
from gra.verify.written_code import MAX_TESTS, read_solver_reply, read_tester_reply
from tests.conftest import one_qwen_completion

FENCE = "`" * 3

TESTER_REPLY = f"""{FENCE}python
# solution
import math

def area(r: float) -> float:
    return math.pi * r * r

# tests
assert area(0) == 0
assert area(
    1
) == math.pi
print("all passed")
{FENCE}
"""


def test_a_tester_reply_splits_into_asserts_and_a_solution() -> None:
    tests, solution = read_tester_reply(TESTER_REPLY)
    # A multi-line assert is one test on one line; the print is scaffolding.
    assert tests == ("assert area(0) == 0", "assert area(1) == math.pi")
    assert solution == "import math\n\ndef area(r: float) -> float:\n    return math.pi * r * r"
    ast.parse(solution)


def test_read_tester_reply_in_two_blocks_and_prose_between() -> None:
    reply = (
        f"Tests:\n{FENCE}python\nassert double(2) == 4\nassert double(0) == 0\n{FENCE}\n"
        f"And my solution:\n{FENCE}python\ndef double(x):\n    return 2 * x\n{FENCE}\n"
        "It doubles x."
    )
    tests, solution = read_tester_reply(reply)
    assert tests == ("assert double(2) == 4", "assert double(0) == 0")
    assert solution == "def double(x):\n    return 2 * x"


def test_asserts_inside_a_test_function_are_lifted_out() -> None:
    reply = (
        f"{FENCE}python\ndef f(x):\n    return x + 1\n\n"
        "def test_f():\n    assert f(1) == 2\n    assert f(-1) == 0\n\n"
        "if __name__ == '__main__':\n    test_f()\n"
        f"{FENCE}"
    )
    tests, solution = read_tester_reply(reply)
    assert tests == ("assert f(1) == 2", "assert f(-1) == 0")
    assert solution == "def f(x):\n    return x + 1"


def test_a_test_function_with_its_own_names_stays_with_the_solution() -> None:
    # Its asserts use a local name: lifted out they would not run.
    reply = (
        f"{FENCE}python\ndef f(x):\n    return x\n\ndef test_f():\n    y = f(1)\n"
        f"    assert y == 1\n\nassert f(2) == 2\n{FENCE}"
    )
    tests, solution = read_tester_reply(reply)
    assert tests == ("assert f(2) == 2",)
    assert "def test_f" in solution


def test_at_most_the_wire_limit_of_asserts_is_kept() -> None:
    asserts = "\n".join(f"assert f({n}) == {n}" for n in range(MAX_TESTS + 5))
    tests, _solution = read_tester_reply(f"{FENCE}python\n{asserts}\n{FENCE}")
    assert len(tests) == MAX_TESTS and tests[0] == "assert f(0) == 0"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I cannot write tests for this task.", "no compiling Python"),
        (f"{FENCE}python\ndef f(x):\n    return x\n{FENCE}", "no assert statement"),
        (f"{FENCE}python\ndef f(x:\n    return x\n{FENCE}", "no compiling Python"),
    ],
)
def test_a_tester_reply_without_tests_is_refused(reply: str, reason: str) -> None:
    with pytest.raises(InvalidOutput, match=reason):
        read_tester_reply(reply)


def test_a_solver_reply_is_its_program_with_missing_imports_added() -> None:
    reply = (
        f"Here is the program:\n{FENCE}python\nx = Fraction(1, 3) + Fraction(1, 6)\n"
        f"print(x)\n{FENCE}\nThe answer is 1/2."
    )
    assert read_solver_reply(reply) == (
        "from fractions import Fraction\nx = Fraction(1, 3) + Fraction(1, 6)\nprint(x)"
    )


def test_an_unclosed_fence_cut_at_max_tokens_still_gives_the_code_written() -> None:
    assert read_solver_reply(f"{FENCE}python\nprint(2 + 2)\n") == "print(2 + 2)"


def test_the_roles_ask_for_free_text_and_read_it() -> None:
    # No JSON schema: the backends sample free text for these roles.
    unit = UnitTestRequest("coding", "Write double(x).")
    assert TESTER.schema_for(unit) is None and TESTER.schema is None
    output = TESTER.parse(unit, TESTER_REPLY)
    assert output.tests[0] == "assert area(0) == 0"
    math = SolverRequest("math", "What is 2 + 2?")
    assert SOLVER.schema_for(math) is None
    assert SOLVER.parse(math, f"{FENCE}python\nprint(2 + 2)\n{FENCE}").program == "print(2 + 2)"
    with pytest.raises(InvalidOutput, match="prints nothing"):
        SOLVER.parse(math, f"{FENCE}python\nx = 2 + 2\n{FENCE}")
    # The prompts ask for fenced blocks, not JSON.
    for role, request in ((TESTER, unit), (SOLVER, math)):
        system = role.prompt(request)[0]["content"]
        assert "fenced Python code block" in system and "JSON" not in system


@pytest.mark.slow
async def test_a_real_solver_writes_a_program_the_sandbox_runs() -> None:
    """llama.cpp samples the solver's reply with no grammar, and what the role reads
    from it is a program of several lines that prints an answer in the sandbox."""
    from gra.sandbox.runner import run_python_async

    request = SolverRequest(
        "math", "A town's population went up from 240 to 264. What was the percentage increase?"
    )
    sampling = dataclasses.replace(SOLVER.sampling, seed=0)
    completion = await one_qwen_completion(SOLVER.prompt(request), None, sampling)
    assert completion.finish_reason == "stop", completion.text
    program = SOLVER.parse(request, completion.text).program
    assert len(program.splitlines()) > 1, program
    ran = await run_python_async(program)
    assert ran.status == "ok" and ran.stdout.strip(), (program, ran)


def test_a_reply_cut_at_max_tokens_keeps_the_statements_before_the_cut() -> None:
    reply = (
        f"{FENCE}python\ndef inc(x):\n    return x + 1\n\n"
        "assert inc(1) == 2\nassert inc(-1) == 0\nassert inc(inc(5"
    )
    tests, solution = read_tester_reply(reply)
    assert tests == ("assert inc(1) == 2", "assert inc(-1) == 0")
    assert solution == "def inc(x):\n    return x + 1"


def test_a_closed_block_that_does_not_compile_is_not_trimmed() -> None:
    # Cutting lines out of a finished solution would make another, wrong one.
    reply = f"{FENCE}python\ndef inc(x):\n    y = x +\n    return y\n\nassert inc(1) == 2\n{FENCE}"
    with pytest.raises(InvalidOutput, match="no compiling Python"):
        read_tester_reply(reply)
