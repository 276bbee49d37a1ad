"""Math items: the response's final answer, equivalence of two answers, and the
math verdict from the solvers' program runs.

Answers are untrusted text. They are parsed with sympy's ``parse_expr`` (which
evaluates Python) only after a character whitelist, a length cap and a refusal of
``__`` and attribute access, with a namespace that holds nothing but sympy's
number, symbol and function constructors; powers and factorials too large to
evaluate are refused before evaluation.
"""

from __future__ import annotations

import cmath
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    factorial_notation,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

from gra.protocols.roles import VerificationOutput

if TYPE_CHECKING:
    from gra.verify.verifier import VerifySettings

__all__ = ["answers_equivalent", "final_answer", "judge_math", "solver_answer"]

MAX_ANSWER_CHARS = 200

# --------------------------------------------------------------------------- final answers

_SENTENCE_END = re.compile(r"(?<!\d)\.(?=\s|$)|\.(?=\s+[A-Z])|[!?](?=\s|$)")
_MARKERS = [
    re.compile(r"final\s+answer\s*(?:is|:|=)\s*:?\s*(?P<a>[^\n]+)", re.IGNORECASE),
    re.compile(r"\bthe\s+answer\s+is\s*:?\s*(?P<a>[^\n]+)", re.IGNORECASE),
    re.compile(r"\*\*\s*(?:final\s+)?answer\s*:?\s*\*\*\s*:?\s*(?P<a>[^\n]+)", re.IGNORECASE),
    re.compile(r"^\s*(?:final\s+)?answer\s*[:=]\s*(?P<a>[^\n]+)", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s*####\s*(?P<a>[^\n]+)", re.MULTILINE),
]
_LAST_LINE_EQUATION = re.compile(r"^[\W_]*\$*\s*(?P<a>[A-Za-z]\w*\s*=\s*[^=]+?)\s*\$*\s*$")
# "x = 2 or x = -3" at the end of a sentence.
_SOLUTIONS = re.compile(
    r"(?<![\w\\])[A-Za-z]\s*=\s*[^=]+?"
    r"(?:(?:\s*,\s*|\s+(?:or|and)\s+|\s*,\s*(?:or|and)\s+)[A-Za-z]\s*=\s*[^=]+?)*$"
)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_MATH_WORDS = {
    "pi", "sqrt", "oo", "inf", "infinity", "sin", "cos", "tan", "log", "ln", "exp", "or",
    "and", "i", "e", "cot", "sec", "csc", "asin", "acos", "atan", "abs",
}  # fmt: skip
_LEADING_WORDS = re.compile(
    r"^(?:is|are|of|=|:|approximately|approx\.?|about|around|roughly|exactly|≈|~)\s*",
    re.IGNORECASE,
)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the ``{...}`` opening at ``start`` and the index past it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def _last_boxed(text: str) -> str | None:
    found = None
    for match in re.finditer(r"\\(?:boxed|fbox)\s*(?=\{)", text):
        inner = _braced(text, match.end())
        if inner is not None:
            found = inner[0]
    return found


def _first_sentence(text: str) -> str:
    match = _SENTENCE_END.search(text)
    return text[: match.start()] if match else text


def _strip_units(text: str) -> str:
    """``45 dollars`` -> ``45``: words after a number that are no math word."""
    match = re.match(
        r"^(?P<v>.*?\d(?:[\d.]*\d)?\s*%?)\s*(?P<tail>[A-Za-z][A-Za-z\s.'/^²³-]*)$", text
    )
    if match:
        words = re.findall(r"[A-Za-z]+", match.group("tail"))
        if (
            words
            and all(len(w) > 1 for w in words)
            and not _MATH_WORDS & {w.lower() for w in words}
        ):
            return match.group("v").strip()
    return text


def _tidy(text: str) -> str:
    """An answer without decoration: markdown, $ signs, thousands commas, units and
    the trailing period."""
    text = text.strip()
    boxed = _last_boxed(text)
    if boxed is not None:
        text = boxed
    text = text.replace("`", "")
    bold = re.match(r"^\*\*([^*]+)\*\*(.*)$", text)  # markdown bold, not a power
    if bold:
        text = bold.group(1) + bold.group(2)
    text = re.sub(r"^\*\*\s*|\s*\*\*$", "", text)
    text = re.sub(r"\\text\{\s*([^{}]*)\}", r" \1 ", text)
    text = re.sub(r"\\(?:left|right)\b\s*", "", text).replace("\\{", "{").replace("\\}", "}")
    text = re.sub(r"\\[$%]", lambda m: m.group(0)[1], text).replace("$", "")
    text = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", text.strip())
    text = _THOUSANDS.sub("", text)
    text = text.strip().rstrip(".;:!,").strip()
    previous = None
    while previous != text:
        previous = text
        text = _LEADING_WORDS.sub("", text).strip()
    text = re.sub(r"\s*(?:\^\s*\\circ|°|\\circ|\^\{\\circ\})", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return _strip_units(text).rstrip(".").strip()


def stated_answer(text: str) -> str | None:
    """An answer ``text`` states outright (a ``\\boxed{}``, or "the answer is ..." and
    the other markers ``final_answer`` reads), never one guessed from its last
    number; None when it states none."""
    if not text or not text.strip():
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return _tidy(boxed) or None
    stated = [(m.start(), m.group("a")) for pattern in _MARKERS for m in pattern.finditer(text)]
    if not stated:
        return None
    return _tidy(_first_sentence(max(stated)[1].strip())) or None


def final_answer(text: str) -> str | None:
    """The response's final answer: the last ``\\boxed{}``, else the last "final
    answer is / the answer is / **Answer:** / ####" statement, else an ``x = ...``
    last line, else the last number in the final sentence. None when there is none."""
    if not text or not text.strip():
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return _tidy(boxed) or None
    best: tuple[int, str] | None = None
    for pattern in _MARKERS:
        for match in pattern.finditer(text):
            if best is None or match.start() >= best[0]:
                best = (match.start(), match.group("a"))
    if best is not None:
        answer = _tidy(_first_sentence(best[1].strip()))
        if answer:
            return answer
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    equation = _LAST_LINE_EQUATION.match(last)
    if equation and len(last) <= 120:
        return _tidy(equation.group("a"))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=\S)", last) if s.strip()]
    final = sentences[-1] if sentences else ""
    solution = _SOLUTIONS.search(final.replace("$", "").rstrip(" ."))
    if solution and len(solution.group(0)) <= 120 and parses_as_answer(solution.group(0)):
        return _tidy(solution.group(0))
    numbers = _NUMBER.findall(final)
    if numbers:
        return _tidy(numbers[-1]) or None
    return None


_WORD = re.compile(r"[A-Za-z]{2,}")
# Words that may stand in a value: math names and LaTeX commands.
_VALUE_WORDS = _MATH_WORDS | {"frac", "dfrac", "tfrac", "cdot", "times", "left", "right", "div"}


def answer_value(text: str, *, stated: bool = False) -> str | None:
    """The value ``text``'s final answer (``final_answer``; ``stated``: only one it
    states outright, ``stated_answer``) gives, when it gives one: an answer in words
    around one number ("The father is 12") is that number; one in words with
    several numbers, or none, gives no single value (None), nor does text that does
    not read as a number or an expression."""
    answer = stated_answer(text) if stated else final_answer(text)
    if answer is None:
        return None
    words = [w for w in _WORD.findall(answer) if w.lower() not in _VALUE_WORDS]
    if words:
        numbers = _NUMBER.findall(answer)
        if len(numbers) != 1:
            return None
        answer = _tidy(numbers[0])
    return answer if answer and parses_as_answer(answer) else None


def solver_answer(stdout: str) -> str | None:
    """A solver program's answer: its last non-empty output line (a leading
    "Answer:" or "The answer is" is dropped)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1].strip()
    for pattern in _MARKERS:
        match = pattern.search(line)
        if match:
            line = match.group("a")
            break
    return _tidy(line) or None


# --------------------------------------------------------------------------- parsing

_TRANSFORMS = (
    *standard_transformations,
    implicit_multiplication_application,
    convert_xor,
    factorial_notation,
)
_FUNCTIONS: dict[str, Any] = {
    "sqrt": sympy.sqrt,
    "pi": sympy.pi,
    "oo": sympy.oo,
    "inf": sympy.oo,
    "infinity": sympy.oo,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "cot": sympy.cot,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "log": sympy.log,
    "ln": sympy.log,
    "exp": sympy.exp,
    "abs": sympy.Abs,
    "binomial": sympy.binomial,
    "factorial": sympy.factorial,
    "E": sympy.E,
    "e": sympy.E,
    "I": sympy.I,
}
# What the transformed code may name besides _FUNCTIONS; no builtins at all.
_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "Integer": sympy.Integer,
    "Float": sympy.Float,
    "Rational": sympy.Rational,
    "Symbol": sympy.Symbol,
    "Function": sympy.Function,
    "factorial": sympy.factorial,
    "factorial2": sympy.factorial2,
    # evaluate=False spells operators as constructors
    "Add": sympy.Add,
    "Mul": sympy.Mul,
    "Pow": sympy.Pow,
    "Eq": sympy.Eq,
    "Ne": sympy.Ne,
    "Lt": sympy.Lt,
    "Le": sympy.Le,
    "Gt": sympy.Gt,
    "Ge": sympy.Ge,
}
_SAFE_CHARS = re.compile(r"^[0-9A-Za-z\s+\-*/^().,!<>=|_]*$")
_ATTRIBUTE = re.compile(r"[A-Za-z_)\]]\s*\.\s*[A-Za-z_]")
_LATEX = [
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)\b\.?"), ""),
    (re.compile(r"\\[,;:! ]|\\q?quad\b|~"), " "),
    (re.compile(r"\\(?:cdot|times|ast)\b"), "*"),
    (re.compile(r"\\div\b"), "/"),
    (re.compile(r"\\pi\b"), "pi"),
    (re.compile(r"\\infty\b"), "oo"),
    (re.compile(r"\\(?:ln|log|sin|cos|tan|cot|sec|csc|exp)\b"), lambda m: m.group(0)[1:]),
    (re.compile(r"\\(?:le|leq)\b"), "<="),
    (re.compile(r"\\(?:ge|geq)\b"), ">="),
    (re.compile(r"\\(?:neq|ne)\b"), "!="),
    (re.compile(r"\\mp\b"), "∓"),
    (re.compile(r"\\pm\b"), "±"),
    (re.compile(r"\\(?:mathrm|mathbf|textbf|operatorname)\s*"), ""),
]
_UNICODE = {
    "\u00d7": "*",  # multiplication sign
    "\u00b7": "*",  # middle dot
    "\u00f7": "/",
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash
    "\u03c0": "pi",
    "\u00b2": "^2",
    "\u00b3": "^3",
    "\u221a": "sqrt",
    "\u221e": "oo",
    "\u2264": "<=",
    "\u2265": ">=",
}


def _latex_to_text(text: str) -> str:
    """LaTeX-lite: fractions, roots, binomials and common commands to plain syntax."""
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)  # type: ignore[arg-type]
    for old, new in _UNICODE.items():
        text = text.replace(old, new)
    text = re.sub(r"\\[dt]?frac\s*(\d)\s*(\d)", r"((\1)/(\2))", text)
    for _ in range(20):
        match = re.search(r"\\(?:[dt]?frac|binom)\s*(?=\{)|\\sqrt\s*(?=[\[{])", text)
        if not match:
            break
        command = match.group(0).strip()
        index = match.end()
        root = None
        if command == "\\sqrt" and text[index] == "[":
            close = text.find("]", index)
            if close < 0:
                return text
            root, index = text[index + 1 : close], close + 1
        first = _braced(text, index)
        if first is None:
            return text
        if command == "\\sqrt":
            inner = f"(({first[0]})**(1/({root})))" if root else f"sqrt({first[0]})"
            text = text[: match.start()] + inner + text[first[1] :]
            continue
        second = _braced(text, first[1])
        if second is None:
            return text
        if command == "\\binom":
            inner = f"binomial({first[0]},{second[0]})"
        else:
            inner = f"(({first[0]})/({second[0]}))"
        text = text[: match.start()] + inner + text[second[1] :]
    text = re.sub(r"\\sqrt\s*(\w+)", r"sqrt(\1)", text)
    return text.replace("{", "(").replace("}", ")")


@dataclass(frozen=True)
class _Item:
    """One value of an answer; percentages also stand for their hundredth."""

    value: Any
    percent: bool = False
    equation: bool = False
    decimals: int | None = None  # digits after the point when written as a plain decimal


@dataclass(frozen=True)
class _Answer:
    items: tuple[_Item, ...]
    ordered: bool


def _too_big(expr: Any) -> bool:
    """Powers and factorials whose evaluation could exhaust time or memory."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow):
            # Every nested power is visited too; a float estimate of each exponent
            # is cheap even for a tower.
            if node.exp.is_number and abs(complex(sympy.N(node.exp, 15))) > 4000:
                return True
        elif isinstance(node, sympy.factorial | sympy.factorial2):
            if node.args[0].is_number and abs(complex(node.args[0])) > 1000:
                return True
        elif isinstance(node, sympy.Integer) and abs(int(node)) > 10**400:
            return True
    return False


def _sympify(text: str) -> Any:
    """A sympy expression for ``text``, or None when it is unsafe or does not parse."""
    text = text.strip()
    if (
        not text
        or len(text) > MAX_ANSWER_CHARS
        or "__" in text
        or not _SAFE_CHARS.match(text)
        or _ATTRIBUTE.search(text)
        or re.search(r"\b(lambda|import|exec|eval|open|getattr|globals|locals)\b", text)
    ):
        return None
    text = text.replace("^", "**")
    try:
        raw = parse_expr(
            text,
            local_dict=dict(_FUNCTIONS),
            global_dict=dict(_GLOBALS),
            transformations=_TRANSFORMS,
            evaluate=False,
        )
        if not isinstance(raw, sympy.Basic) or _too_big(raw):
            return None
        value = parse_expr(
            text,
            local_dict=dict(_FUNCTIONS),
            global_dict=dict(_GLOBALS),
            transformations=_TRANSFORMS,
        )
    except Exception:
        return None
    if not isinstance(value, sympy.Expr):
        return None
    return value


def _split_top(text: str, separators: re.Pattern[str]) -> list[str]:
    """``text`` split at ``separators`` outside brackets."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            match = separators.match(text, i)
            if match:
                parts.append(text[start:i])
                start = i = match.end()
                continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_PLAIN = r"-?\d+(?:\.\d+)?(?:/\d+)?"
_NUMBER_LIST = re.compile(rf"{_PLAIN}(?:\s+{_PLAIN})+")
_ITEM_SEPARATOR = re.compile(r"\s*(?:,|;|\bor\b|\band\b|\n)\s*", re.IGNORECASE)


def _wrapped(text: str) -> str | None:
    """The bracket pair wrapping all of ``text`` ("()", "[]" or "{}"), if any."""
    if len(text) < 2 or text[0] not in "([{" or {"(": ")", "[": "]", "{": "}"}[text[0]] != text[-1]:
        return None
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return None
    return text[0] + text[-1]


def _items(text: str) -> list[_Item] | None:
    """The values one element of an answer stands for (``a ± b`` is two)."""
    text = text.strip()
    text = re.sub(r"^[A-Za-z]\w*\s*(?:\(\s*\w+\s*\))?\s*(?::|≈|=(?!=))\s*(?=[^=]*$)", "", text)
    equation = False
    if re.search(r"(?<![<>!=])=(?!=)", text):
        left, _, right = text.rpartition("=")
        if re.search(r"[A-Za-z]", right):
            text, equation = f"({left}) - ({right})", True
        else:
            text = right
    text = text.strip()
    if "±" in text or "∓" in text:
        plus = text.replace("±", "+").replace("∓", "-")
        minus = text.replace("±", "-").replace("∓", "+")
        first, second = _items(plus), _items(minus)
        return None if first is None or second is None else [*first, *second]
    percent = text.endswith("%")
    if percent:
        text = text[:-1].strip()
    if "%" in text:
        return None
    decimals = None
    plain = re.fullmatch(r"-?\d+\.(\d+)", text)
    if plain:
        decimals = len(plain.group(1))
    value = _sympify(text)
    if value is None:
        return None
    return [_Item(value, percent, equation, decimals)]


def _parse_answer(text: str) -> _Answer | None:
    text = _tidy(text)
    wrapped = _wrapped(text)
    ordered = False
    if wrapped and ("," in text or wrapped == "{}"):
        ordered = wrapped in ("()", "[]")
        text = text[1:-1]
    text = _latex_to_text(text)
    if not text:
        return None
    items: list[_Item] = []
    parts = []
    for part in _split_top(text, _ITEM_SEPARATOR):
        # "-3.0 2.0" (a program printing several values) lists numbers, not a product.
        parts.extend(part.split() if _NUMBER_LIST.fullmatch(part) else [part])
    for part in parts:
        parsed = _items(part)
        if parsed is None:
            return None
        items.extend(parsed)
    if not items:
        return None
    return _Answer(tuple(items), ordered)


# --------------------------------------------------------------------------- equivalence


def _complex(value: Any) -> complex | None:
    try:
        number = complex(sympy.N(value, 30))
    except Exception:
        return None
    if not (cmath.isfinite(number)):
        return None
    return number


def _close(x: complex, y: complex, rel_tol: float) -> bool:
    return abs(x - y) <= max(rel_tol * max(abs(x), abs(y)), 1e-9)


def _rounded_to(item: _Item, other: _Item, x: complex, y: complex) -> bool:
    """``item`` (a decimal with at least two places) is ``other`` rounded."""
    if item.decimals is None or item.decimals < 2:
        return False
    if other.decimals is not None and other.decimals <= item.decimals:
        return False
    return abs(x - y) <= 0.5 * 10 ** (-item.decimals) + 1e-12


_POINTS = random.Random(20240531)
_SAMPLES = [[_POINTS.uniform(-2.5, 2.5) for _ in range(8)] for _ in range(5)]


def _values_equal(a: Any, b: Any, rel_tol: float) -> bool:
    """Exactly equal, numerically close, or (with free symbols) equal at random points."""
    try:
        if a == b:
            return True
    except Exception:
        pass
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols:
        x, y = _complex(a), _complex(b)
        return x is not None and y is not None and _close(x, y, rel_tol)
    if len(symbols) > 8:
        return False
    agreed = 0
    for sample in _SAMPLES:
        point = {
            s: sympy.Float(v + 0.1 * k)
            for k, (s, v) in enumerate(zip(symbols, sample, strict=False))
        }
        x, y = _complex(a.subs(point)), _complex(b.subs(point))
        if x is None or y is None:
            continue
        if not _close(x, y, max(rel_tol, 1e-9)):
            return False
        agreed += 1
    return agreed >= 3


def _items_equal(a: _Item, b: _Item, rel_tol: float) -> bool:
    if a.equation != b.equation:
        return False
    if a.equation:
        return _values_equal(a.value, b.value, rel_tol) or _values_equal(a.value, -b.value, rel_tol)
    if a.percent and b.percent:
        pairs = [(a.value, b.value)]
    elif a.percent:
        pairs = [(a.value, b.value), (a.value / 100, b.value)]
    elif b.percent:
        pairs = [(a.value, b.value), (a.value, b.value / 100)]
    else:
        pairs = [(a.value, b.value)]
    for x, y in pairs:
        if _values_equal(x, y, rel_tol):
            return True
        if not (x.free_symbols or y.free_symbols):
            cx, cy = _complex(x), _complex(y)
            if (
                cx is not None
                and cy is not None
                and (_rounded_to(a, b, cx, cy) or _rounded_to(b, a, cy, cx))
            ):
                return True
    return False


def _plain_text(text: str) -> str:
    text = _tidy(text).lower()
    text = re.sub(r"^\((\w)\)$", r"\1", text)
    return re.sub(r"\s+", "", text)


def answers_equivalent(a: str, b: str, *, rel_tol: float = 1e-6) -> bool:
    """Whether two final answers say the same thing.

    Equal after tidying (units, $, thousands commas dropped), or equal as values:
    integers, decimals, fractions (3/4 == 0.75 == \\frac{3}{4}), roots, pi, and
    expressions up to symbolic equivalence (checked numerically at random points).
    ``x = 2`` is ``2``; answers of several values ("x = 2 or x = -3", "-3, 2")
    compare as sets, as tuples when both are bracketed. A percentage compared with
    a plain number matches either the same number or its hundredth (75% == 75 and
    75% == 0.75): responses use both readings, and a wrong answer rarely hits
    either. A decimal with at least two places also matches a more precise value
    it rounds (3.14 == pi), since responses round. Unparseable or unsafe text
    only matches itself.
    """
    try:
        if not a or not b:
            return False
        if _plain_text(a) == _plain_text(b) and _plain_text(a):
            return True
        left, right = _parse_answer(a), _parse_answer(b)
        if left is None or right is None:
            return False
        if left.ordered and right.ordered:
            return len(left.items) == len(right.items) and all(
                _items_equal(x, y, rel_tol) for x, y in zip(left.items, right.items, strict=True)
            )
        return all(
            any(_items_equal(x, y, rel_tol) for y in right.items) for x in left.items
        ) and all(any(_items_equal(x, y, rel_tol) for x in left.items) for y in right.items)
    except Exception:
        return False


def parses_as_answer(text: str) -> bool:
    """Whether ``text`` reads as a numeric or symbolic answer."""
    try:
        return _parse_answer(text) is not None
    except Exception:
        return False


# --------------------------------------------------------------------------- the verdict


class RunResult(Protocol):
    """What judge_math needs of a sandbox result."""

    status: str
    stdout: str
    stderr: str
    reason: str


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 3)] + "..."


def _program_line(index: int, result: RunResult, answer: str | None) -> str:
    if result.status == "ok":
        what = f"printed {answer!r}" if answer is not None else "printed nothing"
        return f"solver {index + 1}: {what}"
    tail = (result.stderr.strip().splitlines() or [result.reason or ""])[-1]
    return f"solver {index + 1}: {result.status} ({_cut(tail.strip(), 160)})"


def judge_math(
    response: str,
    solver_results: Sequence[RunResult],
    settings: VerifySettings,
    instruction: str = "",
) -> VerificationOutput:
    """The math verdict.

    - no final answer in the response -> cannot_verify;
    - the instruction states the response's answer itself ("... The answer is
      x = 10.") -> cannot_verify: a solver that agrees may have copied it, so
      agreement is no independent derivation (a solver majority for another
      answer still fails the item);
    - passed when any solver's answer (the last line a successful program printed)
      is equivalent to the response's: two independent derivations agree;
    - failed when at least ``min_solver_agreement`` solver answers agree with each
      other and none agrees with the response;
    - otherwise cannot_verify (solvers crashed or disagree).
    """
    answer = final_answer(response)
    if answer is None:
        return VerificationOutput("cannot_verify", "none", "no final answer in the response")
    answers = [solver_answer(r.stdout) if r.status == "ok" else None for r in solver_results]
    lines = [
        _program_line(i, r, a) for i, (r, a) in enumerate(zip(solver_results, answers, strict=True))
    ]
    usable = [a for a in answers if a is not None]
    agreeing = [a for a in usable if answers_equivalent(a, answer)]
    counts = {"sets_usable": len(usable), "sets_failed": len(usable) - len(agreeing)}
    details = "\n".join(lines)

    def cut(text: str) -> str:
        return _cut(text, settings.evidence_chars)

    given = stated_answer(instruction)
    if agreeing and given is not None and answers_equivalent(given, answer):
        return VerificationOutput(
            "cannot_verify",
            "answer",
            "the instruction states the response's answer itself: agreeing solvers may "
            "have copied it",
            cut(f"the instruction says {given!r}; the response says {answer!r}\n{details}"),
            **counts,
        )
    if agreeing:
        return VerificationOutput(
            "passed",
            "answer",
            f"{len(agreeing)} of {len(solver_results)} solvers computed the response's answer",
            cut(f"the response says {answer!r}\n{details}"),
            **counts,
        )
    clusters: list[list[str]] = []
    for value in usable:
        for cluster in clusters:
            if answers_equivalent(cluster[0], value):
                cluster.append(value)
                break
        else:
            clusters.append([value])
    biggest = max(clusters, key=len) if clusters else []
    if len(biggest) >= settings.min_solver_agreement:
        return VerificationOutput(
            "failed",
            "answer",
            f"{len(biggest)} of {len(solver_results)} solvers agree on another answer",
            cut(
                f"solvers computed {biggest[0]!r} ({len(biggest)} of {len(solver_results)}); "
                f"the response says {answer!r}\n{details}"
            ),
            **counts,
        )
    why = (
        "no solver program printed an answer"
        if not usable
        else ("the solvers disagree with the response and with each other")
    )
    return VerificationOutput(
        "cannot_verify", "answer" if usable else "none", why,
        cut(f"the response says {answer!r}\n{details}"), **counts,
    )  # fmt: skip
