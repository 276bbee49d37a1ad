"""Which items can be verified by execution: coding and math, given or recognised.

``gra review`` sees pairs that carry no domain, so the content must tell: code
that defines something (or an instruction asking for a Python function) makes a
coding item; a math problem with a numeric or symbolic final answer a math item.
"""

from __future__ import annotations

import ast
import re
from typing import Literal

from gra.verify.code import extract_python
from gra.verify.math_answers import final_answer, parses_as_answer

__all__ = ["normalise_domain", "verifiable_domain"]

VerifiableDomain = Literal["coding", "math"]

_CODING_LABELS = {
    "coding", "code", "programming", "python", "software", "codegen", "code generation",
    "code_generation", "computer science", "cs", "algorithms", "algorithm",
}  # fmt: skip
_MATH_LABELS = {
    "math", "maths", "mathematics", "arithmetic", "algebra", "geometry", "calculus",
    "number theory", "probability", "statistics", "math word problem", "word problem",
    "gsm8k", "competition math",
}  # fmt: skip

_ASKS_FOR_CODE = re.compile(
    r"\b(?:write|implement|create|define|complete|code|fix|finish)\b[^.?!\n]{0,60}?"
    r"\b(?:python\s+)?(?:function|method|class|program|script|code)\b"
    r"|\bin\s+python\b|\bpython\s+(?:function|program|script|code|class)\b|\bdef\s+\w+\s*\(",
    re.IGNORECASE,
)
_MATH_WORDS = re.compile(
    r"\b(?:solve|calculate|compute|evaluate|simplify|find|determine|how\s+many|how\s+much|"
    r"what\s+is|total|sum|product|difference|quotient|remainder|percent(?:age)?|ratio|"
    r"probability|equation|integral|derivative|area|perimeter|volume|average|mean|"
    r"factor|prime|divisible|fraction)\b|[=^]|\\frac|\\sqrt",
    re.IGNORECASE,
)
# A question after a quantity: word problems often ask one with no textbook word.
_ASKS_QUANTITY = re.compile(
    r"\bhow\s+(?:old|long|far|fast|many|much|tall|high|heavy|wide|deep|big|large|often|"
    r"soon|early|late)\b|\bcosts?\b|\bprice[ds]?\b|\badd\s+up\b|\bsequence\b|\bseries\b|"
    r"\bper\b|\btimes\s+as\b|\btwice\b|\bhalf\b|\brate\b|\bspeed\b|\binterest\b|"
    r"\b(?:increase|decrease|discount|reduc)e?[ds]?\b|%",
    re.IGNORECASE,
)
_EQUATION = re.compile(r"[\w)]\s*[=<>]\s*[-\w(]")
_NUMBER = re.compile(r"\d")


def normalise_domain(label: str | None) -> VerifiableDomain | None:
    """``coding`` or ``math`` for a label that means one of them, else None."""
    if not label:
        return None
    key = " ".join(label.strip().lower().replace("-", " ").split())
    if key in _CODING_LABELS or key.replace(" ", "_") in _CODING_LABELS:
        return "coding"
    if key in _MATH_LABELS:
        return "math"
    return None


def _defines_something(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in ast.walk(tree)
    )


def _is_math_problem(instruction: str) -> bool:
    """Numbers and a math word or a quantity question, or numbers, a question and an equation."""
    numbers = len(_NUMBER.findall(instruction))
    asks = "?" in instruction or bool(_MATH_WORDS.search(instruction))
    quantity = _MATH_WORDS.search(instruction) or _ASKS_QUANTITY.search(instruction)
    return bool(numbers and quantity) or (
        numbers >= 2 and asks and bool(_EQUATION.search(instruction))
    )


def verifiable_domain(
    instruction: str, response: str, given: str | None
) -> VerifiableDomain | None:
    """The domain to verify an item as, or None when it is neither.

    A given label that means coding or math says which, but the content must be
    checkable: coding needs Python code in the response that defines a function
    or class (what tests call), math a final numeric or symbolic answer. Without a
    label, the content decides alone: such code, or an instruction asking for
    Python code, makes it coding; a math problem with such an answer makes it math.
    So no tester or solver is asked about what execution cannot check (a SQL
    query, prose, a response with no answer).
    """
    label = normalise_domain(given)
    code = extract_python(response)
    testable = code is not None and _defines_something(code)
    answer = final_answer(response)
    answered = answer is not None and parses_as_answer(answer)
    if label is not None:
        return label if (testable if label == "coding" else answered) else None
    if testable or _ASKS_FOR_CODE.search(instruction):
        return "coding"
    if _is_math_problem(instruction) and answered:
        return "math"
    return None
