"""A worked answer's own computations checked (gra/verify/arithmetic.py)."""

# ruff: noqa: RUF001  (typeset operators are the test data)

from __future__ import annotations

import pytest

from gra.verify.arithmetic import false_steps

HOLDS = [
    "Change: 264 - 240 = 24. As a percentage: 24 / 240 * 100 = 10%.",
    "Total work: 9 × 4 = 36 worker-days; with 2 workers: 36 ÷ 2 = 18 days.",
    "1/12 + 1/24 = 2/24 + 1/24 = 3/24 = 1/8 of the job per hour.",
    "Sum = 13 × (5 + 89) ÷ 2 = 611.",
    "40% of $180 is $72, so the sale price is $180 - $72 = $108.",
    "100 / 3 = 33.33, and 22 / 7 = 3.14 to two places.",
    "3/4 = 75%, and 0.2 × 100 = 20%.",
    "The tickets cost 5 * $5.70 = $28.50; $1,250 × 0.08 = $100.",
    "2^10 = 1024 and 0.1 + 0.2 = 0.3.",
    "7 / 2 = 3 full boxes with 1 left over.",
    "**Step 1:** 9 × 4 = 36",
    "-12 + 8 = -4, and 2 × 3 = 6 = 12 / 2.",
    "1,5 × 2 = 3 (decimal comma).",
]
ALGEBRA_AND_PROSE = [
    "Let the son's age be c: 3c + 4 = 2(c + 4) = 2c + 8, so c = 4.",
    "2x + 3 = 7, so 2x = 4 and x = 2.",
    "x + 4 = 2x gives x = 4.",
    "1/2 hour = 30 minutes; 1 km = 1000 m; $1.50 = 150 cents.",
    "√16 + 1 = 5 and 5! = 120 and π × 2² = 12.57.",
    "At 1:30 + 0:45 = 2:15 the train leaves.",
    "2(3 + 4) = 14 and 5x3=15.",
    "In 1990 there were 3 = three parties.",
]
FALSE = [
    ("Change: 264 - 240 = 12.", "264 - 240 = 12", "24"),
    ("Total work: 9 × 4 = 38 worker-days.", "9 * 4 = 38", "36"),
    ("1/12 + 1/24 = 3/24 + 1/24 = 4/24", "1/12 + 1/24 = 3/24 + 1/24", "0.125"),
    ("40% of $180 is $70, so ...", "40% of 180 is 70", "72"),
    ("As a percentage: 24 / 240 * 100 = 5%.", "24 / 240 * 100 = 5%", "10"),
    ("**Answer:** 0.55 × 60 = 43 minutes", "0.55 * 60 = 43", "33"),
]


@pytest.mark.parametrize("text", HOLDS)
def test_true_computations_hold(text: str) -> None:
    assert false_steps(text) == []


@pytest.mark.parametrize("text", ALGEBRA_AND_PROSE)
def test_algebra_and_prose_are_left_alone(text: str) -> None:
    assert false_steps(text) == []


@pytest.mark.parametrize(("text", "claim", "actual"), FALSE)
def test_false_computations_are_found(text: str, claim: str, actual: str) -> None:
    (step,) = false_steps(text)
    assert (step.claim, step.actual) == (claim, actual)
