"""Roles: what an agent can be asked to do, and how it asks its model.

A role's name, request and output types come from its ``RoleSpec``, the
table the supervisor and the benchmarks read too (``gra.protocols``); here a
role adds its prompt, its sampling settings and any checks of the output
beyond its type. A new role is ``Role.of(spec, ...)`` passed to
``register_role`` (or exposed under the ``gra.roles`` entry-point group),
and an agent serves it by naming it in ``--role``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import msgspec

from gra.agents.schema import model_schema
from gra.backends.base import ChatMessages, JsonSchema, Sampling
from gra.errors import InvalidOutput
from gra.protocols import builtin_roles as specs
from gra.protocols.roles import (
    WRONG_ANSWER_CAP,
    AdjudicateRequest,
    AnnotateRequest,
    Annotation,
    DraftedReview,
    GenerateRequest,
    GeneratorOutput,
    PlainReview,
    ReasonedReview,
    RefinedResponse,
    RefineRequest,
    ReviewOutput,
    ReviewRequest,
)
from gra.protocols.rolespec import RoleSpec

RequestT = TypeVar("RequestT")
OutputT = TypeVar("OutputT")


@dataclass(frozen=True)
class OutputVariant:
    """Another shape a role may ask its model for, turned into the role's output
    before it is sent (the wire type stays one)."""

    model_type: type
    # (the model's output, the request) -> the role's output
    convert: Callable[[Any, Any], Any]
    schema: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", model_schema(self.model_type))


@dataclass(frozen=True)
class Draft(Generic[RequestT]):
    """A first, free-text call whose reply the role's own prompt then shows: a
    reviewer works out its own answer from the instruction before it reads the
    response, so it compares two answers instead of rating the one it just read."""

    # The draft call's messages for ``request``; None: this request needs no draft.
    prompt: Callable[[RequestT], ChatMessages | None]
    sampling: Sampling
    # The request with the draft's text in it, for the role's own prompt.
    attach: Callable[[RequestT, str], RequestT]


@dataclass(frozen=True)
class Role(Generic[RequestT, OutputT]):
    name: str
    request_type: type[RequestT]
    output_type: type[OutputT]
    prompt: Callable[[RequestT], ChatMessages]
    sampling: Sampling
    check: Callable[[RequestT, OutputT], None] = lambda _req, _out: None
    # A placeholder request whose prompt starts with the text that every request
    # of the role shares. An idle agent evaluates it once so that its first real
    # call resumes from the saved state (``Backend.warm``). None: not warmed
    # (the generator's first task comes at once; the annotator's text depends
    # on the run's labels).
    warmup: RequestT | None = None
    # A role that runs code instead of prompting the model (the verifier): the
    # agent awaits this with the request and sends what it returns.
    execute: Callable[[RequestT], Awaitable[OutputT]] | None = None
    # The shape the model is asked for, per request, when it is not output_type.
    variant: Callable[[RequestT], OutputVariant] | None = None
    # A role whose model writes free text (code reads better in a fenced block
    # than inside a JSON string): no schema constrains it, and this turns the
    # text into the output, raising InvalidOutput when it cannot.
    text: Callable[[RequestT, str], OutputT] | None = None
    # A free-text call made before the role's own (see Draft).
    draft: Draft[RequestT] | None = None
    schema: JsonSchema | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", self.schema_for(self.warmup))

    @classmethod
    def of(
        cls,
        spec: RoleSpec[RequestT, OutputT],
        prompt: Callable[[RequestT], ChatMessages],
        sampling: Sampling,
        check: Callable[[RequestT, OutputT], None] = lambda _req, _out: None,
        **options: Any,
    ) -> Role[RequestT, OutputT]:
        """The agent's side of ``spec``: its name and types are the spec's."""
        return cls(
            spec.name, spec.request_type, spec.output_type, prompt, sampling, check, **options
        )

    @classmethod
    def executing(
        cls,
        spec: RoleSpec[RequestT, OutputT],
        execute: Callable[[RequestT], Awaitable[OutputT]],
    ) -> Role[RequestT, OutputT]:
        """A role that runs code instead of prompting a model: any agent serving it
        answers with what ``execute`` returns, whatever its model."""
        return cls.of(spec, _no_prompt, Sampling(max_tokens=1), execute=execute)

    def schema_for(self, request: RequestT | None) -> JsonSchema | None:
        """The JSON schema that constrains the model's answer to ``request``
        (None: free text)."""
        if self.text is not None:
            return None
        if self.variant is not None and request is not None:
            return self.variant(request).schema
        return model_schema(self.output_type)

    def decode_request(self, body: bytes) -> RequestT:
        return msgspec.msgpack.decode(body, type=self.request_type)

    def parse(self, request: RequestT, text: str) -> OutputT:
        """Validate untrusted model text; raises InvalidOutput with the reason."""
        if self.text is not None:
            parsed = self.text(request, text)
            self.check(request, parsed)
            return parsed
        variant = self.variant(request) if self.variant is not None else None
        target = variant.model_type if variant is not None else self.output_type
        try:
            decoded = msgspec.json.decode(text, type=target)
        except msgspec.ValidationError as exc:
            raise InvalidOutput(f"{self.name} output does not match its schema: {exc}") from exc
        except msgspec.DecodeError as exc:
            decoded = self._parse_lenient(text, exc, target)
        output: OutputT = variant.convert(decoded, request) if variant is not None else decoded
        self.check(request, output)
        return output

    def _parse_lenient(self, text: str, error: msgspec.DecodeError, target: type) -> Any:
        """Grammar-sampled JSON may hold raw newlines inside strings; accept those."""
        try:
            raw = json.loads(text, strict=False)
        except ValueError:
            raise InvalidOutput(f"{self.name} output is not JSON: {error}") from error
        try:
            return msgspec.convert(raw, type=target)
        except msgspec.ValidationError as exc:
            raise InvalidOutput(f"{self.name} output does not match its schema: {exc}") from exc


def _no_prompt(request: Any) -> ChatMessages:
    raise InvalidOutput("this role runs code; it prompts no model")


# ---- prompts ---------------------------------------------------------------
#
# Layout: everything that is the same for every request of a role (task,
# rubric, output shape) is in the system message, which comes first; the item
# (domain, instruction, response, reviews) comes last, in the user message.
# Consecutive calls of a role then share a long token prefix, which llama.cpp
# reuses from its KV cache instead of evaluating it again.

_JSON_ONLY = "Answer with one JSON object only, exactly in the requested shape."


# When the run keeps only what execution confirms, an item it cannot check is wasted:
# say what a checkable item looks like.
_CHECKABLE = {
    "coding": (
        " The item will be checked by running it: the instruction asks for ONE Python "
        "function and states its name, its arguments and what it returns; the response "
        "gives the complete function in one ```python block."
    ),
    "math": (
        " The item will be checked by computing it: the instruction is ONE self-contained "
        "problem with a single exact answer (a number, fraction or expression), and it states "
        "every number that answer depends on (no amount left unsaid, such as 'some items' or "
        "'a rate': give its value); the response "
        "works it out step by step and ends with 'The answer is ...'."
    ),
}


def _generator_prompt(request: GenerateRequest) -> ChatMessages:
    if request.inspirations:
        task = (
            "You will be given a domain and existing items in it, as keyword triples with "
            "summaries. First write a NEW keyword triple (three keywords naming one core "
            "concept) that combines ideas from these items. Then, using the summaries as "
            "inspiration, turn your keyword triple into ONE new, self-contained, specific and "
            "answerable instruction. Then write a correct, complete and well-organised "
            "response to it."
        )
        seeds = "\n".join(
            f"- keywords: {', '.join(i.keywords)}; summary: {i.summary}"
            for i in request.inspirations
        )
        parts = [
            f"Domain: {request.domain}.",
            f"Existing items in this domain, as keyword triples with summaries:\n{seeds}",
        ]
    else:
        task = (
            "You will be given a domain and, possibly, examples of instruction-tuning data in "
            "it. Write three keywords naming the core concept of a NEW item in this domain, "
            "different from the examples. Then write ONE instruction built on them: "
            "self-contained, specific and answerable. Then write a correct, complete and "
            "well-organised response to it."
        )
        parts = [f"Domain: {request.domain}."]
        examples = "\n\n".join(
            f"Example {i + 1}:\nInstruction: {ex.instruction}\nResponse: {ex.response}"
            for i, ex in enumerate(request.examples)
        )
        if examples:
            parts.append(
                f"Here are examples of instruction-tuning data in this domain:\n\n{examples}"
            )
    if request.previous is not None:
        parts.append(
            "Your previous attempt was rejected by reviewers. Improve it.\n"
            f"Previous instruction: {request.previous.instruction}\n"
            f"Previous response: {request.previous.response}\n"
            f"Reviewers' feedback: {request.feedback}"
        )
    if request.checkable:
        task += _CHECKABLE.get(request.domain, "")
    system = (
        "You create high-quality instruction-tuning data. "
        f"{task}\n"
        "Reply as JSON with three keys: keywords (a list of three keywords), instruction, "
        f"response. {_JSON_ONLY}"
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


_REVIEW_RUBRIC = (
    "Score the response with integers from 0 (worst) to 10 (best) on: correctness, clarity, "
    "completeness, relevance (to the instruction), coherence, ethics (harmless and honest). "
    "Be strict: give 9-10 only to responses with no flaw."
)

_REVIEWER_SYSTEM = (
    "You are a strict reviewer of instruction-tuning data. You will be given a domain, an "
    "instruction and a response.\n"
    "First check the instruction, answering true or false for each: rationality (it makes "
    "sense and can be answered), completeness (it contains everything needed to answer), "
    f"clarity (it is unambiguous). Then review the response. {_REVIEW_RUBRIC} "
    "Finally name its main strength and main weakness, in one short sentence each.\n"
    "Reply as JSON with: checks (rationality, completeness, clarity: true or false), "
    "scores (correctness, clarity, completeness, relevance, coherence, ethics: your integer "
    f"scores from 0 to 10), strengths, weaknesses. {_JSON_ONLY}"
)


_REASONED_REVIEWER_SYSTEM = (
    "You are a strict reviewer of instruction-tuning data. You will be given a domain, an "
    "instruction and a response.\n"
    "First write your analysis: what the instruction asks, what the response does, and "
    "whether it is correct; check any code, calculation or fact step by step and name the "
    "first mistake you find. Then check the instruction, giving for each a short reason and "
    "then ok true or false: rationality (it makes sense and can be answered), completeness "
    "(it contains everything needed to answer), clarity (it is unambiguous). Then review the "
    f"response. {_REVIEW_RUBRIC} A response with a mistake gets at most 5 for correctness. "
    "Finally name its main strength and main weakness, in one short sentence each.\n"
    "Reply as JSON with: analysis, checks (rationality, completeness, clarity: each with "
    "reason and ok), scores (correctness, clarity, completeness, relevance, coherence, "
    f"ethics: your integer scores from 0 to 10), strengths, weaknesses. {_JSON_ONLY}"
)


_DRAFT_SYSTEM = (
    "You will be given an instruction. Answer it yourself, briefly: work it out step by "
    "step, checking each step. For a problem, end with 'Answer: <the final result>'. For "
    "a programming task, write the function, then end with 'Answer:' and what it returns "
    "for one ordinary input and for one edge case the task describes."
)

_DRAFTED_REVIEWER_SYSTEM = (
    "You are a strict reviewer of instruction-tuning data. You will be given a domain, an "
    "instruction, your own answer to it (written before you saw the response) and a "
    "response.\n"
    "First state the response's answer to the same question, and whether it is the same "
    "as yours. If they differ, work out once more which is right: a response whose answer "
    f"is wrong gets at most {WRONG_ANSWER_CAP} for correctness and for completeness. Then "
    "check the instruction, answering true or false for each: rationality (it makes sense "
    "and can be answered), completeness (it contains everything needed to answer), clarity "
    f"(it is unambiguous). Then review the response. {_REVIEW_RUBRIC} "
    "Finally name its main strength and main weakness, in one short sentence each.\n"
    "Reply as JSON with: response_answer, same_answer (true or false), checks "
    "(rationality, completeness, clarity: true or false), scores (correctness, clarity, "
    "completeness, relevance, coherence, ethics: your integer scores from 0 to 10), "
    f"strengths, weaknesses. {_JSON_ONLY}"
)
_REVIEWER_SYSTEMS = {
    "plain": _REVIEWER_SYSTEM,
    "reasoned": _REASONED_REVIEWER_SYSTEM,
    "drafted": _DRAFTED_REVIEWER_SYSTEM,
}


def _reviewer_prompt(request: ReviewRequest) -> ChatMessages:
    own = f"Your own answer:\n{request.draft}\n\n" if request.style == "drafted" else ""
    user = (
        f"Domain: {request.domain}\n\nInstruction:\n{request.instruction}\n\n"
        f"{own}Response:\n{request.response}"
    )
    system = _REVIEWER_SYSTEMS[request.style]
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]


def _drafted_review(output: DraftedReview, request: ReviewRequest) -> ReviewOutput:
    """The review, with the prompt's own rule applied (a response whose answer is not
    the reviewer's gets at most WRONG_ANSWER_CAP for correctness and completeness).

    Where both answers give a value (``answer_value``: the response's final answer
    as the math verifier reads it, the draft's only as it states it after
    "Answer:", so a draft cut short gives none) the values decide whether they are
    the same: small models often call two different numbers the same. Otherwise
    the reviewer's own word stands."""
    # Imported here: the config reads this module, and sympy is not for it to load.
    from gra.verify.math_answers import answer_value, answers_equivalent, stated_answer

    own_value, their_value = (
        answer_value(request.draft, stated=True),
        answer_value(request.response),
    )
    if own_value is None or their_value is None:
        same = output.same_answer
    else:
        same = answers_equivalent(own_value, their_value)
    own = stated_answer(request.draft) or (request.draft.strip().splitlines() or [""])[-1]
    return output.review(same, own[:200])


_REVIEW_VARIANTS = {
    "plain": OutputVariant(PlainReview, lambda output, _request: output.review()),
    "reasoned": OutputVariant(ReasonedReview, lambda output, _request: output.review()),
    "drafted": OutputVariant(DraftedReview, _drafted_review),
}


def _review_variant(request: ReviewRequest) -> OutputVariant:
    return _REVIEW_VARIANTS[request.style]


def _review_draft_prompt(request: ReviewRequest) -> ChatMessages | None:
    """A drafted review answers the instruction first, from the instruction alone."""
    if request.style != "drafted":
        return None
    return [
        {"role": "system", "content": _DRAFT_SYSTEM},
        {"role": "user", "content": f"Instruction:\n{request.instruction}"},
    ]


def _with_draft(request: ReviewRequest, text: str) -> ReviewRequest:
    # Bounded like any feedback the protocol carries; the answer is at the end.
    return msgspec.structs.replace(request, draft=text.strip()[-_DRAFT_CHARS:])


_DRAFT_CHARS = 3_000


_ADJUDICATOR_SYSTEM = (
    "You are the adjudicator of a review committee. You will be given a domain, an "
    "instruction, a response and the feedback of reviewers who disagreed about it.\n"
    "Weigh their arguments, check the response yourself and give your own scores. "
    f"{_REVIEW_RUBRIC} Then explain your verdict in one or two sentences.\n"
    "Reply as JSON with: scores (correctness, clarity, completeness, relevance, coherence, "
    f"ethics: your integer scores from 0 to 10), feedback. {_JSON_ONLY}"
)


def _adjudicator_prompt(request: AdjudicateRequest) -> ChatMessages:
    reviews = "\n".join(
        f"Reviewer {i + 1} (score {r.score:.1f}): {r.feedback}"
        for i, r in enumerate(request.reviews)
    )
    user = (
        f"Domain: {request.domain}\n\nInstruction:\n{request.instruction}\n\n"
        f"Response:\n{request.response}\n\n"
        f"The review committee disagreed:\n{reviews}"
    )
    return [
        {"role": "system", "content": _ADJUDICATOR_SYSTEM},
        {"role": "user", "content": user},
    ]


MIN_INSTRUCTION_WORDS = 4

_REFINER_SYSTEM = (
    "You improve instruction-tuning data. You will be given a domain, an instruction and its "
    "current response.\n"
    "Rewrite the response so that it is correct, complete, clear, relevant, coherent and "
    "harmless. Keep what is already good; fix what is wrong or missing. Do not change the "
    f"instruction.\nReply as JSON with one key: response (the rewritten response). {_JSON_ONLY}"
)


def _refiner_prompt(request: RefineRequest) -> ChatMessages:
    user = (
        f"Domain: {request.domain}\n\nInstruction:\n{request.instruction}\n\n"
        f"Current response:\n{request.response}"
    )
    return [
        {"role": "system", "content": _REFINER_SYSTEM},
        {"role": "user", "content": user},
    ]


def _check_refined(request: RefineRequest, output: RefinedResponse) -> None:
    if not any(ch.isalnum() for ch in output.response):
        raise InvalidOutput(f"refiner response has no content: {output.response[:80]!r}")


def _annotator_prompt(request: AnnotateRequest) -> ChatMessages:
    system = (
        "You annotate instruction-tuning data. You will be given an instruction and its "
        "response.\n"
        f"Label this item. domain: exactly one of {', '.join(request.labels)}. keywords: three "
        "keywords naming the item's core concept. summary: one short sentence that relates "
        "the three keywords to what the item asks and answers.\n"
        f"Reply as JSON with three keys: domain, keywords, summary. {_JSON_ONLY}"
    )
    user = f"Instruction:\n{request.instruction}\n\nResponse:\n{request.response}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]


def _check_annotation(request: AnnotateRequest, output: Annotation) -> None:
    if output.domain.strip().lower() not in {label.lower() for label in request.labels}:
        raise InvalidOutput(f"annotator domain {output.domain!r} is not one of {request.labels}")
    if not all(k.strip() for k in output.keywords) or not output.summary.strip():
        raise InvalidOutput("annotator left a keyword or the summary empty")


def _check_generated(request: GenerateRequest, output: GeneratorOutput) -> None:
    if len(output.instruction.split()) < MIN_INSTRUCTION_WORDS:
        raise InvalidOutput(
            f"generator instruction has fewer than {MIN_INSTRUCTION_WORDS} words: "
            f"{output.instruction[:80]!r}"
        )
    if not any(ch.isalnum() for ch in output.response):
        raise InvalidOutput(f"generator response has no content: {output.response[:80]!r}")
    seen = {ex.instruction.strip() for ex in request.examples}
    if output.instruction.strip() in seen:
        raise InvalidOutput("generator copied an example instruction")
    echoed = _echoed_words(output.instruction, _generator_prompt(request)[0]["content"])
    if echoed:
        raise InvalidOutput(f"generator instruction repeats its own task: {echoed!r}")


# An instruction a quarter of whose words are runs of four or more words from the
# generator's own task is the task restated ("write a new keyword triple combining
# ideas from these items ..."), not a new item; a real one shares a phrase at most.
_ECHO_RUN = 4
_ECHO_SHARE = 0.25


def _echoed_words(text: str, prompt: str) -> str:
    """The runs of words ``text`` shares with ``prompt``, joined, when they cover at
    least ``_ECHO_SHARE`` of its words; otherwise ""."""

    def words(value: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", value.lower())

    said = words(prompt)
    runs = {tuple(said[i : i + _ECHO_RUN]) for i in range(len(said) - _ECHO_RUN + 1)}
    found = words(text)
    covered = [False] * len(found)
    for i in range(len(found) - _ECHO_RUN + 1):
        if tuple(found[i : i + _ECHO_RUN]) in runs:
            covered[i : i + _ECHO_RUN] = [True] * _ECHO_RUN
    if not found or sum(covered) < _ECHO_SHARE * len(found):
        return ""
    shared: list[str] = []
    for index, word in enumerate(found):
        if covered[index]:
            gap = shared and not covered[index - 1]
            shared.append(f"... {word}" if gap else word)
    return " ".join(shared)


# ---- registry --------------------------------------------------------------

_REGISTRY: dict[str, Role[Any, Any]] = {}


def register_role(role: Role[Any, Any]) -> None:
    """Add ``role``; a built-in role's types must be its spec's, so the agent and the
    supervisor never disagree on what goes over the wire."""
    spec = specs.BUILTIN_ROLES.get(role.name)
    if spec is not None and (role.request_type, role.output_type) != (
        spec.request_type,
        spec.output_type,
    ):
        raise ValueError(f"role {role.name!r} does not match its spec in the role table")
    if role.name in _REGISTRY and _REGISTRY[role.name] is not role:
        raise ValueError(f"role {role.name!r} is already registered")
    _REGISTRY[role.name] = role


def get_role(name: str) -> Role[Any, Any]:
    if name not in _REGISTRY:
        for ep in entry_points(group="gra.roles"):
            if ep.name == name:
                register_role(ep.load())
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown role {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def known_roles() -> list[str]:
    return sorted({*_REGISTRY, *(ep.name for ep in entry_points(group="gra.roles"))})


GENERATOR = Role.of(
    specs.GENERATOR,
    _generator_prompt,
    Sampling(max_tokens=384, temperature=0.8),
    _check_generated,
)
REVIEWER = Role.of(
    specs.REVIEWER,
    _reviewer_prompt,
    Sampling(max_tokens=448, temperature=0.2),
    warmup=ReviewRequest("coding", "...", "..."),
    variant=_review_variant,
    draft=Draft(_review_draft_prompt, Sampling(max_tokens=320, temperature=0.2), _with_draft),
)
REFINER = Role.of(
    specs.REFINER,
    _refiner_prompt,
    Sampling(max_tokens=384, temperature=0.5),
    _check_refined,
    warmup=RefineRequest("coding", "...", "..."),
)
ADJUDICATOR = Role.of(
    specs.ADJUDICATOR,
    _adjudicator_prompt,
    Sampling(max_tokens=160, temperature=0.2),
    warmup=AdjudicateRequest("coding", "...", "...", ()),
)
ANNOTATOR = Role.of(
    specs.ANNOTATOR,
    _annotator_prompt,
    Sampling(max_tokens=160, temperature=0.2),
    _check_annotation,
)
for _role in (GENERATOR, REVIEWER, ADJUDICATOR, REFINER, ANNOTATOR):
    register_role(_role)
