"""The computations a worked math answer states, checked.

A response that writes ``9 * 4 = 38`` or ``40% of $180 is $70`` is wrong
whatever its final answer: a training item must not teach a false step. Only
plain numeric claims are checked (numbers, + - * / ^ and their typeset forms,
parentheses, a percent sign, currency), never anything with a variable in it:
a run of arithmetic that touches a letter (``3c + 4 = 2c + 8``) is algebra and
is left alone. A stated result may be rounded: ``100 / 3 = 33.3`` holds, to
the places it shows.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["FalseStep", "false_steps"]

# Typeset operators: times, middle dot, multiplication x, division, minus, en dash.
_SYMBOLS = str.maketrans(
    {"\u00d7": "*", "\u00b7": "*", "\u2715": "*", "\u00f7": "/", "\u2212": "-", "\u2013": "-"}
)
_CURRENCY = re.compile(r"[$€£]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d{1,2}(?!\d))")
_BOLD = re.compile(r"\*\*|__")
_SPACED_TIMES = re.compile(r"(?<=[\d)])\s+[xX]\s+(?=[\d(])")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|[:;,!?\n]")
# A run of arithmetic: numbers, operators, parentheses, percent signs, '='.
_RUN = re.compile(r"[\d.()+\-*/^%= ]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?%?")
_PERCENT_OF = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s*%\s+of\s+(\d+(?:\.\d+)?)\s+(?:is|=|equals)\s+(\d+(?:\.\d+)?)(?![\w])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FalseStep:
    claim: str  # as the response wrote it (normalised symbols)
    actual: str  # what the left side really is


def _evaluate(expression: str) -> Fraction | None:
    """The exact value of a plain arithmetic expression, or None."""
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    return _value(tree.body)


def _value(node: ast.AST) -> Fraction | None:
    match node:
        case ast.Constant(value=int() | float() as number) if not isinstance(number, bool):
            return Fraction(str(number))
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            inner = _value(operand)
            return None if inner is None else -inner
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _value(left), _value(right)
            if a is None or b is None:
                return None
            match op:
                case ast.Add():
                    return a + b
                case ast.Sub():
                    return a - b
                case ast.Mult():
                    return a * b
                case ast.Div():
                    return None if b == 0 else a / b
                case ast.Pow() if b.denominator == 1 and 0 <= b <= 12 and abs(a) < 10**6:
                    return a ** int(b)
    return None


def _decimals(literal: str) -> int:
    return len(literal.split(".")[1]) if "." in literal else 0


@dataclass(frozen=True)
class _Side:
    text: str
    value: Fraction
    computed: bool  # has an operator (a computation, not a bare number)
    places: int | None  # decimal places shown, for a bare number
    percent: bool  # a bare number with a percent sign


def _side(text: str) -> _Side | None:
    text = text.strip()
    if not text or not any(c.isdigit() for c in text):
        return None
    if text[0] in "+*/^" or text[-1] in "+-*/^(":
        return None  # it continues something outside the run
    bare = _NUMBER.fullmatch(text)
    if bare:
        number = text.rstrip("%")
        return _Side(text, Fraction(number), False, _decimals(number), text.endswith("%"))
    if "%" in text:
        return None  # "40% * 180": what the percent binds to is not plain
    value = _evaluate(text)
    if value is None:
        return None
    return _Side(text, value, True, None, False)


def _holds(left: _Side, right: _Side) -> bool:
    if left.value == right.value:
        return True
    for computed, stated in ((left, right), (right, left)):
        if stated.places is None:
            continue
        tolerance = Fraction(1, 2 * 10**stated.places)
        values = [computed.value]
        if stated.percent:
            values.append(computed.value * 100)  # 3/4 = 75%
        if any(abs(v - stated.value) <= tolerance for v in values):
            return True
    return False


def _shown(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def _free(neighbour: str, brackets: str) -> bool:
    """A run's neighbour that ends it cleanly: space or punctuation, not a letter,
    a digit-like symbol (²), or an operator it cannot show (√, π, !)."""
    return neighbour.isspace() or neighbour in "\"'`,.;:?" + brackets


def _runs(text: str) -> Iterator[tuple[str, bool, bool]]:
    """Each run of arithmetic with whether a letter touches its start or its end."""
    for match in _RUN.finditer(text):
        run = match.group()
        start = match.start() + len(run) - len(run.lstrip())
        end = match.end() - len(run) + len(run.rstrip())
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        yield run.strip(), not _free(before, "([{"), not _free(after, ")]}")


def _normalise(text: str) -> str:
    text = _BOLD.sub(" ", text.translate(_SYMBOLS))
    text = _CURRENCY.sub("", text)
    text = _DECIMAL_COMMA.sub(".", _THOUSANDS.sub("", text))
    return _SPACED_TIMES.sub(" * ", text)


def false_steps(response: str) -> list[FalseStep]:
    """The plain numeric claims in ``response`` that do not hold."""
    found: list[FalseStep] = []
    for sentence in _SENTENCE_END.split(_normalise(response)):
        for run, glued_start, glued_end in _runs(sentence):
            if "=" not in run:
                continue
            parts = run.split("=")
            if glued_start:
                parts = parts[1:]
            if glued_end:
                parts = parts[:-1]
            sides = [_side(p) for p in parts]
            for left, right in itertools.pairwise(sides):
                if left is None or right is None or not (left.computed or right.computed):
                    continue
                if not _holds(left, right):
                    shown = left if left.computed else right
                    found.append(FalseStep(f"{left.text} = {right.text}", _shown(shown.value)))
        for match in _PERCENT_OF.finditer(sentence):
            rate, base, stated = (Fraction(g) for g in match.groups())
            actual = rate * base / 100
            places = _decimals(match.group(3))
            if abs(actual - stated) > Fraction(1, 2 * 10**places):
                found.append(FalseStep(match.group(0), _shown(actual)))
    return found
