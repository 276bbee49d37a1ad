"""Math answers: extraction, equivalence, and the verdict from real solver runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gra.sandbox import SandboxLimits, SandboxResult, run_python, sandbox_unavailable
from gra.verify.math_answers import (
    answer_value,
    answers_equivalent,
    final_answer,
    judge_math,
    parses_as_answer,
    solver_answer,
    stated_answer,
)
from gra.verify.verifier import VerifySettings

SETTINGS = VerifySettings(limits=SandboxLimits(wall_s=20.0, cpu_s=10))


# --------------------------------------------------------------------------- final answers


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("So the total is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
        ("First \\boxed{1}, then correcting: \\boxed{\\sqrt{\\{2\\}}}", "\\sqrt{{2}}"),
        ("The final answer is 42.", "42"),
        ("Thus the answer is $1,200.", "1200"),
        ("**Answer:** 17 apples", "17"),
        ("Work...\nAnswer: 3.5 cm. Hope it helps!", "3.5"),
        ("#### 72", "72"),
        ("Solving:\nx + 1 = 3\nx = 2", "x = 2"),
        ("The solutions are x = 2 or x = -3.", "x = 2 or x = -3"),
        ("She had 50 dollars and spent 5. So she has $45 left.", "45"),
        ("Hello there.", None),
        ("", None),
    ],
)
def test_final_answer(text: str, answer: str | None) -> None:
    assert final_answer(text) == answer


def test_solver_answer_is_the_last_printed_line() -> None:
    assert solver_answer("working...\n[-3, 2]\n\n") == "[-3, 2]"
    assert solver_answer("Answer: 1,200\n") == "1200"
    assert solver_answer("   \n") is None


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("3/4", "0.75"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{3}{4}", "3/4"),
        ("x = 2", "2"),
        ("$1,200", "1200"),
        ("2(x+1)", "2x+2"),
        ("x^2 + 2x + 1", "(x + 1)**2"),
        ("-3, 2", "x=2 or x=-3"),
        ("[-3, 2]", "x = 2 or x = -3"),
        ("-3.0 2.0", "x = 2, x = -3"),
        ("x = \\pm 2", "2, -2"),
        ("75%", "75"),
        ("75%", "0.75"),
        ("\\sqrt{2}/2", "1/sqrt(2)"),
        ("\\sqrt[3]{8}", "2"),
        ("2\\pi", "2*pi"),
        ("3.14", "pi"),
        ("0.333", "1/3"),
        ("(1, 2)", "\\left(1, 2\\right)"),
        ("45 dollars", "45"),
        ("2^{10}", "1024"),
        ("Yes", "yes"),
    ],
)
def test_equivalent_forms_are_accepted(a: str, b: str) -> None:
    assert answers_equivalent(a, b)
    assert answers_equivalent(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0.74", "0.75"),
        ("2", "-2"),
        ("3", "3.4"),
        ("0.3", "1/3"),
        ("x + 1", "x + 2"),
        ("(1, 2)", "(2, 1)"),
        ("2", "2, 3"),
        ("50%", "0.5%"),
        ("2 3", "6"),
        ("", "0"),
    ],
)
def test_wrong_answers_are_refused(a: str, b: str) -> None:
    assert not answers_equivalent(a, b)
    assert not answers_equivalent(b, a)


def test_junk_neither_raises_nor_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    attacks = [
        f"__import__('os').system('touch {marker}')",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('touch {marker}')",
        f"(lambda: exec(\"open('{marker}', 'w')\"))()",
        f"open('{marker}', 'w')",
        "().__class__.__bases__[0].__subclasses__()",
        "9^9^9^9",
        "10**10**10**10",
        "(10^6)! + 1",
        "x" * 10_000,
        "\\frac{\\frac{\\frac{",
        "}{)(][",
    ]
    started = time.monotonic()
    for attack in attacks:
        assert not parses_as_answer(attack)
        assert not answers_equivalent(attack, "0")
        assert not answers_equivalent("1", attack)
    assert not marker.exists()
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- the verdict


@pytest.fixture(scope="module")
def runs() -> dict[str, SandboxResult]:
    """Real solver programs, run in the real sandbox (it must be there)."""
    problem = sandbox_unavailable()
    assert problem is None, f"the sandbox is unavailable: {problem}"
    programs = {
        "sympy": (
            "import sympy as sp\nx = sp.symbols('x')\n"
            "roots = sp.solve(sp.Eq(x**2 + x, 6), x)\nprint('roots:')\nprint(roots)"
        ),
        "formula": (
            "import math\na, b, c = 1, 1, -6\nd = math.sqrt(b * b - 4 * a * c)\n"
            "print(f'{(-b + d) / (2 * a)}, {(-b - d) / (2 * a)}')"
        ),
        "wrong": "print([2, 3])",
        "crash": "import sympy\nprint(1 / 0)",
        "silent": "x = 5",
    }
    return {name: run_python(source, limits=SETTINGS.limits) for name, source in programs.items()}


def test_solver_programs_really_ran(runs: dict[str, SandboxResult]) -> None:
    assert runs["sympy"].status == "ok" and runs["sympy"].stdout == "roots:\n[-3, 2]\n"
    assert runs["formula"].stdout == "2.0, -3.0\n"
    assert runs["crash"].status == "error" and "ZeroDivisionError" in runs["crash"].stderr


def test_an_agreeing_solver_passes_the_response(runs: dict[str, SandboxResult]) -> None:
    response = "Factoring, (x + 3)(x - 2) = 0, so $x = 2$ or $x = -3$."
    result = judge_math(response, [runs["wrong"], runs["sympy"], runs["crash"]], SETTINGS)
    assert (result.verdict, result.method) == ("passed", "answer")
    assert (result.sets_usable, result.sets_failed) == (2, 1)
    assert "solver 3: error" in result.evidence


def test_agreeing_solvers_fail_a_different_answer(runs: dict[str, SandboxResult]) -> None:
    # One solver deriving the same answer independently is enough to pass.
    response = "The roots are \\boxed{2, 3}."
    trio = [runs["sympy"], runs["formula"], runs["wrong"]]
    assert judge_math(response, trio, SETTINGS).verdict == "passed"
    assert judge_math(response, trio[:2], SETTINGS).verdict == "failed"
    response = "The roots are \\boxed{-2, 3}."
    result = judge_math(response, [runs["sympy"], runs["formula"], runs["wrong"]], SETTINGS)
    assert (result.verdict, result.method) == ("failed", "answer")
    assert (result.sets_usable, result.sets_failed) == (3, 3)
    assert result.evidence.startswith("solvers computed '[-3, 2]' (2 of 3); the response says")
    strict = VerifySettings(min_solver_agreement=3)
    assert judge_math(response, [runs["sympy"], runs["formula"]], strict).verdict == (
        "cannot_verify"
    )


def test_crashed_or_disagreeing_solvers_cannot_verify(runs: dict[str, SandboxResult]) -> None:
    response = "So x = 7."
    crashed = judge_math(response, [runs["crash"], runs["silent"]], SETTINGS)
    assert (crashed.verdict, crashed.method, crashed.sets_usable) == ("cannot_verify", "none", 0)
    assert "ZeroDivisionError" in crashed.evidence and "printed nothing" in crashed.evidence
    split = judge_math(response, [runs["sympy"], runs["wrong"]], SETTINGS)
    assert (split.verdict, split.sets_usable, split.sets_failed) == ("cannot_verify", 2, 2)
    no_answer = judge_math("I am not sure.", [runs["sympy"]], SETTINGS)
    assert (no_answer.verdict, no_answer.reason) == (
        "cannot_verify",
        "no final answer in the response",
    )


def test_an_answer_the_instruction_gives_away_is_not_confirmed_by_agreement() -> None:
    # The default run once kept "5x = 20 ... The answer is x = 10.0." answered 10.0:
    # a solver that printed the instruction's own claim is no independent derivation.
    copied = run_python("print(10.0)", limits=SETTINGS.limits)
    right = run_python("print(20 / 5)", limits=SETTINGS.limits)
    instruction = "Find x in 5x = 20. Subtract 20 from both sides. The answer is x = 10.0."
    response = "The answer is 10.0."
    result = judge_math(response, [copied, right], SETTINGS, instruction)
    assert result.verdict == "cannot_verify"
    assert "states the response's answer" in result.reason
    assert "the instruction says 'x = 10.0'" in result.evidence
    # Without the giveaway the same agreement passes; a question whose numbers
    # merely include the answer is no giveaway (no answer stated outright).
    assert judge_math(response, [copied, right], SETTINGS).verdict == "passed"
    question = "A box holds 10.0 kg. How much do 3 boxes weigh?"
    assert judge_math(response, [copied], SETTINGS, question).verdict == "passed"


def test_a_stated_answer_is_only_one_stated_outright() -> None:
    assert stated_answer("Solve 2x = 4. The answer is x = 2.") == "x = 2"
    assert stated_answer("What is \\boxed{7}?") == "7"
    assert stated_answer("A shirt costs $50 with a 20% discount. What is the price?") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("So Grace is 29 years old.", "29"),
        ("Answer: Daniel gets $35.00 in change.", "35.00"),
        ("Answer: The father is currently 12 years old.", "12"),
        ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("The answer is sqrt(2)/2", "sqrt(2)/2"),
        ("Answer: x = 5", "x = 5"),
        ("Answer: 10%", "10%"),
        # Words around several numbers, or none: no single value.
        ("Answer: 3 hours and 20 minutes", None),
        ("Answer: add(2, 3) returns 5", None),
        ("The function returns True.", None),
        ("def add(a, b):\n    return a + b", None),
    ],
)
def test_the_value_an_answer_states(text: str, value: str | None) -> None:
    assert answer_value(text) == value


def test_a_stated_value_needs_a_marker() -> None:
    assert answer_value("3 * 4 = 12, then 12 + 5", stated=True) is None
    assert answer_value("3 * 4 = 12, then 12 + 5") == "5"
    assert answer_value("12 + 5 = 17.\nAnswer: 17 apples", stated=True) == "17"
