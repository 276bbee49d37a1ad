"""Wire frames and role payloads: round-trips and rejection of malformed input.

Frames cross process boundaries and role outputs come from untrusted models,
so decoding must either give back exactly what was sent or raise
``msgspec.DecodeError`` (``ValidationError`` for well-formed but invalid data).
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from gra.protocols.messages import (
    FRAME_DECODER,
    FRAME_ENCODER,
    PROTOCOL_VERSION,
    Cancel,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    Reject,
    Result,
    Shutdown,
    Task,
    TaskError,
    Usage,
    Welcome,
)
from gra.protocols.roles import (
    AdjudicateRequest,
    AdjudicationOutput,
    Checks,
    Example,
    GeneratedItem,
    GenerateRequest,
    ReviewerFeedback,
    ReviewOutput,
    ReviewRequest,
    Scores,
)

# ---- fixtures ------------------------------------------------------------------


def raw(obj: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(obj))


def hello(**overrides: Any) -> dict[str, Any]:
    """A valid Hello frame as a plain dict, to corrupt one field at a time."""
    frame: dict[str, Any] = {
        "kind": "hello",
        "agent_id": "agent-1",
        "model": "qwen2.5-7b",
        "roles": ["generator", "reviewer"],
        "capacity": 4,
        "backend": "llamacpp",
        "pid": 4242,
        "host": "node-3",
    }
    frame.update(overrides)
    return frame


USAGE = Usage(prompt_tokens=120, completion_tokens=45, seconds=1.25, calls=2)

FRAMES: list[Message] = [
    Hello("agent-1", "qwen2.5-7b", ("generator", "reviewer"), 4, "llamacpp", 4242, "node-3"),
    Hello("a", "m", ("adjudicator",), 4096, "vllm", 1, "", version=7),
    Welcome(heartbeat_interval_s=2.5, heartbeat_misses=3),
    Reject(reason="protocol version 2 != 1"),
    Heartbeat(sent_at=1_700_000_000.125, in_flight=3),
    Heartbeat(sent_at=0.0),
    Task("t-1", "inst-9", "reviewer", 2, 30.0, raw({"domain": "math"})),
    Result("t-1", raw([1, 2, 3]), USAGE),
    TaskError("t-2", "backend crashed", USAGE),
    TaskError("t-3", "timeout"),
    Cancel("t-4"),
    Shutdown(),
    Shutdown(drain=False, reason="operator"),
    Goodbye(reason="drained"),
]

SCORES = Scores(9, 8, 10, 9, 7, 10)
REQUESTS = [
    GenerateRequest("coding", (Example("Reverse a string.", "s[::-1]"),)),
    GenerateRequest(
        "math",
        (Example("1+1?", "2"), Example("2*3?", "6")),
        previous=Example("3*3?", "10"),
        feedback="Reviewer 1: Weaknesses: wrong answer",
    ),
    ReviewRequest("qa", "What is the capital of France?", "Paris."),
    AdjudicateRequest(
        "reasoning",
        "If all A are B...",
        "Therefore...",
        (ReviewerFeedback(9.5, "good"), ReviewerFeedback(4.0, "flawed")),
    ),
]
OUTPUTS = [
    GeneratedItem("Write a haiku about rain.", "Soft rain on the roof..."),
    ReviewOutput(Checks(True, False, True), SCORES, "concise", ""),
    AdjudicationOutput(SCORES, "keeps it"),
]


# ---- round-trips -------------------------------------------------------------------


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips(frame: Message) -> None:
    data = FRAME_ENCODER.encode(frame)
    decoded = FRAME_DECODER.decode(data)
    assert type(decoded) is type(frame)
    assert decoded == frame
    assert FRAME_ENCODER.encode(decoded) == data


def test_frames_cover_every_kind() -> None:
    kinds = {type(f) for f in FRAMES}
    assert kinds == {
        Hello,
        Welcome,
        Reject,
        Heartbeat,
        Task,
        Result,
        TaskError,
        Cancel,
        Shutdown,
        Goodbye,
    }


def test_frame_is_tagged_by_kind_and_defaults_fill_in() -> None:
    as_dict = msgspec.msgpack.decode(FRAME_ENCODER.encode(Cancel("t-9")))
    assert as_dict == {"kind": "cancel", "task_id": "t-9"}
    decoded = FRAME_DECODER.decode(msgspec.msgpack.encode(hello()))
    assert isinstance(decoded, Hello)
    assert decoded.version == PROTOCOL_VERSION == 1
    assert decoded.roles == ("generator", "reviewer")
    minimal = {"kind": "task_error", "task_id": "t", "reason": "x"}
    error = FRAME_DECODER.decode(msgspec.msgpack.encode(minimal))
    assert error == TaskError("t", "x", Usage(0, 0, 0.0, 0))


@pytest.mark.parametrize("payload", REQUESTS, ids=lambda p: type(p).__name__)
def test_role_request_round_trips_inside_task_body(payload: msgspec.Struct) -> None:
    task = Task("t-1", "inst-1", "role", 1, 60.0, msgspec.Raw(msgspec.msgpack.encode(payload)))
    decoded = FRAME_DECODER.decode(FRAME_ENCODER.encode(task))
    assert isinstance(decoded, Task)
    assert decoded.task_id == "t-1" and decoded.attempt == 1
    assert msgspec.msgpack.decode(decoded.body, type=type(payload)) == payload


@pytest.mark.parametrize("payload", OUTPUTS, ids=lambda p: type(p).__name__)
def test_role_output_round_trips_inside_result_body(payload: msgspec.Struct) -> None:
    result = Result("t-1", msgspec.Raw(msgspec.msgpack.encode(payload)), USAGE)
    decoded = FRAME_DECODER.decode(FRAME_ENCODER.encode(result))
    assert isinstance(decoded, Result)
    assert decoded.usage == USAGE
    assert msgspec.msgpack.decode(decoded.body, type=type(payload)) == payload


def test_review_output_round_trips_through_json() -> None:
    review = OUTPUTS[1]
    assert isinstance(review, ReviewOutput)
    decoded = msgspec.json.decode(msgspec.json.encode(review), type=ReviewOutput)
    assert decoded == review
    assert decoded.checks.failed_names() == ["completeness"]
    assert decoded.scores.mean() == pytest.approx(53 / 6)


# ---- malformed frames ----------------------------------------------------------------


def test_random_bytes_are_rejected() -> None:
    rng = random.Random(2024)
    for _ in range(500):
        data = rng.randbytes(rng.randint(0, 64))
        with pytest.raises(msgspec.DecodeError):
            FRAME_DECODER.decode(data)


def test_empty_and_trailing_bytes_are_rejected() -> None:
    with pytest.raises(msgspec.DecodeError):
        FRAME_DECODER.decode(b"")
    with pytest.raises(msgspec.DecodeError, match="trailing"):
        FRAME_DECODER.decode(FRAME_ENCODER.encode(Cancel("t-1")) + b"\x00")


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_truncation_of_a_valid_frame_is_rejected(frame: Message) -> None:
    data = FRAME_ENCODER.encode(frame)
    for cut in range(len(data)):
        with pytest.raises(msgspec.DecodeError):
            FRAME_DECODER.decode(data[:cut])


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"Invalid value 'bogus' - at `\$.kind`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode({"kind": "bogus", "task_id": "t"}))
    with pytest.raises(msgspec.ValidationError, match="missing required field `kind`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode({"task_id": "t"}))
    with pytest.raises(msgspec.ValidationError):
        FRAME_DECODER.decode(msgspec.msgpack.encode(["cancel", "t"]))


@pytest.mark.parametrize(
    ("frame", "where"),
    [
        ({"kind": "heartbeat", "sent_at": "now"}, "sent_at"),
        ({"kind": "heartbeat", "sent_at": 1.0, "in_flight": 1.5}, "in_flight"),
        (hello(capacity="4"), "capacity"),
        (hello(roles="generator"), "roles"),
        (hello(pid=None), "pid"),
        ({"kind": "shutdown", "drain": "yes"}, "drain"),
        (
            {
                "kind": "task",
                "task_id": "t",
                "instance_id": "i",
                "role": "r",
                "attempt": "1",
                "deadline_s": 1.0,
                "body": None,
            },
            "attempt",
        ),
        ({"kind": "result", "task_id": "t", "body": 1, "usage": {"calls": "two"}}, "usage.calls"),
        ({"kind": "cancel", "task_id": 7}, "task_id"),
    ],
)
def test_wrong_field_types_are_rejected(frame: dict[str, Any], where: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{where}`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode(frame))


@pytest.mark.parametrize(
    ("frame", "missing"),
    [
        ({k: v for k, v in hello().items() if k != "model"}, "model"),
        (
            {
                "kind": "task",
                "task_id": "t",
                "instance_id": "i",
                "role": "r",
                "attempt": 1,
                "deadline_s": 1.0,
            },
            "body",
        ),
        ({"kind": "result", "task_id": "t", "body": 1}, "usage"),
        ({"kind": "welcome", "heartbeat_interval_s": 1.0}, "heartbeat_misses"),
        ({"kind": "cancel"}, "task_id"),
        ({"kind": "goodbye"}, "reason"),
    ],
)
def test_missing_required_field_is_rejected(frame: dict[str, Any], missing: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"missing required field `{missing}`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode(frame))


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": 4097}, "capacity"),
        ({"agent_id": ""}, "agent_id"),
        ({"model": "x" * 257}, "model"),
        ({"roles": ["reviewer", ""]}, r"roles\[1\]"),
    ],
)
def test_hello_bounds_are_enforced(overrides: dict[str, Any], where: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{where}`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode(hello(**overrides)))


def test_hello_capacity_zero_message() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int` >= 1 - at `\$.capacity`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode(hello(capacity=0)))
    assert FRAME_DECODER.decode(msgspec.msgpack.encode(hello(capacity=1))).capacity == 1  # type: ignore[union-attr]


def test_empty_task_id_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"at `\$.task_id`"):
        FRAME_DECODER.decode(msgspec.msgpack.encode({"kind": "cancel", "task_id": ""}))


# ---- malformed role outputs (untrusted model text) ---------------------------------


def review_json(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "checks": {"rationality": True, "completeness": True, "clarity": True},
        "scores": {
            "correctness": 9,
            "clarity": 8,
            "completeness": 9,
            "relevance": 10,
            "coherence": 9,
            "ethics": 10,
        },
        "strengths": "accurate",
        "weaknesses": "none",
    }
    doc.update(overrides)
    return doc


def test_valid_review_json_decodes() -> None:
    review = msgspec.json.decode(msgspec.json.encode(review_json()), type=ReviewOutput)
    assert review.scores == Scores(9, 8, 9, 10, 9, 10)
    assert review.checks.passed()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("correctness", 11, "Expected `int` <= 10"),
        ("ethics", -1, "Expected `int` >= 0"),
        ("clarity", 100, "Expected `int` <= 10"),
        ("relevance", 7.5, "Expected `int`, got `float`"),
        ("coherence", "9", "Expected `int`, got `str`"),
    ],
)
def test_review_scores_out_of_range_are_rejected(field: str, value: Any, message: str) -> None:
    doc = review_json()
    doc["scores"][field] = value
    with pytest.raises(msgspec.ValidationError, match=rf"{message} - at `\$\.scores\.{field}`"):
        msgspec.json.decode(msgspec.json.encode(doc), type=ReviewOutput)


def test_review_with_missing_score_or_bad_check_is_rejected() -> None:
    doc = review_json()
    del doc["scores"]["ethics"]
    with pytest.raises(msgspec.ValidationError, match="missing required field `ethics`"):
        msgspec.json.decode(msgspec.json.encode(doc), type=ReviewOutput)
    doc = review_json(checks={"rationality": "yes", "completeness": True, "clarity": True})
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.checks\.rationality`"):
        msgspec.json.decode(msgspec.json.encode(doc), type=ReviewOutput)
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.weaknesses`"):
        msgspec.json.decode(
            msgspec.json.encode(review_json(weaknesses="x" * 4001)), type=ReviewOutput
        )


def test_adjudication_scores_are_bounded() -> None:
    doc = {"scores": review_json()["scores"] | {"correctness": 11}, "feedback": ""}
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.scores\.correctness`"):
        msgspec.json.decode(msgspec.json.encode(doc), type=AdjudicationOutput)


def test_empty_instruction_in_generated_item_is_rejected() -> None:
    doc = {"instruction": "", "response": "something"}
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.instruction`"):
        msgspec.json.decode(msgspec.json.encode(doc), type=GeneratedItem)
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.instruction`"):
        msgspec.msgpack.decode(msgspec.msgpack.encode(doc), type=GeneratedItem)
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.response`"):
        msgspec.json.decode(b'{"instruction": "ok", "response": ""}', type=GeneratedItem)


def test_malformed_json_output_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b'{"instruction": "ok", "response": ', type=GeneratedItem)
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b"Sure! Here is the JSON:", type=ReviewOutput)
