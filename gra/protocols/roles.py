"""Requests and outputs of the built-in roles.

Outputs are also what models must produce: their JSON schema constrains the
backend, and decoding them (with the bounds below) validates untrusted model
output.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SCORE_MAX = 10
Score = Annotated[int, msgspec.Meta(ge=0, le=SCORE_MAX)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
Feedback = Annotated[str, msgspec.Meta(max_length=4_000)]
# Short enough that a grammar can enforce it, which keeps small models brief.
Brief = Annotated[str, msgspec.Meta(max_length=240)]

SCORE_NAMES = ("correctness", "clarity", "completeness", "relevance", "coherence", "ethics")
CHECK_NAMES = ("rationality", "completeness", "clarity")


class Checks(msgspec.Struct, frozen=True):
    """The three yes/no instruction checks; any False rejects the instance."""

    rationality: bool
    completeness: bool
    clarity: bool

    def passed(self) -> bool:
        return self.rationality and self.completeness and self.clarity

    def failed_names(self) -> list[str]:
        return [name for name in CHECK_NAMES if not getattr(self, name)]


class Scores(msgspec.Struct, frozen=True):
    """The six 0-10 response scores; their mean is the scorer's score."""

    correctness: Score
    clarity: Score
    completeness: Score
    relevance: Score
    coherence: Score
    ethics: Score

    def mean(self) -> float:
        return sum(getattr(self, name) for name in SCORE_NAMES) / len(SCORE_NAMES)


class Example(msgspec.Struct, frozen=True):
    """A pool item shown to the generator as a few-shot example."""

    instruction: str
    response: str


class Inspiration(msgspec.Struct, frozen=True):
    """A pool item as the paper's generator sees it: its keyword triple and summary."""

    keywords: tuple[str, ...]
    summary: str


class GenerateRequest(msgspec.Struct, frozen=True):
    domain: str
    examples: tuple[Example, ...]
    # Set on a revision round: the previous attempt and what reviewers said.
    previous: Example | None = None
    feedback: str = ""
    # The paper's method: (keywords, summary) pairs of the domain from the pool.
    # When present, the generator first writes a new keyword triple combining
    # them, then an instruction built on it, then the response.
    inspirations: tuple[Inspiration, ...] = ()
    # The run checks this domain's items by execution: ask for an item it can check
    # (a Python function; a problem with one exact answer).
    checkable: bool = False


class RefineRequest(msgspec.Struct, frozen=True):
    """GRA-Refine: rewrite the response of an existing pair."""

    domain: str
    instruction: str
    response: str


class RefinedResponse(msgspec.Struct, frozen=True):
    response: Text


Keyword = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
KeywordTriple = Annotated[tuple[Keyword, ...], msgspec.Meta(min_length=3, max_length=3)]


class GeneratorOutput(msgspec.Struct, frozen=True):
    """What a generator model writes, in this order: the concept (a keyword
    triple), then the task, then the answer."""

    keywords: KeywordTriple
    instruction: Text
    response: Text

    def item(self) -> GeneratedItem:
        return GeneratedItem(self.instruction, self.response, self.keywords)


class GeneratedItem(msgspec.Struct, frozen=True):
    """An instruction/response pair under review; existing pairs may lack keywords."""

    instruction: Text
    response: Text
    keywords: tuple[str, ...] = ()


ReviewStyle = Literal["plain", "reasoned", "drafted"]


class ReviewRequest(msgspec.Struct, frozen=True):
    domain: str
    instruction: str
    response: str
    # "reasoned": the reviewer writes its analysis, and a reason per check,
    # before it answers and scores (see ReasonedReview). "drafted": it answers
    # the instruction itself first, in a call that sees only the instruction.
    style: ReviewStyle = "plain"
    # A drafted review's own answer: the agent fills it from that first call.
    draft: Feedback = ""


class ReviewOutput(msgspec.Struct, frozen=True):
    checks: Checks
    scores: Scores
    strengths: Brief
    weaknesses: Brief
    # A reasoned review's analysis, written before its checks and scores.
    analysis: Feedback = ""

    def feedback(self) -> str:
        text = f"Strengths: {self.strengths}\nWeaknesses: {self.weaknesses}"
        return f"Analysis: {self.analysis}\n{text}" if self.analysis else text


class PlainReview(msgspec.Struct, frozen=True):
    """What a model writes as a plain review: checks and scores straight away."""

    checks: Checks
    scores: Scores
    strengths: Brief
    weaknesses: Brief

    def review(self) -> ReviewOutput:
        return ReviewOutput(self.checks, self.scores, self.strengths, self.weaknesses)


class CheckAnswer(msgspec.Struct, frozen=True):
    """One instruction check, its reason first: a small model that must say why
    answers each check on its own instead of all three alike."""

    reason: Brief
    ok: bool


class ReasonedChecks(msgspec.Struct, frozen=True):
    rationality: CheckAnswer
    completeness: CheckAnswer
    clarity: CheckAnswer


class ReasonedReview(msgspec.Struct, frozen=True):
    """A review whose fields come in thinking order: what the response does and
    where it goes wrong, then the checks with reasons, then the scores."""

    analysis: Brief
    checks: ReasonedChecks
    scores: Scores
    strengths: Brief
    weaknesses: Brief

    def review(self) -> ReviewOutput:
        checks = Checks(
            self.checks.rationality.ok, self.checks.completeness.ok, self.checks.clarity.ok
        )
        return ReviewOutput(checks, self.scores, self.strengths, self.weaknesses, self.analysis)


# What a drafted review may score a response whose answer is not the reviewer's own.
WRONG_ANSWER_CAP = 3


class DraftedReview(msgspec.Struct, frozen=True):
    """A review written after the reviewer answered the instruction itself (from
    the instruction alone, in an earlier call): the response's answer and whether
    it is the reviewer's own come before the checks and scores, so a small model
    compares two answers instead of rating the one it has just read."""

    response_answer: Brief
    same_answer: bool
    checks: Checks
    scores: Scores
    strengths: Brief
    weaknesses: Brief

    def review(self, same_answer: bool, own_answer: str) -> ReviewOutput:
        """The review; ``same_answer`` is the comparison that stands (the model's own,
        or the values' where both answers read as values). A different answer caps
        correctness and completeness at 3, the rule the reviewer was given. Both
        answers stay in the analysis, the record's evidence."""
        scores = self.scores
        if not same_answer:
            scores = msgspec.structs.replace(
                scores,
                correctness=min(scores.correctness, WRONG_ANSWER_CAP),
                completeness=min(scores.completeness, WRONG_ANSWER_CAP),
            )
        verdict = "the same" if same_answer else "different"
        analysis = (
            f"The reviewer's own answer, worked out before reading the response: "
            f"{own_answer}. The response's: {self.response_answer}. {verdict.capitalize()}."
        )
        return ReviewOutput(self.checks, scores, self.strengths, self.weaknesses, analysis)


class ReviewerFeedback(msgspec.Struct, frozen=True):
    """One reviewer's verdict as the adjudicator sees it (anonymised)."""

    score: float
    feedback: str


class AdjudicateRequest(msgspec.Struct, frozen=True):
    domain: str
    instruction: str
    response: str
    reviews: tuple[ReviewerFeedback, ...]


class AdjudicationOutput(msgspec.Struct, frozen=True):
    scores: Scores
    feedback: Brief


DEFAULT_DOMAINS = (
    "coding",
    "math",
    "qa",
    "reasoning",
    "role-play",
    "language",
    "creative-writing",
)


class AnnotateRequest(msgspec.Struct, frozen=True):
    """Label an item for the pool: its domain, keyword triple and summary."""

    instruction: str
    response: str
    labels: tuple[str, ...] = DEFAULT_DOMAINS


class Annotation(msgspec.Struct, frozen=True):
    domain: Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
    keywords: KeywordTriple
    summary: Brief


# ---- verification by execution (coding and math items) ----------------------
#
# Testers and solvers are models that see the instruction ALONE, never the
# response: a tester writes assert statements for a coding task, a solver a
# short program that prints a math task's final answer. The verifier runs the
# response's code against the instruction's own examples and the testers'
# asserts (or the solvers' programs) in the sandbox and reports what happened.

TestLine = Annotated[str, msgspec.Meta(min_length=1, max_length=1_000)]
VerifyVerdict = Literal["passed", "failed", "cannot_verify"]


class UnitTestRequest(msgspec.Struct, frozen=True):
    domain: str
    instruction: str
    # How many asserts to ask for.
    count: int = 6


class UnitTestOutput(msgspec.Struct, frozen=True):
    """A tester's independent test set: one Python ``assert`` statement per entry, and
    the tester's own solution, which settles the asserts' expected values by vote."""

    tests: Annotated[tuple[TestLine, ...], msgspec.Meta(min_length=1, max_length=16)]
    solution: Annotated[str, msgspec.Meta(max_length=6_000)]


class SolverRequest(msgspec.Struct, frozen=True):
    domain: str
    instruction: str


class SolverOutput(msgspec.Struct, frozen=True):
    """A solver's program: Python (sympy allowed) whose last printed line is the answer."""

    program: Annotated[str, msgspec.Meta(min_length=1, max_length=6_000)]


class VerifyRequest(msgspec.Struct, frozen=True):
    domain: str
    instruction: str
    response: str
    # Coding: the testers' test sets. Math: the solvers' programs.
    test_sets: tuple[tuple[str, ...], ...] = ()
    programs: tuple[str, ...] = ()
    # The run's [verify] settings, so the supervisor's config governs every verifier.
    wall_s: float = 10.0
    test_timeout_s: float = 2.0
    test_agreement: float = 0.5
    min_solver_agreement: int = 2


class VerificationOutput(msgspec.Struct, frozen=True):
    """What execution showed. ``evidence`` is cut to stay readable in a record."""

    verdict: VerifyVerdict
    # "tests" (coding), "answer" (math) or "none" (nothing could be run)
    method: str
    reason: str
    evidence: str = ""
    # Coding: stated examples and model-written asserts that ran, and failed.
    examples_run: int = 0
    examples_failed: int = 0
    tests_run: int = 0
    tests_failed: int = 0
    # Test sets (coding) or solver programs (math) that gave a usable result,
    # and how many of them disagree with the response.
    sets_usable: int = 0
    sets_failed: int = 0
