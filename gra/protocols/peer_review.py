"""The GRA peer-review protocol as a pure state machine.

No I/O, no clocks, no hidden randomness: role draws take an explicit
``random.Random``, and every change of an instance is an ``Event`` applied to
its ``InstanceState``. The supervisor feeds events (from agents, or from the
journal when it resumes) and asks ``next_steps()`` what the instance needs.

Rules (GRA_METHOD.md), each threshold configurable through ``Policy``:
- the generator is drawn uniformly from the fleet's models;
- the committee is ``reviewers`` models drawn from the others;
- any failed instruction check by any reviewer rejects (at once, unless
  ``reject_when_decided`` is off or a revision round follows: a revision
  waits for the whole committee, whose feedback goes back to the generator);
- committee mean < tau rejects (as soon as the reviews in put tau out of
  reach, unless ``reject_when_decided`` is off); mean >= tau and std <= delta accepts;
  otherwise an adjudicator drawn from the models not yet involved re-scores
  with the reviewers' feedback, and the item is kept only if its score >= tau.

Fewer models than the paper's five: the committee shrinks to the models left
after the generator (at least one reviewer is required, so a fleet needs two
models). If adjudication is needed and no uninvolved model is left, the item
is rejected (stage "adjudication", reason says why) unless
``reserve_adjudicator`` is set, in which case the committee is shrunk by one
more so that an adjudicator always remains.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from gra.errors import ProtocolError
from gra.protocols.roles import (
    SCORE_MAX,
    AdjudicateRequest,
    AdjudicationOutput,
    AnnotateRequest,
    Annotation,
    Example,
    GeneratedItem,
    GenerateRequest,
    Inspiration,
    RefineRequest,
    ReviewerFeedback,
    ReviewOutput,
    ReviewRequest,
    ReviewStyle,
    SolverRequest,
    UnitTestRequest,
    VerificationOutput,
    VerifyRequest,
)

if TYPE_CHECKING:
    from gra.protocols.checks import CheckStep


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every threshold of the protocol; the defaults are the paper's."""

    tau: Annotated[float, msgspec.Meta(ge=0, le=10)] = 8.0
    delta: Annotated[float, msgspec.Meta(ge=0)] = 1.5
    reviewers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 3
    std: Literal["population", "sample"] = "population"
    reserve_adjudicator: bool = False
    # Review rounds per instance; 1 is the paper (no revision). With more, an
    # item rejected by an instruction check or by score goes back to its
    # generator with the whole committee's feedback (a round that can still be
    # revised waits for every review); an adjudicator's verdict is final.
    max_rounds: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    # How far one model may run ahead of another in draws for a role, so that
    # a free model is drawn before a busy one (gra/protocols/assignment.py).
    assignment_slack: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 2
    # Reject by score as soon as the reviews already in make mean >= tau
    # impossible (the pending ones scoring 10 could not lift it). The decision
    # is the paper's either way; the pending reviews are cancelled, so the
    # rejected record carries only the reviews that decided it. False: every
    # review is completed, after a failed instruction check too (to study the
    # committee's full scores, as `gra calibrate` does).
    reject_when_decided: bool = True
    # How reviewers are asked (not a rule of the paper, which gives no prompts):
    # "plain" checks and scores at once; "reasoned" first writes an analysis and a
    # reason per check; "drafted" first writes its own answer to the instruction, then
    # the response's, and whether they are the same (gra calibrate measures each).
    reviewer_prompt: ReviewStyle = "plain"
    # Reviewer reliability (not in the paper; empty: every reviewer counts alike):
    # model -> weight >= 0, as `gra calibrate` measures it. In a config file, the
    # path of a calibration.json (its "weights") or an inline table; the config
    # loader turns a path into the table. A reviewer's score counts in proportion
    # to its weight, a reviewer of weight 0 neither scores nor vetoes by a failed
    # check, and a model without a weight counts as the mean of the known weights.
    reviewer_weights: str | dict[str, Annotated[float, msgspec.Meta(ge=0)]] = {}
    # Protocol steps that plugins add (not in the paper; empty: none), by the name
    # of their ``gra.steps`` entry point, each with its settings: an item about to
    # be accepted is first checked by each step, which may reject it
    # (gra/protocols/checks.py). In a config file: ``[protocol.steps.NAME]``.
    steps: dict[str, dict[str, Any]] = {}

    def weight_of(self, model: str) -> float:
        """How much ``model``'s review counts (1.0 for every model without weights)."""
        weights = self.reviewer_weights
        if isinstance(weights, str):
            raise ProtocolError(f"reviewer_weights {weights!r} was never loaded from its file")
        if not weights:
            return 1.0
        if model in weights:
            return weights[model]
        return math.fsum(weights.values()) / len(weights)

    def committee_size(self, n_models: int, *, with_generator: bool = True) -> int:
        needed = 2 if with_generator else 1
        if n_models < needed:
            raise ProtocolError(
                f"the protocol needs at least {needed} models "
                f"({'a generator and ' if with_generator else ''}a reviewer), got {n_models}"
            )
        room = n_models - (1 if with_generator else 0)
        if self.reserve_adjudicator and room >= 2:
            room -= 1
        return max(1, min(self.reviewers, room))


class VerifyPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Verification by execution, beyond the paper (off by default: the paper's protocol).

    For items of ``domains`` (given, or recognised from their content), testers
    write asserts (coding) or solvers write programs (math) from the
    instruction alone, one per seat; a verifier runs the response against
    them in the sandbox. A failed verification rejects (stage
    "verification"); "cannot verify" leaves the decision to the committee; a
    pass leaves it to the committee too, unless ``on_pass = "accept"``, where
    execution evidence decides for the items it could check. With ``unverified =
    "reject"`` an item that could not be verified (not recognised as coding or
    math, or "cannot verify") is rejected instead of left to the committee: only
    what execution confirmed is kept.
    """

    enabled: bool = False
    domains: tuple[Literal["coding", "math"], ...] = ("coding", "math")
    # Items whose domain label is not coding/math are recognised by content.
    recognise: bool = True
    # Independent test sets (coding) or solver programs (math) per item.
    test_sets: Annotated[int, msgspec.Meta(ge=1, le=8)] = 3
    tests_per_set: Annotated[int, msgspec.Meta(ge=1, le=16)] = 6
    # Coding: an item fails when at least this fraction of the usable test sets fail.
    test_agreement: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    # Math: solver answers that must agree with each other to refute the response.
    min_solver_agreement: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2
    on_pass: Literal["committee", "accept"] = "committee"
    unverified: Literal["committee", "reject"] = "committee"
    # Per program run in the sandbox, and per assert inside it.
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    test_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0


class Verdict(enum.Enum):
    REJECT_CHECK = "instruction_check"
    REJECT_SCORE = "score"
    ACCEPT = "accepted"
    ADJUDICATE = "adjudicate"


@dataclass(frozen=True)
class CommitteeDecision:
    verdict: Verdict
    mean: float | None
    std: float | None
    reason: str


def committee_stats(
    scores: Sequence[float], policy: Policy, weights: Sequence[float] | None = None
) -> tuple[float, float]:
    """Mean and standard deviation of the review scores, each weighted by its
    reviewer's weight when ``weights`` are given (and not all zero).

    Two passes of ``math.fsum`` rather than ``statistics.pstdev``: the latter
    works in exact fractions, which cost more than the rest of a decision.
    """
    n = len(scores)
    if weights is not None and math.fsum(weights) > 0:
        total = math.fsum(weights)
        mean = math.fsum(w * x for w, x in zip(weights, scores, strict=True)) / total
        squares = math.fsum(w * (x - mean) ** 2 for w, x in zip(weights, scores, strict=True))
        return mean, math.sqrt(squares / total)
    mean = math.fsum(scores) / n
    if n < 2:
        return mean, 0.0
    squares = math.fsum((x - mean) ** 2 for x in scores)
    return mean, math.sqrt(squares / (n if policy.std == "population" else n - 1))


def score_out_of_reach(
    scores: Sequence[float],
    committee: int,
    policy: Policy,
    weights: Sequence[float] | None = None,
) -> CommitteeDecision | None:
    """A score rejection that the pending reviews cannot change, if there is one.

    With ``scores`` in from ``committee`` reviewers, the best the committee
    can reach is every pending reviewer scoring the maximum; when even that
    mean is below tau the item is rejected whatever they say (mean < tau
    rejects before std is looked at). Mean and std are over the scores in.
    ``weights``, if given, holds every committee member's weight, those whose
    scores are in first.
    """
    if not scores or len(scores) >= committee:
        return None
    if weights is not None and math.fsum(weights) > 0:
        scored = weights[: len(scores)]
        reach = math.fsum(w * x for w, x in zip(scored, scores, strict=True))
        best = (reach + SCORE_MAX * math.fsum(weights[len(scores) :])) / math.fsum(weights)
    else:
        scored = None
        best = (math.fsum(scores) + SCORE_MAX * (committee - len(scores))) / committee
    if best >= policy.tau:
        return None
    mean, std = committee_stats(scores, policy, scored)
    return CommitteeDecision(
        Verdict.REJECT_SCORE,
        mean,
        std,
        f"committee mean cannot reach tau {policy.tau}: at most {best:.2f} "
        f"with {len(scores)} of {committee} reviews in",
    )


def vetoes(weight: float, weights: Sequence[float] | None) -> bool:
    """Whether a reviewer of ``weight`` can reject by a failed check: every reviewer
    can, unless weights are in use and it has none (no weight anywhere: all can)."""
    return weights is None or weight > 0 or math.fsum(weights) == 0


def decide(
    reviews: Sequence[ReviewOutput], policy: Policy, weights: Sequence[float] | None = None
) -> CommitteeDecision:
    """The committee rule over a complete set of reviews (``weights``: one per review,
    from ``Policy.reviewer_weights``; None: the paper's equal say)."""
    for i, review in enumerate(reviews):
        if not review.checks.passed() and vetoes(weights[i] if weights else 1.0, weights):
            failed = ", ".join(review.checks.failed_names())
            return CommitteeDecision(
                Verdict.REJECT_CHECK, None, None, f"instruction check failed: {failed}"
            )
    mean, std = committee_stats([r.scores.mean() for r in reviews], policy, weights)
    if mean < policy.tau:
        return CommitteeDecision(
            Verdict.REJECT_SCORE, mean, std, f"committee mean {mean:.2f} < tau {policy.tau}"
        )
    if std <= policy.delta:
        return CommitteeDecision(
            Verdict.ACCEPT, mean, std, f"mean {mean:.2f} >= tau, std {std:.2f} <= delta"
        )
    return CommitteeDecision(
        Verdict.ADJUDICATE, mean, std, f"mean {mean:.2f} >= tau but std {std:.2f} > delta"
    )


def draw_roles(
    models: Sequence[str],
    policy: Policy,
    rng: random.Random,
    *,
    reviewer_models: Sequence[str] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Draw a generator uniformly and a committee from the other models.

    ``reviewer_models`` narrows the committee's pool when not every model
    serves the reviewer role; by default every model can review.
    """
    pool = sorted(set(models))
    reviewers_pool = sorted(set(reviewer_models)) if reviewer_models is not None else pool
    size = policy.committee_size(len(set(pool) | set(reviewers_pool)))
    generator = rng.choice(pool)
    others = [m for m in reviewers_pool if m != generator]
    if not others:
        raise ProtocolError(f"no model other than the generator {generator} can review")
    return generator, tuple(rng.sample(others, min(size, len(others))))


def draw_adjudicator(models: Sequence[str], involved: set[str], rng: random.Random) -> str | None:
    candidates = sorted(set(models) - involved)
    return rng.choice(candidates) if candidates else None


# ---- events: everything that can happen to an instance ---------------------


class Event(msgspec.Struct, tag_field="event", frozen=True):
    pass


class Generated(Event, tag="generated"):
    model: str
    item: GeneratedItem


class Reviewed(Event, tag="reviewed"):
    model: str
    review: ReviewOutput


class AdjudicatorDrawn(Event, tag="adjudicator_drawn"):
    model: str | None


class Adjudicated(Event, tag="adjudicated"):
    model: str
    output: AdjudicationOutput


class Replaced(Event, tag="replaced"):
    """A model became unavailable for its role; another eligible one takes over."""

    old: str
    new: str
    # Set for the verification roles (tester, solver, verifier), whose seats are
    # not the committee's: a model may review and write tests for one item.
    role: str = ""


class VerificationPlanned(Event, tag="verification_planned"):
    """What the item is checked as (None: nothing to verify), who writes the
    test sets (one model per seat; a model may take several) and who runs them."""

    kind: str | None
    testers: tuple[str, ...] = ()
    verifier: str | None = None


class EvidenceWritten(Event, tag="evidence_written"):
    """A tester's asserts or a solver's program for one seat; ``failed`` when it gave none."""

    model: str
    seat: int
    tests: tuple[str, ...] = ()
    program: str = ""
    failed: str = ""


class Verified(Event, tag="verified"):
    model: str
    output: VerificationOutput


class Failed(Event, tag="failed"):
    reason: str


class AnnotatorDrawn(Event, tag="annotator_drawn"):
    """A random model is to write the accepted item's metadata (None: no one can)."""

    model: str | None


class Enriched(Event, tag="enriched"):
    model: str
    annotation: Annotation


class CheckVerdict(msgspec.Struct, frozen=True):
    """What a plugin's check step concluded: reject the item (its stage is the
    step's name), or let the acceptance stand."""

    reject: bool
    reason: str
    evidence: str = ""


class CheckerDrawn(Event, tag="checker_drawn"):
    """The model that is to run check step ``check`` (None: no model serves its role)."""

    check: str
    model: str | None


class Checked(Event, tag="checked"):
    check: str
    model: str | None
    verdict: CheckVerdict


InstanceEvent = (
    Generated
    | Reviewed
    | AdjudicatorDrawn
    | Adjudicated
    | Replaced
    | Failed
    | AnnotatorDrawn
    | Enriched
    | VerificationPlanned
    | EvidenceWritten
    | Verified
    | CheckerDrawn
    | Checked
)


# ---- steps: what an instance needs next ------------------------------------


@dataclass(frozen=True)
class Generate:
    model: str
    request: GenerateRequest | RefineRequest
    role: str = "generator"


@dataclass(frozen=True)
class Review:
    model: str
    request: ReviewRequest
    role: str = "reviewer"


@dataclass(frozen=True)
class Adjudicate:
    model: str
    request: AdjudicateRequest
    role: str = "adjudicator"


@dataclass(frozen=True)
class DrawAdjudicator:
    excluded: frozenset[str]


@dataclass(frozen=True)
class DrawAnnotator:
    """Metadata enrichment: any model may annotate, drawn at random."""


@dataclass(frozen=True)
class Annotate:
    model: str
    request: AnnotateRequest
    role: str = "annotator"


@dataclass(frozen=True)
class PlanVerification:
    """Recognise what the item can be checked as, and draw testers and a verifier."""

    excluded: frozenset[str]


@dataclass(frozen=True)
class WriteTests:
    model: str
    request: UnitTestRequest | SolverRequest
    seat: int
    role: str = "tester"


@dataclass(frozen=True)
class Verify:
    model: str
    request: VerifyRequest
    role: str = "verifier"


@dataclass(frozen=True)
class DrawChecker:
    """Draw the model that runs a plugin's check step, among those serving ``role``."""

    check: str
    role: str
    excluded: frozenset[str]


@dataclass(frozen=True)
class RunCheck:
    model: str
    request: Any
    check: str
    role: str
    # The step's place among the instance's check steps.
    seat: int


@dataclass(frozen=True)
class Outcome:
    decision: Literal["accepted", "rejected", "failed"]
    # "instruction_check", "score", "adjudication", "verification", "accepted",
    # "failed", or the name of the plugin step that rejected the item.
    stage: str
    reason: str
    mean: float | None
    std: float | None


Step = (
    Generate
    | Review
    | Adjudicate
    | DrawAdjudicator
    | DrawAnnotator
    | Annotate
    | PlanVerification
    | WriteTests
    | Verify
    | DrawChecker
    | RunCheck
    | Outcome
)
TaskStep = Generate | Review | Adjudicate | Annotate | WriteTests | Verify | RunCheck


def step_seat(step: TaskStep) -> int:
    """A step's place among the steps of its role in one review round (test sets
    have several seats, and a model may hold more than one; check steps of one
    role are told apart by their place among the checks)."""
    return step.seat if isinstance(step, WriteTests | RunCheck) else 0


@dataclass
class ReviewRound:
    """One generate-then-review pass; kept for provenance when revising."""

    item: GeneratedItem
    reviews: dict[str, ReviewOutput]
    outcome: Outcome


@dataclass
class InstanceState:
    instance_id: str
    domain: str
    policy: Policy
    # None in review mode: the item exists already and nobody generates it.
    generator: str | None
    reviewers: tuple[str, ...]
    examples: tuple[Example, ...] = ()
    # Review and refine modes: the existing pair. Refine has the generator
    # rewrite its response first; review takes it as the item to judge.
    original: GeneratedItem | None = None
    inspirations: tuple[Inspiration, ...] = ()
    # Metadata enrichment: an accepted item gets its keywords and summary from
    # a random model before it is final; ``labels`` are the domains it may pick.
    enrich: bool = False
    labels: tuple[str, ...] = ()
    annotator: str | None = None
    annotator_drawn: bool = False
    annotation: Annotation | None = None
    accepted_pending: Outcome | None = None
    round: int = 1
    item: GeneratedItem | None = None
    reviews: dict[str, ReviewOutput] = field(default_factory=dict)
    adjudicator: str | None = None
    adjudicator_drawn: bool = False
    adjudication: AdjudicationOutput | None = None
    committee: CommitteeDecision | None = None
    outcome: Outcome | None = None
    history: list[ReviewRound] = field(default_factory=list)
    # Verification by execution (None or disabled: the paper's protocol).
    verify: VerifyPolicy | None = None
    verification_planned: bool = False
    verify_kind: str | None = None
    testers: tuple[str, ...] = ()
    tests: dict[int, EvidenceWritten] = field(default_factory=dict)
    verifier: str | None = None
    verification: VerificationOutput | None = None
    # Plugin check steps, run on an item about to be accepted (``held``); any of
    # them may reject it instead.
    checks: tuple[CheckStep, ...] = ()
    held: Outcome | None = None
    check_seats: dict[str, str | None] = field(default_factory=dict)
    check_results: dict[str, Checked] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.generator is None:
            if self.original is None:
                raise ProtocolError("an instance without a generator needs an existing item")
            self.item = self.original
            if not self.reviewers:
                # Annotation only (a seed item entering the pool): no review.
                if not self.enrich:
                    raise ProtocolError("an instance needs a committee or an annotation step")
                self.accepted_pending = Outcome("accepted", "accepted", "annotated", None, None)
        elif not self.reviewers:
            raise ProtocolError("an instance needs a committee")
        if self.generator in self.reviewers:
            raise ProtocolError(f"generator {self.generator} cannot review its own sample")
        if len(set(self.reviewers)) != len(self.reviewers):
            raise ProtocolError(f"committee has a repeated model: {self.reviewers}")

    @property
    def involved(self) -> set[str]:
        involved = set(self.reviewers)
        if self.generator:
            involved.add(self.generator)
        if self.adjudicator:
            involved.add(self.adjudicator)
        return involved

    # -- transitions ---------------------------------------------------------

    def apply(self, event: InstanceEvent) -> None:
        if self.outcome is not None:
            raise ProtocolError(f"instance {self.instance_id} is finished; got {event}")
        match event:
            case Generated(model=model, item=item):
                if self.item is not None:
                    raise ProtocolError("the item was already generated")
                if model != self.generator:
                    raise ProtocolError(f"{model} is not this instance's generator")
                self.item = item
            case Reviewed(model=model, review=review):
                if self.item is None:
                    raise ProtocolError("a review arrived before the item")
                if model not in self.reviewers:
                    raise ProtocolError(f"{model} is not on the committee {self.reviewers}")
                if model in self.reviews:
                    raise ProtocolError(f"{model} already reviewed this item")
                self.reviews[model] = review
                if self.committee is None:  # else decided, awaiting verification
                    self._after_review(model, review)
            case AdjudicatorDrawn(model=model):
                if self.committee is None or self.committee.verdict is not Verdict.ADJUDICATE:
                    raise ProtocolError("no adjudication is pending")
                if model is not None and model in self.involved:
                    raise ProtocolError(f"{model} is already involved and cannot adjudicate")
                self.adjudicator_drawn = True
                self.adjudicator = model
                if model is None:
                    self._finish(
                        "rejected",
                        "adjudication",
                        f"{self.committee.reason}; no uninvolved model left to adjudicate",
                    )
            case Adjudicated(model=model, output=output):
                if model != self.adjudicator or self.adjudication is not None:
                    raise ProtocolError(f"{model} is not the pending adjudicator")
                self.adjudication = output
                score = output.scores.mean()
                if score >= self.policy.tau:
                    self._finish("accepted", "accepted", f"adjudicator score {score:.2f} >= tau")
                else:
                    self._finish("rejected", "adjudication", f"adjudicator score {score:.2f} < tau")
            case AnnotatorDrawn(model=model):
                if self.accepted_pending is None or self.annotator_drawn:
                    raise ProtocolError("no enrichment is pending")
                self.annotator_drawn, self.annotator = True, model
                if model is None:
                    self.outcome = self.accepted_pending
            case Enriched(model=model, annotation=annotation):
                if self.accepted_pending is None or model != self.annotator:
                    raise ProtocolError(f"{model} is not the pending annotator")
                self.annotation = annotation
                self.outcome = self.accepted_pending
            case Replaced(old=old, new=new, role=role):
                if role in ("tester", "solver", "verifier"):
                    self._replace_verification(old, new, role)
                elif role and any(check.role.name == role for check in self.checks):
                    self._replace_check(old, new, role)
                else:
                    self._replace(old, new)
            case CheckerDrawn(check=name, model=model):
                if name not in self._open_checks() or name in self.check_seats:
                    raise ProtocolError(f"no check {name!r} is waiting for a model")
                self.check_seats[name] = model
                if model is None:
                    role = self._check_named(name).role.name
                    reason = f"no live model serves the {role} role; the acceptance stands"
                    self._checked(Checked(name, None, CheckVerdict(False, reason)))
            case Checked(check=name, model=model):
                if name not in self._open_checks() or self.check_seats.get(name, "") != model:
                    raise ProtocolError(f"{model} is not running check {name!r}")
                self._checked(event)
            case Failed(reason=reason):
                self._finish("failed", "failed", reason)
            case VerificationPlanned(kind=kind, testers=testers, verifier=verifier):
                if self.item is None or self.verification_planned or not self._verify_applies():
                    raise ProtocolError("no verification is to be planned")
                self.verification_planned = True
                self.verify_kind, self.testers, self.verifier = kind, testers, verifier
                if kind is None and self._rejects_unverified() and self.outcome is None:
                    self._finish(
                        "rejected",
                        "verification",
                        "not verifiable: not recognised as a coding or math item",
                    )
                elif kind is not None and verifier is None:
                    self._verified(
                        VerificationOutput(
                            "cannot_verify", "none", "no verifier in the fleet to run the code"
                        )
                    )
            case EvidenceWritten(model=model, seat=seat):
                if not self._verification_pending() or seat >= len(self.testers):
                    raise ProtocolError(f"no test set is pending for seat {seat}")
                if self.testers[seat] != model or seat in self.tests:
                    raise ProtocolError(f"{model} does not hold test seat {seat}")
                self.tests[seat] = event
            case Verified(model=model, output=output):
                if not self._verification_pending() or model != self.verifier:
                    raise ProtocolError(f"{model} is not the pending verifier")
                if len(self.tests) < len(self.testers):
                    raise ProtocolError("verified before every test seat was answered")
                self._verified(output)

    def _replace(self, old: str, new: str) -> None:
        if self.accepted_pending is not None and old == self.annotator:
            if self.annotation is not None:
                raise ProtocolError(f"{old} has no pending work to hand over")
            self.annotator = new  # any model may annotate, involved or not
            return
        if new in self.involved:
            raise ProtocolError(f"{new} is already involved in this instance")
        if old == self.generator and self.item is None:
            self.generator = new
        elif old in self.reviewers and old not in self.reviews:
            self.reviewers = tuple(new if m == old else m for m in self.reviewers)
        elif old == self.adjudicator and self.adjudication is None:
            self.adjudicator = new
        else:
            raise ProtocolError(f"{old} has no pending work to hand over")

    def _replace_verification(self, old: str, new: str, role: str) -> None:
        if role == "verifier":
            if old != self.verifier or self.verification is not None:
                raise ProtocolError(f"{old} has no pending verification to hand over")
            self.verifier = new
            return
        seats = [i for i, m in enumerate(self.testers) if m == old and i not in self.tests]
        if not seats or new == self.generator:
            raise ProtocolError(f"{old} has no pending test set to hand over to {new}")
        self.testers = tuple(new if i in seats else m for i, m in enumerate(self.testers))

    # -- plugin check steps ---------------------------------------------------

    def _check_named(self, name: str) -> CheckStep:
        return next(check for check in self.checks if check.name == name)

    def _open_checks(self) -> list[str]:
        """The check steps the held acceptance still waits for."""
        if self.held is None:
            return []
        return [
            check.name
            for check in self.checks
            if check.name not in self.check_results and check.applies(self)
        ]

    def _checked(self, event: Checked) -> None:
        self.check_results[event.check] = event
        held, verdict = self.held, event.verdict
        assert held is not None
        if verdict.reject:
            self.held = None
            self._finish("rejected", event.check, verdict.reason)
        elif not self._open_checks():
            self.held = None
            self._settle(held)

    def _replace_check(self, old: str, new: str, role: str) -> None:
        names = [
            check.name
            for check in self.checks
            if check.role.name == role
            and self.check_seats.get(check.name) == old
            and check.name not in self.check_results
        ]
        if not names or self.held is None:
            raise ProtocolError(f"{old} has no pending {role} check to hand over")
        for name in names:
            self.check_seats[name] = new

    def _check_steps(self) -> list[Step]:
        steps: list[Step] = []
        open_checks = self._open_checks()
        for seat, check in enumerate(self.checks):
            if check.name not in open_checks:
                continue
            if check.name not in self.check_seats:
                generator = {self.generator} if self.generator and check.exclude_generator else ()
                steps.append(DrawChecker(check.name, check.role.name, frozenset(generator)))
                continue
            model = self.check_seats[check.name]
            assert model is not None
            request = check.request_for(self)
            steps.append(RunCheck(model, request, check.name, check.role.name, seat))
        return steps

    # -- verification --------------------------------------------------------

    def _verify_applies(self) -> bool:
        return self.verify is not None and self.verify.enabled

    def _verification_pending(self) -> bool:
        return (
            self.verification_planned and self.verify_kind is not None and self.verification is None
        )

    def _rejects_unverified(self) -> bool:
        return self.verify is not None and self.verify.unverified == "reject"

    def _awaits_verification(self, decision: CommitteeDecision) -> bool:
        """Whether a committee decision must wait for the verification's verdict."""
        if not self._verify_applies():
            return False
        if self.verification_planned and not self._verification_pending():
            return False  # verified already, or nothing to verify
        if decision.verdict in (Verdict.ACCEPT, Verdict.ADJUDICATE):
            return True  # a failed verification still rejects
        assert self.verify is not None
        return self.verify.on_pass == "accept"  # a pass would overturn the rejection

    def _verified(self, output: VerificationOutput) -> None:
        assert self.verify is not None
        self.verification = output
        if output.verdict == "failed":
            # Final: execution evidence is not a matter of opinion to revise against.
            self._finish("rejected", "verification", f"verification failed: {output.reason}")
        elif output.verdict == "passed" and self.verify.on_pass == "accept":
            self._finish("accepted", "accepted", f"verification passed: {output.reason}")
        elif output.verdict == "cannot_verify" and self._rejects_unverified():
            self._finish("rejected", "verification", f"could not be verified: {output.reason}")
        elif self.committee is not None:
            self._decide(self.committee)

    def written_evidence(self) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
        """The test sets and programs the seats wrote, in seat order. A tester's
        solution stays beside its test set (empty when it wrote none): the verifier
        tells an author's own solution from the others' by position."""
        written = [self.tests[i] for i in sorted(self.tests)]
        if self.verify_kind == "coding":
            with_tests = [w for w in written if w.tests]
            return tuple(w.tests for w in with_tests), tuple(w.program for w in with_tests)
        return tuple(w.tests for w in written if w.tests), tuple(
            w.program for w in written if w.program
        )

    def _verification_steps(self) -> list[Step]:
        assert self.item is not None and self.verify is not None
        pending = [i for i in range(len(self.testers)) if i not in self.tests]
        if pending:
            if self.verify_kind == "math":
                request: UnitTestRequest | SolverRequest = SolverRequest(
                    self.verify_kind, self.item.instruction
                )
                role = "solver"
            else:
                request = UnitTestRequest(
                    "coding", self.item.instruction, self.verify.tests_per_set
                )
                role = "tester"
            return [WriteTests(self.testers[i], request, i, role) for i in pending]
        assert self.verifier is not None and self.verify_kind is not None
        test_sets, programs = self.written_evidence()
        request = VerifyRequest(
            self.verify_kind,
            self.item.instruction,
            self.item.response,
            test_sets=test_sets,
            programs=programs,
            wall_s=self.verify.timeout_s,
            test_timeout_s=self.verify.test_timeout_s,
            test_agreement=self.verify.test_agreement,
            min_solver_agreement=self.verify.min_solver_agreement,
        )
        return [Verify(self.verifier, request)]

    def _weights(self, models: Sequence[str]) -> list[float] | None:
        """The reviewers' weights in the order of ``models`` (None: equal say)."""
        if not self.policy.reviewer_weights:
            return None
        return [self.policy.weight_of(m) for m in models]

    def _after_review(self, model: str, review: ReviewOutput) -> None:
        committee = self._weights(self.reviewers)
        if (
            not review.checks.passed()
            and self.policy.reject_when_decided
            and self._last_round()
            and vetoes(self.policy.weight_of(model), committee)
        ):
            decision = decide([review], self.policy)
            self._end_round(CommitteeDecision(Verdict.REJECT_CHECK, None, None, decision.reason))
            return
        if len(self.reviews) < len(self.reviewers):
            if self.policy.reject_when_decided and self._last_round():
                scores = [r.scores.mean() for r in self.reviews.values()]
                order = [*self.reviews, *(m for m in self.reviewers if m not in self.reviews)]
                early = score_out_of_reach(
                    scores, len(self.reviewers), self.policy, self._weights(order)
                )
                if early is not None:
                    self._end_round(early)
            return
        weights = self._weights(list(self.reviews))
        self._end_round(decide(list(self.reviews.values()), self.policy, weights))

    def _last_round(self) -> bool:
        """No revision follows a rejection now, so a partial committee may decide it
        (a revision round gets the whole committee's feedback)."""
        return self.round >= self.policy.max_rounds or self.generator is None

    def _end_round(self, decision: CommitteeDecision) -> None:
        self.committee = decision
        if not self._awaits_verification(decision):
            self._decide(decision)

    def _decide(self, decision: CommitteeDecision) -> None:
        match decision.verdict:
            case Verdict.ACCEPT:
                self._finish("accepted", "accepted", decision.reason)
            case Verdict.REJECT_CHECK:
                self._reject_or_revise("instruction_check", decision.reason)
            case Verdict.REJECT_SCORE:
                self._reject_or_revise("score", decision.reason)
            case Verdict.ADJUDICATE:
                pass

    def _reject_or_revise(self, stage: Literal["instruction_check", "score"], reason: str) -> None:
        if self._last_round():
            self._finish("rejected", stage, reason)
            return
        assert self.item is not None and self.committee is not None
        outcome = Outcome("rejected", stage, reason, self.committee.mean, self.committee.std)
        self.history.append(ReviewRound(self.item, dict(self.reviews), outcome))
        self.round += 1
        self.item = None
        self.reviews = {}
        self.committee = None
        self.verification_planned, self.verify_kind = False, None
        self.testers, self.tests, self.verifier, self.verification = (), {}, None, None

    def _finish(
        self, decision: Literal["accepted", "rejected", "failed"], stage: str, reason: str
    ) -> None:
        mean = self.committee.mean if self.committee else None
        std = self.committee.std if self.committee else None
        outcome = Outcome(decision, stage, reason, mean, std)
        if decision == "accepted" and self.checks:
            self.held = outcome  # the plugin checks may still reject it
            if self._open_checks():
                return
            self.held = None
        self._settle(outcome)

    def _settle(self, outcome: Outcome) -> None:
        if outcome.decision == "accepted" and self.enrich:
            self.accepted_pending = outcome  # final once enriched
        else:
            self.outcome = outcome

    # -- what is needed next -------------------------------------------------

    def next_steps(self) -> list[Step]:
        """Everything the instance is waiting for; empty never happens."""
        if self.outcome is not None:
            return [self.outcome]
        if self.held is not None:
            return self._check_steps()
        if self.accepted_pending is not None:
            if not self.annotator_drawn:
                return [DrawAnnotator()]
            assert self.annotator is not None and self.item is not None
            request = AnnotateRequest(self.item.instruction, self.item.response, self.labels)
            return [Annotate(self.annotator, request)]
        if self.item is None:
            assert self.generator is not None
            if self.original is not None:
                refine = RefineRequest(
                    self.domain, self.original.instruction, self.original.response
                )
                return [Generate(self.generator, refine, role="refiner")]
            return [Generate(self.generator, self._generate_request())]
        if self._verify_applies() and not self.verification_planned:
            excluded = frozenset({self.generator} if self.generator else ())
            return [PlanVerification(excluded)]
        steps: list[Step] = []
        if self._verification_pending():
            steps = self._verification_steps()
        if self.committee is None:
            request = ReviewRequest(
                self.domain,
                self.item.instruction,
                self.item.response,
                self.policy.reviewer_prompt,
            )
            return steps + [Review(m, request) for m in self.reviewers if m not in self.reviews]
        if steps:
            return steps  # the committee has spoken; its decision waits for the verdict
        if not self.adjudicator_drawn:
            return [DrawAdjudicator(frozenset(self.involved))]
        assert self.adjudicator is not None
        feedback = tuple(
            ReviewerFeedback(r.scores.mean(), r.feedback()) for r in self.reviews.values()
        )
        request = AdjudicateRequest(
            self.domain, self.item.instruction, self.item.response, feedback
        )
        return [Adjudicate(self.adjudicator, request)]

    def _generate_request(self) -> GenerateRequest:
        checkable = (
            self.verify is not None and self.verify.enabled and self.domain in self.verify.domains
        )
        if not self.history:
            return GenerateRequest(
                self.domain, self.examples, inspirations=self.inspirations, checkable=checkable
            )
        last = self.history[-1]
        feedback = "\n".join(
            f"Reviewer {i + 1}: " + r.feedback() for i, r in enumerate(last.reviews.values())
        )
        previous = Example(last.item.instruction, last.item.response)
        return GenerateRequest(
            self.domain,
            self.examples,
            previous,
            f"{last.outcome.reason}\n{feedback}",
            self.inspirations,
            checkable,
        )
