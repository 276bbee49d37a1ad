"""Requests and outputs of the built-in roles.

Outputs are also what models must produce: their JSON schema constrains the
backend, and decoding them (with the bounds below) validates untrusted model
output.
"""

from __future__ import annotations

from typing import Annotated

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


class ReviewRequest(msgspec.Struct, frozen=True):
    domain: str
    instruction: str
    response: str


class ReviewOutput(msgspec.Struct, frozen=True):
    checks: Checks
    scores: Scores
    strengths: Brief
    weaknesses: Brief

    def feedback(self) -> str:
        return f"Strengths: {self.strengths}\nWeaknesses: {self.weaknesses}"


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
