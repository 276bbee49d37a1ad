"""Model JSON whose strings hold raw newlines or tabs (the llama.cpp grammar allows
them, ``gra.backends.gbnf``) decodes with the characters restored, and the
output type is still enforced; what is not JSON still gets a clear reason."""

from __future__ import annotations

import ast

import pytest

from gra.agents.roles import Role, get_role
from gra.backends.base import Sampling
from gra.errors import InvalidOutput
from gra.protocols.roles import SolverOutput, SolverRequest, UnitTestOutput, UnitTestRequest

# Roles that ask for their code inside JSON strings (the shipped tester and
# solver write plain text; the generator's responses still hold code in JSON).
SOLVER = Role("solver", SolverRequest, SolverOutput, lambda _request: [], Sampling())
TESTER = Role("tester", UnitTestRequest, UnitTestOutput, lambda _request: [], Sampling())

PROGRAM = "from fractions import Fraction\nfor i in range(2):\n\tprint(Fraction(i, 3))"


def raw(program: str) -> str:
    """``program`` as a JSON string value written with raw control characters."""
    return '"' + program.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_a_raw_newline_and_tab_in_a_program_are_restored() -> None:
    text = '{"program": ' + raw(PROGRAM) + "}"
    assert "\n" in text and "\t" in text
    output = SOLVER.parse(SolverRequest("math", "..."), text)
    assert output.program == PROGRAM
    ast.parse(output.program)


def test_raw_and_escaped_newlines_may_be_mixed() -> None:
    text = '{"tests": ["assert f(1) == 2"], "solution": "def f(x):\\n    y = x + 1\n    return y"}'
    output = TESTER.parse(UnitTestRequest("coding", "..."), text)
    assert output.solution == "def f(x):\n    y = x + 1\n    return y"


def test_the_output_type_is_still_enforced_with_raw_newlines() -> None:
    # The solver's program must not be empty; a tester needs a list of tests.
    with pytest.raises(InvalidOutput, match="does not match its schema"):
        SOLVER.parse(SolverRequest("math", "..."), '{"program": "", "extra": "a\nb"}')
    with pytest.raises(InvalidOutput, match="does not match its schema"):
        TESTER.parse(UnitTestRequest("coding", "..."), '{"tests": "assert\n1", "solution": "x"}')


def test_a_raw_newline_outside_any_string_is_plain_whitespace() -> None:
    output = SOLVER.parse(SolverRequest("math", "..."), '{\n"program":\n"print(1)"\n}')
    assert output.program == "print(1)"


@pytest.mark.parametrize(
    "text",
    [
        '{"program": "print(1)\n',  # cut off inside the string
        '{"program": "print("\n")"}',  # an unescaped quote ends the string early
        "program = print(1)\nprint(2)",  # no JSON at all
        '{"program": "a\x00b"} trailing',  # a NUL, then text after the object
    ],
)
def test_odd_output_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidOutput, match="solver output is not JSON"):
        SOLVER.parse(SolverRequest("math", "..."), text)


def test_every_prompted_role_decodes_raw_newlines() -> None:
    # Reviewers' and refiners' prose has paragraphs too.
    role = get_role("refiner")
    request = role.warmup
    output = role.parse(request, '{"response": "First line.\n\nSecond paragraph."}')
    assert output.response == "First line.\n\nSecond paragraph."
