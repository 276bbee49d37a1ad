"""Plugin check steps in the pure state machine, and the role table they join.

A check runs on an item the protocol is about to accept, and only then; it
may reject it (stage: the step's name) or let the acceptance stand.
"""

from __future__ import annotations

import msgspec
import pytest

from gra.agents.roles import Role, get_role, register_role
from gra.protocols.builtin_roles import BUILTIN_ROLES
from gra.protocols.checks import CheckStep, NoSettings, check_role
from gra.protocols.peer_review import (
    AdjudicatorDrawn,
    AnnotatorDrawn,
    CheckerDrawn,
    CheckVerdict,
    DrawAdjudicator,
    DrawAnnotator,
    DrawChecker,
    Generated,
    InstanceState,
    Outcome,
    Policy,
    ProtocolError,
    Replaced,
    Reviewed,
    RunCheck,
)
from gra.protocols.records import build_record
from gra.protocols.roles import Checks, GeneratedItem, GenerateRequest, ReviewOutput, Scores
from gra.protocols.rolespec import role_table
from gra.supervisor.journal import InstanceChanged, JournalEntry

ITEM = GeneratedItem("Write a haiku about the sea.", "Waves fold into foam")


class LengthRequest(msgspec.Struct, frozen=True):
    response: str
    limit: int


class LengthOutput(msgspec.Struct, frozen=True):
    words: int
    limit: int


class LengthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    limit: int = 3


LENGTH = check_role(
    "length",
    LengthRequest,
    LengthOutput,
    lambda out: CheckVerdict(out.words > out.limit, f"{out.words} words", f"limit {out.limit}"),
)
STEP = CheckStep(
    "length",
    LENGTH,
    lambda state, settings: LengthRequest(state.item.response, settings.limit),
    LengthSettings,
).configured({})


def review(score: int, passed: bool = True) -> ReviewOutput:
    return ReviewOutput(Checks(passed, True, True), Scores(*[score] * 6), "ok", "none")


def instance(*checks: CheckStep, enrich: bool = False) -> InstanceState:
    state = InstanceState(
        "i1", "poetry", Policy(reviewers=2), "gen", ("r1", "r2"), checks=checks, enrich=enrich
    )
    state.apply(Generated("gen", ITEM))
    return state


def reviewed(state: InstanceState, *scores: int) -> InstanceState:
    for model, score in zip(("r1", "r2"), scores, strict=True):
        if state.outcome is None:  # a low first score may reject at once
            state.apply(Reviewed(model, review(score)))
    return state


def run_check(state: InstanceState, model: str, words: int) -> None:
    (draw,) = state.next_steps()
    assert draw == DrawChecker("length", "length", frozenset({"gen"}))
    state.apply(CheckerDrawn("length", model))
    (step,) = state.next_steps()
    assert isinstance(step, RunCheck)
    assert (step.model, step.role, step.check, step.request) == (
        model,
        "length",
        "length",
        LengthRequest(ITEM.response, 3),
    )
    output = LengthOutput(words, step.request.limit)
    state.apply(LENGTH.to_event(state, step, output))


def test_a_check_rejects_an_item_the_committee_accepted() -> None:
    state = reviewed(instance(STEP), 9, 9)
    assert state.outcome is None, "the acceptance waits for the check"
    run_check(state, "r1", 4)
    assert state.outcome == Outcome("rejected", "length", "4 words", 9.0, 0.0)
    record = msgspec.to_builtins(build_record(state, synthesis_round=1, seed_ids=[]))
    assert (record["decision"], record["stage"]) == ("rejected", "length")
    assert record["checks"] == [
        {"name": "length", "model": "r1", "rejected": True, "reason": "4 words",
         "evidence": "limit 3"}
    ]  # fmt: skip


def test_a_passed_check_lets_the_acceptance_stand_then_the_item_is_annotated() -> None:
    state = reviewed(instance(STEP, enrich=True), 9, 9)
    run_check(state, "r2", 3)
    assert state.outcome is None and state.accepted_pending is not None
    assert state.next_steps() == [DrawAnnotator()]
    state.apply(AnnotatorDrawn(None))
    assert state.outcome is not None and state.outcome.decision == "accepted"
    assert state.outcome.reason.startswith("mean 9.00 >= tau")


def test_an_item_the_committee_rejects_is_never_checked() -> None:
    state = reviewed(instance(STEP), 3, 3)
    assert state.outcome is not None and state.outcome.stage == "score"
    assert state.check_results == {} and state.check_seats == {}


def test_an_adjudicated_item_is_checked_after_the_adjudicator_accepts() -> None:
    state = reviewed(instance(STEP), 10, 6)
    (draw,) = state.next_steps()
    assert isinstance(draw, DrawAdjudicator), "the check waits for the acceptance"
    state.apply(AdjudicatorDrawn("adj"))
    (adjudicate,) = state.next_steps()
    state.apply(BUILTIN_ROLES["adjudicator"].to_event(state, adjudicate, _adjudication(9)))
    run_check(state, "r1", 5)
    assert state.outcome is not None and state.outcome.stage == "length"
    assert state.adjudication is not None


def _adjudication(score: int):  # type: ignore[no-untyped-def]
    from gra.protocols.roles import AdjudicationOutput

    return AdjudicationOutput(Scores(*[score] * 6), "fine")


def test_no_model_for_the_role_or_a_given_up_task_lets_the_acceptance_stand() -> None:
    state = reviewed(instance(STEP), 9, 9)
    state.next_steps()
    state.apply(CheckerDrawn("length", None))
    assert state.outcome is not None and state.outcome.decision == "accepted"
    assert "no live model serves the length role" in state.check_results["length"].verdict.reason

    state = reviewed(instance(STEP), 9, 9)
    state.apply(CheckerDrawn("length", "r1"))
    (step,) = state.next_steps()
    state.apply(LENGTH.give_up(step, "length task failed 3 times"))
    assert state.outcome is not None and state.outcome.decision == "accepted"
    assert state.check_results["length"].verdict.reason.endswith("length task failed 3 times")


def test_a_check_seat_is_handed_over_and_only_its_model_may_answer() -> None:
    state = reviewed(instance(STEP), 9, 9)
    state.apply(CheckerDrawn("length", "r1"))
    with pytest.raises(ProtocolError):
        state.apply(CheckerDrawn("length", "r2"))
    state.apply(Replaced("r1", "r2", "length"))
    (step,) = state.next_steps()
    assert step.model == "r2"
    with pytest.raises(ProtocolError):
        state.apply(LENGTH.to_event(state, RunCheck("r1", step.request, "length", "length", 0),
                                    LengthOutput(1, 3)))  # fmt: skip
    state.apply(LENGTH.to_event(state, step, LengthOutput(1, 3)))
    assert state.outcome is not None and state.outcome.decision == "accepted"


def test_a_step_that_does_not_apply_is_skipped_and_two_steps_both_run() -> None:
    never = CheckStep("never", LENGTH, STEP.request, when=lambda _s, _c: False).configured({})
    state = reviewed(instance(never), 9, 9)
    assert state.outcome is not None and state.outcome.decision == "accepted"

    second = CheckStep("second", LENGTH, STEP.request, LengthSettings).configured({"limit": 9})
    state = reviewed(instance(STEP, second), 9, 9)
    draws = state.next_steps()
    assert [d.check for d in draws] == ["length", "second"]  # type: ignore[union-attr]
    state.apply(CheckerDrawn("length", "r1"))
    state.apply(CheckerDrawn("second", "r1"))
    steps = state.next_steps()
    assert [(s.check, s.seat, s.request.limit) for s in steps] == [  # type: ignore[union-attr]
        ("length", 0, 3),
        ("second", 1, 9),
    ]
    state.apply(LENGTH.to_event(state, steps[1], LengthOutput(4, 9)))
    assert state.outcome is None, "the other check still runs"
    state.apply(LENGTH.to_event(state, steps[0], LengthOutput(4, 3)))
    assert state.outcome is not None and state.outcome.stage == "length"
    assert list(state.check_results) == ["second", "length"]


def test_a_run_without_steps_writes_no_checks_key() -> None:
    state = reviewed(instance(), 9, 9)
    record = msgspec.json.decode(
        msgspec.json.encode(build_record(state, synthesis_round=1, seed_ids=[]))
    )
    assert "checks" not in record
    assert record["decision"] == "accepted"


def test_step_settings_are_decoded_strictly() -> None:
    assert STEP.settings == LengthSettings(3)
    with pytest.raises(msgspec.ValidationError, match="limit"):
        STEP.configured({"limit": "three"})
    with pytest.raises(msgspec.ValidationError, match="lenght"):
        STEP.configured({"lenght": 3})
    assert CheckStep("bare", LENGTH, STEP.request).configured({}).settings == NoSettings()


def test_the_role_table_is_the_agents_source_of_names_and_types() -> None:
    for name, spec in BUILTIN_ROLES.items():
        role = get_role(name)  # the verification roles come from gra's own entry points
        assert (role.name, role.request_type, role.output_type) == (
            spec.name,
            spec.request_type,
            spec.output_type,
        )
    wrong = Role(
        "generator", GenerateRequest, LengthOutput, lambda _r: [], get_role("generator").sampling
    )
    with pytest.raises(ValueError, match="does not match its spec"):
        register_role(wrong)
    clash = check_role("reviewer", LengthRequest, LengthOutput, lambda _o: CheckVerdict(False, ""))
    with pytest.raises(ValueError, match="two roles are named 'reviewer'"):
        role_table(*BUILTIN_ROLES.values(), clash)


def test_a_check_replays_from_the_journal_as_it_happened() -> None:
    """--resume rebuilds an instance from its journaled events: the check's events
    decode from the journal and give the same outcome and evidence."""
    live = instance(STEP)
    events = [Generated("gen", ITEM), Reviewed("r1", review(9)), Reviewed("r2", review(9))]
    events.append(CheckerDrawn("length", "r1"))
    for event in events[1:]:
        live.apply(event)
    (step,) = live.next_steps()
    events.append(LENGTH.to_event(live, step, LengthOutput(7, 3)))
    live.apply(events[-1])
    lines = [msgspec.json.encode(InstanceChanged("i1", event)) for event in events]
    decoder = msgspec.json.Decoder(JournalEntry)
    resumed = InstanceState(
        "i1", "poetry", Policy(reviewers=2), "gen", ("r1", "r2"), checks=(STEP,)
    )
    for line in lines:
        entry = decoder.decode(line)
        assert isinstance(entry, InstanceChanged)
        resumed.apply(entry.event)
    assert resumed.outcome == live.outcome
    assert resumed.outcome is not None and resumed.outcome.stage == "length"
    assert resumed.check_results == live.check_results
