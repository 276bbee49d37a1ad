"""The reviewer's prompt styles: the plain review (checks and scores at once),
the reasoned one (analysis and a reason per check first) and the drafted one
(the reviewer's own answer first, then the response's), all arriving on the
wire as one ReviewOutput."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from gra.agents.roles import REVIEWER, InvalidOutput, get_role
from gra.agents.runtime import AgentRuntime
from gra.agents.schema import model_schema
from gra.backends.base import ChatMessages, Completion, OutputShape, Sampling
from gra.bus import Router
from gra.protocols.messages import Hello, Result, Shutdown, Task, Welcome
from gra.protocols.peer_review import Generated, InstanceState, Policy, Review
from gra.protocols.roles import (
    WRONG_ANSWER_CAP,
    GeneratedItem,
    PlainReview,
    ReviewOutput,
    ReviewRequest,
)
from gra.rundir import VERDICTS
from tests.conftest import SEEDS, next_frame, run_gra, scripted_config
from tests.doubles import ScriptedBackend

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


def test_a_drafted_review_first_answers_from_the_instruction_alone() -> None:
    role = get_role("reviewer")
    request = ReviewRequest("math", "What is 17 * 3?", "17 * 3 = 41. The answer is 41.", "drafted")
    assert role.draft is not None
    draft = role.draft.prompt(request)
    assert draft is not None and "17 * 3 = 41" not in json.dumps(draft)  # no response in it
    assert "What is 17 * 3?" in draft[-1]["content"]
    for style in ("plain", "reasoned"):  # the other styles make one call
        assert role.draft.prompt(ReviewRequest("math", "a", "b", style)) is None
    drafted = role.draft.attach(request, "17 * 3 = 51.\nAnswer: 51\n")
    user = role.prompt(drafted)[-1]["content"]
    assert user.index("Your own answer:\n17 * 3 = 51.\nAnswer: 51") < user.index("Response:")
    assert role.schema_for(drafted)["required"][:2] == ["response_answer", "same_answer"]
    reply = {
        "response_answer": "41",
        "same_answer": False,
        "checks": {"rationality": True, "completeness": True, "clarity": True},
        "scores": SCORES,
        "strengths": "short",
        "weaknesses": "wrong product",
    }
    output = role.parse(drafted, json.dumps(reply))
    assert output.checks.passed()
    assert output.analysis == (
        "The reviewer's own answer, worked out before reading the response: 51. "
        "The response's: 41. Different."
    )
    with pytest.raises(InvalidOutput):  # a plain answer to a drafted request is refused
        plain = {key: reply[key] for key in ("checks", "scores", "strengths", "weaknesses")}
        role.parse(drafted, json.dumps(plain))


def drafted_reply(same_answer: bool) -> str:
    return json.dumps(
        {
            "response_answer": "the response's",
            "same_answer": same_answer,
            "checks": {"rationality": True, "completeness": True, "clarity": True},
            "scores": dict.fromkeys(SCORES, 10),
            "strengths": "short",
            "weaknesses": "none",
        }
    )


@pytest.mark.parametrize(
    ("draft", "response", "model_says", "same"),
    [
        # Both answers read as values: the values decide, whatever the model said.
        ("3 * 4 = 12.\nAnswer: 12", "3 * 4 = 15. The answer is 15.", True, False),
        ("Half of 3 is 1.5.\nAnswer: 3/2", "**Answer:** 1.5", False, True),
        # No value to compare on one side: the model's own word stands.
        ("Answer: add(2, 3) returns 5", "def add(a, b):\n    return a + b", True, True),
        ("Answer: add(2, 3) returns 5", "def add(a, b):\n    return a - b", False, False),
        ("Answer: 12", "The father is twelve.", False, False),
        # Answers in words around one number compare by that number.
        ("Answer: Daniel gets $35.00 in change.", "So Daniel gets $36.00 in change.", True, False),
        ("Answer: The father is 12 years old.", "So the father is 12.", False, True),
        # A draft cut short states no answer: its last number is not taken for one.
        ("So far: 3 * 4 = 12, then 12 + 5", "So the result is 17.", True, True),
    ],
)
def test_a_drafted_review_compares_answers_by_value_and_caps_a_wrong_one(
    draft: str, response: str, model_says: bool, same: bool
) -> None:
    role = get_role("reviewer")
    assert role.draft is not None
    request = role.draft.attach(ReviewRequest("math", "task", response, "drafted"), draft)
    output = role.parse(request, drafted_reply(model_says))
    assert output.analysis.endswith(" The same." if same else " Different.")
    capped = (output.scores.correctness, output.scores.completeness)
    assert capped == ((10, 10) if same else (WRONG_ANSWER_CAP, WRONG_ANSWER_CAP))
    assert output.scores.clarity == 10
    # With the paper's tau = 8, a capped review no longer accepts on its own.
    assert (output.scores.mean() >= 8.0) is same


def test_a_drafted_reviews_own_answer_is_bounded() -> None:
    role = get_role("reviewer")
    assert role.draft is not None
    request = ReviewRequest("math", "a", "b", "drafted")
    long = "x" * 10_000 + " Answer: 7"
    attached = role.draft.attach(request, long)
    assert attached.draft.endswith("Answer: 7") and len(attached.draft) <= 4_000
    msgspec.msgpack.decode(msgspec.msgpack.encode(attached), type=ReviewRequest)


class CallRecordingBackend(ScriptedBackend):
    """Records each call's messages and whether a schema constrained it."""

    def __init__(self) -> None:
        super().__init__("double")
        self.asked: list[tuple[ChatMessages, bool]] = []

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        self.asked.append((messages, schema is not None))
        return await super().complete(messages, schema, sampling)


async def test_an_agent_drafts_then_reviews_in_two_calls_and_counts_both(router: Router) -> None:
    backend = CallRecordingBackend()
    runtime = AgentRuntime("drafts-0", backend, {"reviewer": REVIEWER}, router.bound)
    agent = asyncio.create_task(runtime.run())
    identity, _ = await next_frame(router, Hello)
    assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=50))
    request = ReviewRequest("math", "What is 2 + 2?", "2 + 2 = 5. The answer is 5.", "drafted")
    body = msgspec.Raw(msgspec.msgpack.encode(request))
    assert await router.send(identity, Task("t-1", "i-1", "reviewer", 1, 30.0, body, seed=5))
    _, result = await next_frame(router, Result)
    (draft, draft_schema), (review, review_schema) = backend.asked
    assert not draft_schema and "2 + 2 = 5" not in json.dumps(draft)
    assert review_schema and "Your own answer:\n2 + 2 = 4.\nAnswer: 4" in review[-1]["content"]
    assert result.usage.calls == 2
    output = msgspec.msgpack.decode(bytes(result.body), type=ReviewOutput)
    assert output.analysis.startswith("The reviewer's own answer, worked out before")
    assert await router.send(identity, Shutdown(drain=True, reason="test over"))
    await asyncio.wait_for(agent, 10)


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
    for style in ("plain", "reasoned", "drafted"):
        state = InstanceState("i", "coding", Policy(reviewer_prompt=style), "g", ("r1", "r2"))
        state.apply(Generated("g", item))
        steps = [s for s in state.next_steps() if isinstance(s, Review)]
        assert {s.request.style for s in steps} == {style}


def test_calibrate_asks_the_committee_in_the_style_named_on_its_command_line(
    tmp_path: Path, double_env: pytest.MonkeyPatch
) -> None:
    """`gra calibrate --reviewer-prompt drafted`, real agent processes: every review
    of the committee run is a drafted one (the config says "plain")."""
    config = scripted_config(tmp_path, ["m1", "m2", "m3"])
    rows = [json.loads(line) for line in SEEDS.read_text().splitlines()][:4]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(row | {"label": "good"}) + "\n" for row in rows))
    out = tmp_path / "cal"
    run_gra(
        "calibrate", str(config), "--input", str(labelled), "--out", str(out),
        "--no-verifier", "--reviewer-prompt", "drafted", "--no-progress",
    )  # fmt: skip
    verdicts = [
        json.loads(line) for line in (out / "committee" / VERDICTS).read_text().splitlines()
    ]
    reviews = [review for verdict in verdicts for review in verdict["reviews"]]
    assert len(verdicts) == 4 and reviews
    assert all("The reviewer's own answer" in review["feedback"] for review in reviews)
