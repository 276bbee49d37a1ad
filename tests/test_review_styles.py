"""The reviewer's two prompt styles: the plain review (checks and scores at
once) and the reasoned one (analysis and a reason per check first), both
arriving on the wire as one ReviewOutput."""

from __future__ import annotations

import json

import pytest

from gra.agents.roles import InvalidOutput, get_role
from gra.agents.schema import model_schema
from gra.protocols.peer_review import Generated, InstanceState, Policy, Review
from gra.protocols.roles import GeneratedItem, PlainReview, ReviewRequest

SCORES = dict.fromkeys(
    ("correctness", "clarity", "completeness", "relevance", "coherence", "ethics"), 7
)
REASONED = {
    "analysis": "add returns a - b, so add(2, 3) is -1: wrong.",
    "checks": {
        "rationality": {"reason": "a clear task", "ok": True},
        "completeness": {"reason": "the signature is given", "ok": True},
        "clarity": {"reason": "'two numbers' could be ints or floats", "ok": False},
    },
    "scores": SCORES,
    "strengths": "short",
    "weaknesses": "subtracts",
}


def test_a_reasoned_review_keeps_its_analysis_and_each_checks_own_answer() -> None:
    role = get_role("reviewer")
    request = ReviewRequest("coding", "Write add(a, b).", "def add(a, b): return a - b", "reasoned")
    output = role.parse(request, json.dumps(REASONED))
    assert output.checks.failed_names() == ["clarity"]
    assert output.analysis.startswith("add returns a - b")
    assert "Analysis: add returns" in output.feedback()
    assert role.schema_for(request)["required"][0] == "analysis"


def test_a_plain_review_is_asked_for_and_read_as_before() -> None:
    role = get_role("reviewer")
    request = ReviewRequest("coding", "Write add(a, b).", "def add(a, b): return a + b")
    assert role.schema_for(request) == model_schema(PlainReview) == role.schema
    plain = {key: REASONED[key] for key in ("scores", "strengths", "weaknesses")}
    plain["checks"] = {"rationality": True, "completeness": True, "clarity": True}
    output = role.parse(request, json.dumps(plain))
    assert output.checks.passed() and output.analysis == ""
    with pytest.raises(InvalidOutput):  # a reasoned answer to a plain request is refused
        role.parse(request, json.dumps(REASONED))


def test_the_policy_decides_which_style_the_committee_is_asked_in() -> None:
    item = GeneratedItem("Write add(a, b).", "def add(a, b): return a + b")
    for style in ("plain", "reasoned"):
        state = InstanceState("i", "coding", Policy(reviewer_prompt=style), "g", ("r1", "r2"))
        state.apply(Generated("g", item))
        steps = [s for s in state.next_steps() if isinstance(s, Review)]
        assert {s.request.style for s in steps} == {style}
