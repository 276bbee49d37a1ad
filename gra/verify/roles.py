"""The verification roles, registered the way any plugin role is (``gra.roles``
entry points in pyproject.toml).

- ``tester``: a model writes assert statements for a coding task from the
  instruction ALONE (it never sees the response, so its tests do not inherit
  the response's mistakes);
- ``solver``: a model writes a program that prints a math task's answer, from
  the instruction alone;
  both write their code as plain text in fenced blocks, not inside JSON strings
  (``gra.verify.written_code``; README, "Code as plain text");
- ``verifier``: runs the response against the instruction's own examples and
  the tests (or compares it with the programs' answers) in the sandbox. It
  prompts no model, so a ``sandbox`` agent (no model) can serve it.
"""

from __future__ import annotations

from gra.agents.roles import InvalidOutput, Role
from gra.backends.base import ChatMessages, Sampling
from gra.protocols.roles import (
    SolverOutput,
    SolverRequest,
    UnitTestOutput,
    UnitTestRequest,
    VerificationOutput,
    VerifyRequest,
)
from gra.verify.verifier import VerifySettings, verify
from gra.verify.written_code import read_solver_reply, read_tester_reply

_TESTER_SYSTEM = (
    "You write unit tests for programming tasks. You see only the task, never a solution.\n"
    "First write your own complete, correct solution to the task: the whole function, "
    "with any imports it needs. Then write Python assert statements that any correct "
    "solution must pass. Rules for the asserts: call the function exactly by the name and "
    "with the arguments the task gives; one assert per line, in the form "
    "`assert CALL == EXPECTED`; work out each expected value carefully from the task's "
    "words, not from your code; cover the ordinary case and the edge cases the task "
    "describes (empty input, zero, negative numbers, ties, boundaries); use only inputs the "
    "task allows.\n"
    "Reply with one fenced Python code block in exactly this form, and nothing else:\n"
    "```python\n"
    "# solution\n"
    "<the whole function>\n"
    "\n"
    "# tests\n"
    "assert <call> == <expected>\n"
    "assert <call> == <expected>\n"
    "```"
)


def _tester_prompt(request: UnitTestRequest) -> ChatMessages:
    user = f"Task:\n{request.instruction}\n\nWrite {request.count} assert statements."
    return [
        {"role": "system", "content": _TESTER_SYSTEM},
        {"role": "user", "content": user},
    ]


def _read_tests(request: UnitTestRequest, text: str) -> UnitTestOutput:
    tests, solution = read_tester_reply(text)
    return UnitTestOutput(tests, solution)


_SOLVER_SYSTEM = (
    "You solve math problems by writing a short Python program. You see only the problem.\n"
    "Write a program that computes the problem's final answer and prints it, alone, on the "
    "last line of its output. Use exact arithmetic where you can (fractions.Fraction, or "
    "sympy, which is available); no input(), no files, no network.\n"
    "Reply with the program in one fenced Python code block (```python ... ```) and nothing "
    "else."
)


def _solver_prompt(request: SolverRequest) -> ChatMessages:
    return [
        {"role": "system", "content": _SOLVER_SYSTEM},
        {"role": "user", "content": f"Problem:\n{request.instruction}"},
    ]


def _read_program(request: SolverRequest, text: str) -> SolverOutput:
    program = read_solver_reply(text)
    if "print" not in program:
        raise InvalidOutput("solver program prints nothing")
    return SolverOutput(program)


async def _verify(request: VerifyRequest) -> VerificationOutput:
    return await verify(request, VerifySettings.for_request(request))


def _no_prompt(request: VerifyRequest) -> ChatMessages:
    raise InvalidOutput("the verifier runs code; it has no prompt")


TESTER = Role(
    "tester",
    UnitTestRequest,
    UnitTestOutput,
    _tester_prompt,
    Sampling(max_tokens=640, temperature=0.7),
    warmup=UnitTestRequest("coding", "..."),
    text=_read_tests,
)
SOLVER = Role(
    "solver",
    SolverRequest,
    SolverOutput,
    _solver_prompt,
    Sampling(max_tokens=320, temperature=0.5),
    warmup=SolverRequest("math", "..."),
    text=_read_program,
)
VERIFIER = Role(
    "verifier",
    VerifyRequest,
    VerificationOutput,
    _no_prompt,
    Sampling(max_tokens=1),
    execute=_verify,
)
