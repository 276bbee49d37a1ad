"""Verification by execution of coding and math items.

Coding items run against the instruction's stated examples and the testers'
asserts; math items compare the response's final answer with the solvers'
programs' answers. Everything runs in :mod:`gra.sandbox`.
"""

from gra.verify.code import (
    HarnessRun,
    build_harness,
    extract_python,
    judge_code,
    parse_harness_output,
    stated_examples,
)
from gra.verify.domain import normalise_domain, verifiable_domain
from gra.verify.math_answers import answers_equivalent, final_answer, judge_math, solver_answer
from gra.verify.verifier import VerifySettings, verify, verify_code, verify_math

__all__ = [
    "HarnessRun",
    "VerifySettings",
    "answers_equivalent",
    "build_harness",
    "extract_python",
    "final_answer",
    "judge_code",
    "judge_math",
    "normalise_domain",
    "parse_harness_output",
    "solver_answer",
    "stated_examples",
    "verifiable_domain",
    "verify",
    "verify_code",
    "verify_math",
]
