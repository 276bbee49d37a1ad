"""The output record: one JSON object per line in accepted/rejected.jsonl.

Users build on these keys (ARCHITECTURE.md); new keys may be added, existing
ones are never renamed or retyped.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gra.protocols.peer_review import InstanceState, ReviewRound
from gra.protocols.roles import Checks, ReviewOutput, Scores, VerificationOutput


class GeneratorInfo(msgspec.Struct):
    model: str


class ReviewRecord(msgspec.Struct):
    model: str
    checks: Checks
    scores: Scores
    score: float
    feedback: str


class AdjudicationRecord(msgspec.Struct):
    model: str
    scores: Scores
    score: float
    feedback: str


class VerificationRecord(msgspec.Struct):
    """What execution showed, and who wrote the tests it ran (they saw the instruction only)."""

    kind: str
    verdict: str
    method: str
    reason: str
    evidence: str
    verifier: str | None
    testers: list[str]
    examples_run: int = 0
    examples_failed: int = 0
    tests_run: int = 0
    tests_failed: int = 0
    sets_usable: int = 0
    sets_failed: int = 0
    # The testers' asserts (coding) or the solvers' programs (math), per seat.
    test_sets: list[list[str]] = []
    programs: list[str] = []


class CheckRecord(msgspec.Struct):
    """What a plugin's check step concluded about the item."""

    name: str
    model: str | None
    rejected: bool
    reason: str
    evidence: str


class PriorRound(msgspec.Struct):
    """An earlier review round of a revised instance."""

    instruction: str
    response: str
    reviews: list[ReviewRecord]
    stage: str
    reason: str


class ItemRecord(msgspec.Struct):
    id: str
    round: int
    domain: str
    keywords: list[str]
    summary: str
    instruction: str
    response: str
    seed_ids: list[str]
    generator: GeneratorInfo
    reviews: list[ReviewRecord]
    mean: float | None
    std: float | None
    adjudication: AdjudicationRecord | None
    decision: Literal["accepted", "rejected", "failed"]
    # "instruction_check", "score", "adjudication", "verification", "dedup",
    # "accepted", "failed", or the name of the plugin step that rejected the item.
    stage: str
    reason: str
    review_rounds: int = 1
    prior_rounds: list[PriorRound] = []
    # The model that wrote keywords and summary (metadata enrichment), if any.
    annotator: str | None = None
    # Set when deduplication rejected the item: the pool item it repeats.
    duplicate_of: str | None = None
    # Verification by execution, when the run verifies and the item was checked.
    verification: VerificationRecord | None = None
    # The plugin check steps that ran, when the run has any (absent otherwise).
    checks: list[CheckRecord] | msgspec.UnsetType = msgspec.UNSET


def _review_records(reviews: dict[str, ReviewOutput]) -> list[ReviewRecord]:
    return [
        ReviewRecord(model, r.checks, r.scores, round(r.scores.mean(), 4), r.feedback())
        for model, r in reviews.items()
    ]


def _prior(history: list[ReviewRound]) -> list[PriorRound]:
    return [
        PriorRound(
            h.item.instruction,
            h.item.response,
            _review_records(h.reviews),
            h.outcome.stage,
            h.outcome.reason,
        )
        for h in history
    ]


def _verification(state: InstanceState) -> VerificationRecord | None:
    output: VerificationOutput | None = state.verification
    if state.verify_kind is None or output is None:
        return None
    test_sets, programs = state.written_evidence()
    return VerificationRecord(
        kind=state.verify_kind,
        verdict=output.verdict,
        method=output.method,
        reason=output.reason,
        evidence=output.evidence,
        verifier=state.verifier,
        testers=list(state.testers),
        examples_run=output.examples_run,
        examples_failed=output.examples_failed,
        tests_run=output.tests_run,
        tests_failed=output.tests_failed,
        sets_usable=output.sets_usable,
        sets_failed=output.sets_failed,
        test_sets=[list(tests) for tests in test_sets],
        programs=list(programs),
    )


def _checks(state: InstanceState) -> list[CheckRecord] | msgspec.UnsetType:
    if not state.checks:
        return msgspec.UNSET
    return [
        CheckRecord(name, c.model, c.verdict.reject, c.verdict.reason, c.verdict.evidence)
        for name, c in state.check_results.items()
    ]


def build_record(state: InstanceState, *, synthesis_round: int, seed_ids: list[str]) -> ItemRecord:
    """The record of a finished instance."""
    outcome = state.outcome
    if outcome is None:
        raise ValueError(f"instance {state.instance_id} is not finished")
    adjudication = None
    if state.adjudication is not None and state.adjudicator is not None:
        scores = state.adjudication.scores
        adjudication = AdjudicationRecord(
            state.adjudicator, scores, round(scores.mean(), 4), state.adjudication.feedback
        )
    item = state.item
    annotation = state.annotation
    return ItemRecord(
        id=state.instance_id,
        round=synthesis_round,
        domain=state.domain,
        keywords=list(annotation.keywords if annotation else item.keywords if item else []),
        summary=annotation.summary if annotation else "",
        instruction=item.instruction if item else "",
        response=item.response if item else "",
        seed_ids=seed_ids,
        generator=GeneratorInfo(state.generator),
        reviews=_review_records(state.reviews),
        mean=None if outcome.mean is None else round(outcome.mean, 4),
        std=None if outcome.std is None else round(outcome.std, 4),
        adjudication=adjudication,
        decision=outcome.decision,
        stage=outcome.stage,
        reason=outcome.reason,
        review_rounds=state.round,
        prior_rounds=_prior(state.history),
        annotator=state.annotator if annotation else None,
        verification=_verification(state),
        checks=_checks(state),
    )


class VerdictRecord(msgspec.Struct):
    """One line of verdicts.jsonl: the committee's judgement of an existing pair."""

    id: str
    decision: Literal["accepted", "rejected", "failed"]
    stage: str
    reason: str
    mean: float | None
    std: float | None
    adjudicated: bool
    reviews: list[ReviewRecord]
    adjudication: AdjudicationRecord | None
    domain: str
    instruction: str
    # The response to keep: the rewrite when it was accepted, else the original.
    response: str
    refined: bool = False
    original_response: str | None = None
    refined_response: str | None = None
    instance: str = ""
    verification: VerificationRecord | None = None
    checks: list[CheckRecord] | msgspec.UnsetType = msgspec.UNSET


def build_verdict(state: InstanceState, *, item_id: str) -> VerdictRecord:
    record = build_record(state, synthesis_round=0, seed_ids=[item_id])
    original = state.original
    assert original is not None
    refine = state.generator is not None
    rewrite = state.item.response if (refine and state.item is not None) else None
    kept_rewrite = refine and record.decision == "accepted" and rewrite is not None
    return VerdictRecord(
        id=item_id,
        decision=record.decision,
        stage=record.stage,
        reason=record.reason,
        mean=record.mean,
        std=record.std,
        adjudicated=record.adjudication is not None,
        reviews=record.reviews,
        adjudication=record.adjudication,
        domain=state.domain,
        instruction=original.instruction,
        response=rewrite if kept_rewrite and rewrite else original.response,
        refined=kept_rewrite,
        original_response=original.response if refine else None,
        refined_response=rewrite,
        instance=state.instance_id,
        verification=record.verification,
        checks=record.checks,
    )
