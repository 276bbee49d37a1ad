"""Fleet-written code mended before it runs (gra/verify/repair.py)."""

from __future__ import annotations

from gra.verify.repair import fleet_code


def test_a_json_brace_left_in_the_code_is_dropped() -> None:
    program = "change = 50 - (4 * 3.20 + 2.20)\nprint(change)}"
    assert fleet_code(program) == "change = 50 - (4 * 3.20 + 2.20)\nprint(change)"
    fenced = "```python\ndef f(x):\n    return {x: 1}}\nprint(f(2))}\n```"
    assert fleet_code(fenced) == "def f(x):\n    return {x: 1}\nprint(f(2))"


def test_a_slip_on_the_last_line_does_not_cost_that_line() -> None:
    program = "def f(xs):\n    out = []\n    for x in xs:\n        out.append(x)\n    return out}"
    assert fleet_code(program) == program[:-1]


def test_braces_that_belong_to_the_code_are_kept() -> None:
    program = "d = {'a': {'b': 1}}\nprint(d)"
    assert fleet_code(program) == program
    multiline = "d = {\n    'a': 1,\n}\nprint(d)"
    assert fleet_code(multiline) == multiline
    formatted = 'print(f"{1 + 1}")'
    assert fleet_code(formatted) == formatted


def test_missing_standard_imports_are_added() -> None:
    program = "print(Fraction(3, 4) + Fraction(1, 4))"
    assert fleet_code(program) == "from fractions import Fraction\n" + program
    uses_math = "print(math.sqrt(16))"
    assert fleet_code(uses_math) == "import math\n" + uses_math
    imported = "from fractions import Fraction\nprint(Fraction(1, 2))"
    assert fleet_code(imported) == imported


def test_a_language_tag_without_its_fence_is_dropped() -> None:
    program = "python\n# lay the path\nprint(9 * 4 / 2)}"
    assert fleet_code(program) == "# lay the path\nprint(9 * 4 / 2)"


def test_what_is_not_code_stays_none() -> None:
    assert fleet_code("The answer is 12.") is None
    assert fleet_code("print('unterminated)") is None


def test_code_whose_newlines_were_lost_is_laid_out_again_from_its_indentation() -> None:
    # Inside a JSON string a small model often leaves a newline out and writes
    # only the next line's indentation.
    flat = (
        "def first_even(xs):    for x in xs:        if x % 2 == 0:            return x    return -1"
    )
    assert fleet_code(flat) == (
        "def first_even(xs):\n    for x in xs:\n        if x % 2 == 0:\n"
        "            return x\n    return -1"
    )
    # One space apart, the lines cannot be told: nothing is guessed.
    assert fleet_code("def f(xs): for x in xs: if x: return x return -1") is None
    # Code that compiles is left as it is, double spaces and all.
    spaced = "x = 'a  b'  # two  spaces\nprint(x)"
    assert fleet_code(spaced) == spaced
