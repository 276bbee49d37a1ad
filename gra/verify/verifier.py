"""The verifier's entry point: run a coding or math item in the sandbox and judge it.

The judge sees only the item and what the testers and solvers wrote from its
instruction; it never sees a benchmark's own tests or labels.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from dataclasses import dataclass, field, replace

from gra.protocols.roles import VerificationOutput, VerifyRequest
from gra.sandbox import SandboxLimits, SandboxResult, run_python_async
from gra.verify.arithmetic import false_steps
from gra.verify.code import (
    HarnessRun,
    build_harness,
    extract_python,
    given_functions,
    judge_code,
    parse_harness_output,
    tests_only_given,
)
from gra.verify.code import stated_examples as _stated_examples
from gra.verify.differential import reconcile
from gra.verify.domain import normalise_domain
from gra.verify.math_answers import judge_math
from gra.verify.repair import fleet_code

__all__ = ["VerifySettings", "verify"]

# Room the harness leaves the sandbox's own wall clock: interpreter start-up and
# teardown, so the harness stops starting tests before the sandbox kills it.
_WALL_MARGIN_S = 1.5
# The instruction names None as an outcome: raising instead is then a wrong answer.
_NAMES_NONE = re.compile(r"\bNone\b")


@dataclass(frozen=True)
class VerifySettings:
    """How verification runs.

    ``limits`` bound each sandbox run (the harness with all tests is one run;
    each solver program is one run). ``test_timeout_s`` bounds each assert
    inside the harness; ``test_agreement`` is the fraction of usable test sets
    that must fail to fail an item; ``min_solver_agreement`` how many solvers
    must agree on another answer to fail a math item.
    """

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    test_timeout_s: float = 2.0
    test_agreement: float = 0.5
    min_solver_agreement: int = 2
    evidence_chars: int = 1500

    @classmethod
    def for_request(
        cls, request: VerifyRequest, limits: SandboxLimits | None = None
    ) -> VerifySettings:
        """The settings a request carries (the run's [verify] config); the CPU limit
        is raised to the wall-clock limit so that slow tests time out, not crash."""
        base = limits or SandboxLimits()
        wall = request.wall_s
        return cls(
            limits=replace(base, wall_s=wall, cpu_s=max(base.cpu_s, math.ceil(wall))),
            test_timeout_s=request.test_timeout_s,
            test_agreement=request.test_agreement,
            min_solver_agreement=request.min_solver_agreement,
        )


def _cannot(reason: str, evidence: str = "") -> VerificationOutput:
    return VerificationOutput("cannot_verify", "none", reason, evidence)


def _unfence(test: str) -> str:
    """A tester's line without a stray Markdown fence around it."""
    lines = [line for line in test.strip().splitlines() if not line.strip().startswith("```")]
    return "\n".join(lines).strip()


async def _run_harness(
    solution: str, examples: list[str], sets: list[list[str]], settings: VerifySettings
) -> tuple[HarnessRun, SandboxResult]:
    """One sandbox run of ``solution`` against the stated examples and the test sets."""
    limits = settings.limits
    source, files = build_harness(
        solution,
        examples,
        sets,
        test_timeout_s=settings.test_timeout_s,
        budget_s=max(0.5, limits.wall_s - _WALL_MARGIN_S),
        cpu_budget_s=max(0.5, limits.cpu_s - 0.5),
    )
    nonce = secrets.token_hex(12)
    result = await run_python_async(source, files=files, stdin=nonce + "\n", limits=limits)
    return parse_harness_output(result.stdout, nonce), result


async def verify_code(
    instruction: str,
    response: str,
    test_sets: tuple[tuple[str, ...], ...],
    settings: VerifySettings,
    references: tuple[str, ...] = (),
) -> VerificationOutput:
    """Run the response's code against the instruction's stated examples and the
    testers' asserts and judge it (see ``judge_code``). With ``references`` (the
    testers' own solutions), each assert's expected value is settled by vote
    (``gra.verify.differential``), so one tester's slip does not fail a right answer."""
    solution = extract_python(response)
    if solution is None:
        return _cannot("no Python code in the response")
    examples = _stated_examples(instruction)
    # Asserts on the helpers the instruction itself implements say nothing of the answer.
    given = given_functions(instruction)
    sets = [
        [t for t in (_unfence(line) for line in tests) if t and not tests_only_given(t, given)]
        for tests in test_sets
    ]
    # One solution per test set, in order, is each set's author's own (the protocol's
    # order); otherwise whose solution is whose is not known.
    aligned = len(references) == len(sets)
    authored = [
        (index + 1 if aligned else None, code)
        for index, code in enumerate(fleet_code(r) for r in references)
        if code
    ]
    runs = await asyncio.gather(
        *(
            _run_harness(code, examples, sets, settings)
            for code in (solution, *(c for _, c in authored))
        )
    )
    (run, result), others = runs[0], runs[1:]
    if authored and sets:
        run = reconcile(
            run,
            [r for r, _ in others],
            min_votes=max(2, settings.min_solver_agreement),
            owners=[owner for owner, _ in authored],
            none_is_stated=_NAMES_NONE.search(instruction) is not None,
            tests=[examples, *sets],
        )
    return judge_code(
        run,
        status=result.status,
        reason=result.reason,
        exit_code=result.exit_code,
        stderr=result.stderr,
        examples=examples,
        test_sets=sets,
        test_agreement=settings.test_agreement,
        evidence_chars=settings.evidence_chars,
    )


async def _run_program(program: str, limits: SandboxLimits) -> SandboxResult:
    source = fleet_code(program) or program
    return await run_python_async(source, limits=limits)


async def verify_math(
    response: str, programs: tuple[str, ...], settings: VerifySettings, instruction: str = ""
) -> VerificationOutput:
    """Check the computations the response states, then run the solvers' programs
    (concurrently) and compare their answers with the response's (see
    ``judge_math``). A false step fails the item whatever its final answer."""
    slips = false_steps(response)
    if slips:
        shown = "\n".join(f"{s.claim}, but the left side is {s.actual}" for s in slips[:5])
        return VerificationOutput(
            "failed",
            "arithmetic",
            f"the response's own arithmetic is wrong: {slips[0].claim}"[:300],
            shown[: settings.evidence_chars],
            tests_run=len(slips),
            tests_failed=len(slips),
        )
    if not programs:
        return _cannot("no solver programs")
    results = await asyncio.gather(*(_run_program(p, settings.limits) for p in programs))
    unavailable = [r for r in results if r.status == "unavailable"]
    if unavailable:
        return _cannot(f"sandbox unavailable: {unavailable[0].reason}")
    return judge_math(response, results, settings, instruction)


async def verify(request: VerifyRequest, settings: VerifySettings) -> VerificationOutput:
    """Verify one item by execution: coding items by tests, math items by answer.

    The request's domain decides (coding, math, or a label that maps to one);
    otherwise what it carries does: test sets mean coding, programs mean math.
    Anything else, and any unexpected error, is cannot_verify: a verifier that
    cannot judge must not decide.
    """
    domain = normalise_domain(request.domain)
    if domain is None:
        if request.test_sets:
            domain = "coding"
        elif request.programs:
            domain = "math"
    try:
        if domain == "coding":
            return await verify_code(
                request.instruction,
                request.response,
                request.test_sets,
                settings,
                references=request.programs,
            )
        if domain == "math":
            return await verify_math(
                request.response, request.programs, settings, request.instruction
            )
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        return _cannot(f"verification failed: {type(exc).__name__}: {exc}"[:400])
    return _cannot(f"no execution check for domain {request.domain!r}")
