"""The built-in roles' specs: the one table the agents, the supervisor and the
benchmarks read (a plugin's roles join it through its steps)."""

from __future__ import annotations

from typing import Any

from gra.protocols.peer_review import (
    Adjudicated,
    Enriched,
    EvidenceWritten,
    Generated,
    InstanceEvent,
    InstanceState,
    Reviewed,
    TaskStep,
    Verified,
    WriteTests,
)
from gra.protocols.roles import (
    AdjudicateRequest,
    AdjudicationOutput,
    AnnotateRequest,
    Annotation,
    GeneratedItem,
    GenerateRequest,
    GeneratorOutput,
    RefinedResponse,
    RefineRequest,
    ReviewOutput,
    ReviewRequest,
    SolverOutput,
    SolverRequest,
    UnitTestOutput,
    UnitTestRequest,
    VerificationOutput,
    VerifyRequest,
)
from gra.protocols.rolespec import RoleSpec, role_table


def _refined(state: InstanceState, step: TaskStep, out: RefinedResponse) -> InstanceEvent:
    assert state.original is not None
    return Generated(step.model, GeneratedItem(state.original.instruction, out.response))


def _test_seat(step: TaskStep) -> int:
    assert isinstance(step, WriteTests)
    return step.seat


def _tests_written(_state: InstanceState, step: TaskStep, out: UnitTestOutput) -> InstanceEvent:
    return EvidenceWritten(step.model, _test_seat(step), tests=out.tests, program=out.solution)


def _program_written(_state: InstanceState, step: TaskStep, out: SolverOutput) -> InstanceEvent:
    return EvidenceWritten(step.model, _test_seat(step), program=out.program)


def _no_evidence(step: TaskStep, reason: str) -> InstanceEvent:
    """A test set that will not come: verification goes on with the others."""
    return EvidenceWritten(step.model, _test_seat(step), failed=reason)


def _not_verified(step: TaskStep, reason: str) -> InstanceEvent:
    """A verifier that will not answer: the item cannot be verified."""
    return Verified(step.model, VerificationOutput("cannot_verify", "none", reason))


GENERATOR = RoleSpec(
    "generator",
    GenerateRequest,
    GeneratorOutput,
    lambda _state, step, out: Generated(step.model, out.item()),
)
REFINER = RoleSpec("refiner", RefineRequest, RefinedResponse, _refined)
REVIEWER = RoleSpec(
    "reviewer", ReviewRequest, ReviewOutput, lambda _state, step, out: Reviewed(step.model, out)
)
ADJUDICATOR = RoleSpec(
    "adjudicator",
    AdjudicateRequest,
    AdjudicationOutput,
    lambda _state, step, out: Adjudicated(step.model, out),
)
ANNOTATOR = RoleSpec(
    "annotator",
    AnnotateRequest,
    Annotation,
    lambda _state, step, out: Enriched(step.model, out),
    handover="any",
)
# Verification by execution: testers and solvers see the instruction alone, so
# any model but the generator may write a test set; the verifier runs code.
TESTER = RoleSpec(
    "tester",
    UnitTestRequest,
    UnitTestOutput,
    _tests_written,
    _no_evidence,
    handover="not_generator",
    names_seat=True,
)
SOLVER = RoleSpec(
    "solver",
    SolverRequest,
    SolverOutput,
    _program_written,
    _no_evidence,
    handover="not_generator",
    names_seat=True,
)
VERIFIER = RoleSpec(
    "verifier",
    VerifyRequest,
    VerificationOutput,
    lambda _state, step, out: Verified(step.model, out),
    _not_verified,
    handover="any",
    names_seat=True,
)

BUILTIN_ROLES: dict[str, RoleSpec[Any, Any]] = role_table(
    GENERATOR, REFINER, REVIEWER, ADJUDICATOR, ANNOTATOR, TESTER, SOLVER, VERIFIER
)
