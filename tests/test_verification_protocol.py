"""Verification by execution as a protocol step, through the pure state machine.

A failed verification rejects (stage "verification"); "cannot verify" leaves
the decision to the committee; a pass leaves it to the committee unless
``on_pass = "accept"``; with verification off the paper's protocol is
untouched.
"""

from __future__ import annotations

import pytest

from gra.protocols.peer_review import (
    Adjudicate,
    DrawAdjudicator,
    EvidenceWritten,
    Generated,
    InstanceState,
    PlanVerification,
    Policy,
    ProtocolError,
    Replaced,
    Review,
    Reviewed,
    VerificationPlanned,
    Verified,
    Verify,
    VerifyPolicy,
    WriteTests,
)
from gra.protocols.records import build_record
from gra.protocols.roles import (
    Checks,
    GeneratedItem,
    ReviewOutput,
    Scores,
    SolverRequest,
    UnitTestRequest,
    VerificationOutput,
)

ITEM = GeneratedItem("Write add(a, b) that returns a + b.", "def add(a, b):\n    return a + b")
PASSED = VerificationOutput("passed", "tests", "4 asserts passed", tests_run=4, sets_usable=2)
FAILED = VerificationOutput(
    "failed", "tests", "2 of 2 test sets fail", "assert add(2, 3) == 5: got -1", sets_failed=2
)
UNKNOWN = VerificationOutput("cannot_verify", "none", "no Python code in the response")


def review(score: int, *, checks: bool = True) -> ReviewOutput:
    return ReviewOutput(Checks(checks, checks, checks), Scores(*[score] * 6), "s", "w")


def instance(**verify: object) -> InstanceState:
    policy = VerifyPolicy(enabled=True, test_sets=2, **verify)  # type: ignore[arg-type]
    state = InstanceState("i1", "coding", Policy(), "gen", ("r1", "r2"), verify=policy)
    state.apply(Generated("gen", ITEM))
    return state


def planned(state: InstanceState, kind: str = "coding") -> InstanceState:
    (step,) = state.next_steps()
    assert step == PlanVerification(frozenset({"gen"}))
    state.apply(VerificationPlanned(kind, ("r1", "r1"), "sandbox"))
    return state


def evidence_in(state: InstanceState) -> None:
    state.apply(EvidenceWritten("r1", 0, tests=("assert add(1, 2) == 3",)))
    state.apply(EvidenceWritten("r1", 1, failed="invalid output after 3 tries"))


def test_verification_off_is_the_papers_protocol() -> None:
    state = InstanceState("i1", "coding", Policy(), "gen", ("r1", "r2"), verify=VerifyPolicy())
    state.apply(Generated("gen", ITEM))
    assert {type(s) for s in state.next_steps()} == {Review}
    state.apply(Reviewed("r1", review(9)))
    state.apply(Reviewed("r2", review(9)))
    assert state.outcome is not None and state.outcome.decision == "accepted"
    assert build_record(state, synthesis_round=1, seed_ids=[]).verification is None


def test_tests_and_reviews_run_side_by_side_then_the_verifier_gets_every_set() -> None:
    state = planned(instance())
    steps = state.next_steps()
    writes = [s for s in steps if isinstance(s, WriteTests)]
    assert [(w.model, w.seat, w.role) for w in writes] == [("r1", 0, "tester"), ("r1", 1, "tester")]
    assert writes[0].request == UnitTestRequest("coding", ITEM.instruction, 6)
    assert {s.model for s in steps if isinstance(s, Review)} == {"r1", "r2"}
    evidence_in(state)
    (verify,) = [s for s in state.next_steps() if isinstance(s, Verify)]
    assert verify.model == "sandbox"
    # The failed seat gave no tests; only the written set reaches the verifier.
    assert verify.request.test_sets == (("assert add(1, 2) == 3",),)
    assert verify.request.response == ITEM.response


def test_a_failed_verification_rejects_whatever_the_committee_says() -> None:
    state = planned(instance())
    state.apply(Reviewed("r1", review(10)))
    state.apply(Reviewed("r2", review(10)))
    assert state.outcome is None  # the committee accepted; the verdict is awaited
    assert all(isinstance(s, (WriteTests,)) for s in state.next_steps())
    evidence_in(state)
    state.apply(Verified("sandbox", FAILED))
    assert state.outcome is not None
    assert (state.outcome.decision, state.outcome.stage) == ("rejected", "verification")
    assert "2 of 2 test sets fail" in state.outcome.reason
    record = build_record(state, synthesis_round=1, seed_ids=[])
    assert record.stage == "verification"
    assert record.verification is not None
    assert record.verification.evidence == FAILED.evidence
    assert record.verification.test_sets == [["assert add(1, 2) == 3"]]
    assert record.mean == 10.0  # the committee's scores stay in the record


def test_a_failed_verification_before_the_committee_ends_the_instance_at_once() -> None:
    state = planned(instance())
    evidence_in(state)
    state.apply(Verified("sandbox", FAILED))
    assert state.outcome is not None and state.outcome.stage == "verification"
    assert state.outcome.mean is None


@pytest.mark.parametrize("output", [PASSED, UNKNOWN])
def test_a_pass_or_cannot_verify_leaves_the_decision_to_the_committee(
    output: VerificationOutput,
) -> None:
    state = planned(instance())
    evidence_in(state)
    state.apply(Verified("sandbox", output))
    assert state.outcome is None
    state.apply(Reviewed("r1", review(9)))
    state.apply(Reviewed("r2", review(5)))
    assert state.outcome is not None
    assert (state.outcome.decision, state.outcome.stage) == ("rejected", "score")


def test_a_committee_rejection_is_final_at_once_when_a_pass_could_not_change_it() -> None:
    state = planned(instance())
    state.apply(Reviewed("r1", review(2)))
    assert state.outcome is not None and state.outcome.stage == "score"


def test_on_pass_accept_lets_execution_evidence_overturn_the_committee() -> None:
    state = planned(instance(on_pass="accept"))
    state.apply(Reviewed("r1", review(3, checks=False)))
    assert state.outcome is None  # a rejection waits: a pass would overturn it
    evidence_in(state)
    state.apply(Verified("sandbox", PASSED))
    assert state.outcome is not None
    assert (state.outcome.decision, state.outcome.stage) == ("accepted", "accepted")
    assert state.outcome.reason.startswith("verification passed")


def test_on_pass_accept_still_rejects_when_nothing_could_be_verified() -> None:
    state = planned(instance(on_pass="accept"))
    state.apply(Reviewed("r1", review(3)))
    evidence_in(state)
    state.apply(Verified("sandbox", UNKNOWN))
    assert state.outcome is not None and state.outcome.stage == "score"


def test_adjudication_waits_for_the_verdict_and_follows_cannot_verify() -> None:
    state = planned(instance())
    state.apply(Reviewed("r1", review(10)))
    state.apply(Reviewed("r2", review(7)))  # mean 8.5, std 1.5 ... at delta: accept
    assert state.outcome is None
    state2 = planned(instance())
    state2.apply(Reviewed("r1", review(10)))
    state2.apply(Reviewed("r2", review(6)))  # mean 8, std 2 > delta: adjudicate
    assert not any(isinstance(s, DrawAdjudicator) for s in state2.next_steps())
    evidence_in(state2)
    state2.apply(Verified("sandbox", UNKNOWN))
    assert state2.next_steps() == [DrawAdjudicator(frozenset({"gen", "r1", "r2"}))]


def test_nothing_to_verify_is_the_papers_protocol() -> None:
    state = planned(instance(), kind=None)  # type: ignore[arg-type]
    assert {type(s) for s in state.next_steps()} == {Review}
    state.apply(Reviewed("r1", review(9)))
    state.apply(Reviewed("r2", review(9)))
    assert state.outcome is not None and state.outcome.decision == "accepted"


def test_no_verifier_in_the_fleet_means_cannot_verify() -> None:
    state = instance()
    state.apply(VerificationPlanned("coding", ("r1", "r2"), None))
    assert state.verification is not None and state.verification.verdict == "cannot_verify"
    assert {type(s) for s in state.next_steps()} == {Review}


def test_math_items_ask_solvers_for_programs() -> None:
    state = planned(instance(), kind="math")
    writes = [s for s in state.next_steps() if isinstance(s, WriteTests)]
    assert {w.role for w in writes} == {"solver"}
    assert writes[0].request == SolverRequest("math", ITEM.instruction)
    state.apply(EvidenceWritten("r1", 0, program="print(3)"))
    state.apply(EvidenceWritten("r1", 1, program="print(1 + 2)"))
    (verify,) = [s for s in state.next_steps() if isinstance(s, Verify)]
    assert verify.request.programs == ("print(3)", "print(1 + 2)")


def test_test_seats_refuse_strangers_and_repeats() -> None:
    state = planned(instance())
    with pytest.raises(ProtocolError):
        state.apply(EvidenceWritten("r2", 0, tests=("assert 1",)))
    state.apply(EvidenceWritten("r1", 0, tests=("assert 1",)))
    with pytest.raises(ProtocolError):
        state.apply(EvidenceWritten("r1", 0, tests=("assert 1",)))
    with pytest.raises(ProtocolError):
        state.apply(Verified("sandbox", PASSED))  # seat 1 is still pending
    with pytest.raises(ProtocolError):
        state.apply(Verified("other", PASSED))


def test_a_test_seat_is_handed_over_but_never_to_the_generator() -> None:
    state = planned(instance())
    state.apply(EvidenceWritten("r1", 0, tests=("assert 1",)))
    with pytest.raises(ProtocolError):
        state.apply(Replaced("r1", "gen", "tester"))
    state.apply(Replaced("r1", "r2", "tester"))
    assert state.testers == ("r1", "r2")  # only the pending seat moved
    state.apply(Replaced("sandbox", "sandbox-2", "verifier"))
    assert state.verifier == "sandbox-2"


def test_adjudicate_step_after_a_pass_under_the_committee_rule() -> None:
    state = planned(instance())
    evidence_in(state)
    state.apply(Verified("sandbox", PASSED))
    state.apply(Reviewed("r1", review(10)))
    state.apply(Reviewed("r2", review(6)))
    assert state.next_steps() == [DrawAdjudicator(frozenset({"gen", "r1", "r2"}))]
    from gra.protocols.peer_review import AdjudicatorDrawn

    state.apply(AdjudicatorDrawn("adj"))
    assert isinstance(state.next_steps()[0], Adjudicate)


def test_unverified_reject_keeps_only_what_execution_confirmed() -> None:
    state = planned(instance(on_pass="accept", unverified="reject"))
    state.apply(Reviewed("r1", review(10)))
    evidence_in(state)
    state.apply(Verified("sandbox", UNKNOWN))
    assert state.outcome is not None
    assert (state.outcome.decision, state.outcome.stage) == ("rejected", "verification")
    assert state.outcome.reason == "could not be verified: no Python code in the response"
    passed = planned(instance(on_pass="accept", unverified="reject"))
    evidence_in(passed)
    passed.apply(Verified("sandbox", PASSED))
    assert passed.outcome is not None and passed.outcome.decision == "accepted"


def test_unverified_reject_rejects_items_nothing_could_check() -> None:
    state = planned(instance(unverified="reject"), kind=None)  # type: ignore[arg-type]
    assert state.outcome is not None
    assert (state.outcome.decision, state.outcome.stage) == ("rejected", "verification")
    assert "not recognised as a coding or math item" in state.outcome.reason
    no_verifier = instance(unverified="reject")
    no_verifier.apply(VerificationPlanned("coding", ("r1", "r2"), None))
    assert no_verifier.outcome is not None and no_verifier.outcome.stage == "verification"


def test_each_test_set_reaches_the_verifier_with_its_authors_solution_beside_it() -> None:
    """The verifier tells a tester's own solution from the others' by position, so a
    tester that wrote no solution keeps its place (an empty one)."""
    policy = VerifyPolicy(enabled=True, test_sets=3)
    state = InstanceState("i1", "coding", Policy(), "gen", ("r1", "r2"), verify=policy)
    state.apply(Generated("gen", ITEM))
    state.apply(VerificationPlanned("coding", ("r1", "r2", "r1"), "sandbox"))
    state.apply(EvidenceWritten("r1", 0, tests=("assert add(1, 2) == 3",), program="A"))
    state.apply(EvidenceWritten("r2", 1, tests=("assert add(0, 0) == 0",), program=""))
    state.apply(EvidenceWritten("r1", 2, tests=("assert add(2, 2) == 4",), program="C"))
    (verify,) = [s for s in state.next_steps() if isinstance(s, Verify)]
    assert len(verify.request.test_sets) == 3
    assert verify.request.programs == ("A", "", "C")
    state.apply(Verified("sandbox", PASSED))
    state.apply(Reviewed("r1", review(9)))
    state.apply(Reviewed("r2", review(9)))
    record = build_record(state, synthesis_round=1, seed_ids=[])
    assert record.verification is not None
    assert record.verification.programs == ["A", "", "C"]
