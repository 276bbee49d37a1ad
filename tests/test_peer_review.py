"""The GRA peer-review rules (GRA_METHOD.md) exercised through the pure state machine.

Every branch of the committee rule, the adjudicator, role draws and their
exclusions, replacements, small fleets, revision rounds and terminal states.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest

from gra.protocols.assignment import BalancedDraw
from gra.protocols.peer_review import (
    Adjudicate,
    Adjudicated,
    AdjudicatorDrawn,
    DrawAdjudicator,
    Failed,
    Generate,
    Generated,
    InstanceState,
    Outcome,
    Policy,
    ProtocolError,
    Replaced,
    Review,
    Reviewed,
    Verdict,
    committee_stats,
    decide,
    score_out_of_reach,
)
from gra.protocols.roles import (
    CHECK_NAMES,
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

GEN = "gen"
COMMITTEE = ("r1", "r2", "r3")
FLEET = ("gen", "r1", "r2", "r3", "adj")
ITEM = GeneratedItem(instruction="Sort a list in Python.", response="Use sorted(xs).")
ITEM_2 = GeneratedItem(instruction="Sort a list in place.", response="Use xs.sort().")
EXAMPLES = (Example("Reverse a string.", "Use s[::-1]."),)


# ---- helpers ---------------------------------------------------------------


def scores(values: int | Sequence[int]) -> Scores:
    """Six scores: one value repeated, or six given values."""
    six = [values] * 6 if isinstance(values, int) else list(values)
    assert len(six) == 6
    return Scores(*six)


def review(
    values: int | Sequence[int],
    *,
    failed: Sequence[str] = (),
    strengths: str = "clear",
    weaknesses: str = "terse",
) -> ReviewOutput:
    checks = Checks(**{name: name not in failed for name in CHECK_NAMES})
    return ReviewOutput(checks, scores(values), strengths, weaknesses)


def adjudication(values: int | Sequence[int], feedback: str = "re-scored") -> AdjudicationOutput:
    return AdjudicationOutput(scores(values), feedback)


def make_state(
    policy: Policy | None = None,
    generator: str = GEN,
    reviewers: tuple[str, ...] = COMMITTEE,
) -> InstanceState:
    return InstanceState(
        instance_id="inst-1",
        domain="coding",
        policy=policy or Policy(),
        generator=generator,
        reviewers=reviewers,
        examples=EXAMPLES,
    )


def reviewed_state(reviews: Sequence[ReviewOutput], policy: Policy | None = None) -> InstanceState:
    """An instance whose generator produced ITEM and whose committee sent ``reviews``.

    Every review is applied (no early score decision), so these tests see the
    committee rule over complete sets, as the paper states it.
    """
    policy = msgspec.structs.replace(policy or Policy(), reject_when_decided=False)
    state = make_state(policy, reviewers=tuple(f"r{i + 1}" for i in range(len(reviews))))
    state.apply(Generated(GEN, ITEM))
    for i, rev in enumerate(reviews):
        state.apply(Reviewed(f"r{i + 1}", rev))
    return state


def outcome(state: InstanceState) -> Outcome:
    steps = state.next_steps()
    assert len(steps) == 1
    assert isinstance(steps[0], Outcome)
    assert steps[0] == state.outcome
    return steps[0]


# ---- the happy path and its steps --------------------------------------------


def test_steps_go_generate_then_review_all_committee() -> None:
    state = make_state()
    assert state.next_steps() == [Generate(GEN, GenerateRequest("coding", EXAMPLES))]
    state.apply(Generated(GEN, ITEM))
    request = ReviewRequest("coding", ITEM.instruction, ITEM.response)
    assert state.next_steps() == [Review(m, request) for m in COMMITTEE]
    state.apply(Reviewed("r2", review(9)))
    assert state.next_steps() == [Review("r1", request), Review("r3", request)]
    assert state.outcome is None


# ---- instruction check -----------------------------------------------------


@pytest.mark.parametrize("criterion", CHECK_NAMES)
@pytest.mark.parametrize("reviewer", COMMITTEE)
def test_any_failed_check_by_any_reviewer_rejects_at_once(reviewer: str, criterion: str) -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    # Perfect scores: the check alone must reject, before the others review.
    state.apply(Reviewed(reviewer, review(10, failed=[criterion])))
    result = outcome(state)
    assert result.decision == "rejected"
    assert result.stage == "instruction_check"
    assert criterion in result.reason
    assert result.mean is None and result.std is None
    others = [m for m in COMMITTEE if m != reviewer]
    with pytest.raises(ProtocolError):
        state.apply(Reviewed(others[0], review(10)))


def test_failed_check_after_passing_reviews_still_rejects_before_last_review() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(10)))
    assert state.outcome is None
    state.apply(Reviewed("r2", review(10, failed=["clarity", "rationality"])))
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "instruction_check")
    assert "rationality, clarity" in result.reason
    assert "r3" not in state.reviews


# ---- committee rule ----------------------------------------------------------


def test_mean_below_tau_rejects_at_stage_score() -> None:
    state = reviewed_state([review(7), review(8), review(8)])
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "score")
    assert result.mean == pytest.approx(23 / 3)
    assert result.std == pytest.approx(statistics.pstdev([7, 8, 8]))
    assert "7.67 < tau 8.0" in result.reason


def test_mean_below_tau_rejects_even_with_large_spread() -> None:
    state = reviewed_state([review(10), review(10), review(2)])
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "score")
    assert result.mean == pytest.approx(22 / 3)


def test_mean_at_least_tau_and_low_std_accepts() -> None:
    state = reviewed_state([review(9), review(9), review(10)])
    result = outcome(state)
    assert (result.decision, result.stage) == ("accepted", "accepted")
    assert result.mean == pytest.approx(28 / 3)
    assert result.std == pytest.approx(0.4714, abs=1e-4)


def test_mean_exactly_tau_accepts() -> None:
    result = outcome(reviewed_state([review(8), review(8), review(8)]))
    assert (result.decision, result.mean, result.std) == ("accepted", 8.0, 0.0)


def test_std_exactly_delta_accepts() -> None:
    # Two reviewers 7 and 10: mean 8.5, population std exactly 1.5 == delta.
    state = reviewed_state([review(7), review(10)], Policy(reviewers=2))
    result = outcome(state)
    assert result.std == 1.5
    assert (result.decision, result.stage) == ("accepted", "accepted")


def test_high_mean_high_std_needs_adjudicator_then_accepts() -> None:
    state = reviewed_state([review(10), review(10), review(6)])
    assert state.committee is not None
    assert state.committee.verdict is Verdict.ADJUDICATE
    assert state.outcome is None
    assert state.next_steps() == [DrawAdjudicator(frozenset({GEN, *COMMITTEE}))]

    state.apply(AdjudicatorDrawn("adj"))
    expected_reviews = (
        ReviewerFeedback(10.0, "Strengths: clear\nWeaknesses: terse"),
        ReviewerFeedback(10.0, "Strengths: clear\nWeaknesses: terse"),
        ReviewerFeedback(6.0, "Strengths: clear\nWeaknesses: terse"),
    )
    request = AdjudicateRequest("coding", ITEM.instruction, ITEM.response, expected_reviews)
    assert state.next_steps() == [Adjudicate("adj", request)]

    state.apply(Adjudicated("adj", adjudication(8)))
    result = outcome(state)
    assert (result.decision, result.stage) == ("accepted", "accepted")
    assert "adjudicator score 8.00 >= tau" in result.reason
    assert result.mean == pytest.approx(26 / 3)


def test_adjudicator_score_below_tau_rejects_at_stage_adjudication() -> None:
    state = reviewed_state([review(10), review(10), review(6)])
    state.apply(AdjudicatorDrawn("adj"))
    state.apply(Adjudicated("adj", adjudication([8, 8, 8, 8, 8, 7])))
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "adjudication")
    assert "adjudicator score 7.83 < tau" in result.reason


def test_papers_worked_example_adjudicator_discards_what_majority_would_keep() -> None:
    # Reviewer means 4.67, 9.83, 10: two of three pass tau alone (majority
    # voting would keep the item), the committee mean passes, sigma = 2.48.
    low = review([5, 5, 5, 5, 4, 4])
    high = review([10, 10, 10, 10, 10, 9])
    top = review(10)
    means = [low.scores.mean(), high.scores.mean(), top.scores.mean()]
    assert sum(m >= 8 for m in means) == 2
    mean, std = committee_stats(means, Policy())
    assert round(mean, 2) == 8.17
    assert round(std, 2) == 2.48

    state = reviewed_state([high, top, low])
    assert state.committee is not None
    assert state.committee.verdict is Verdict.ADJUDICATE
    assert round(state.committee.std or 0.0, 2) == 2.48
    assert "std 2.48 > delta" in state.committee.reason
    state.apply(AdjudicatorDrawn("adj"))
    state.apply(Adjudicated("adj", adjudication(3, "the response is wrong")))
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "adjudication")
    assert round(result.std or 0.0, 2) == 2.48


def test_decide_reports_each_verdict() -> None:
    policy = Policy()
    assert decide([review(9, failed=["completeness"])], policy).verdict is Verdict.REJECT_CHECK
    assert decide([review(7), review(8)], policy).verdict is Verdict.REJECT_SCORE
    assert decide([review(9), review(9)], policy).verdict is Verdict.ACCEPT
    assert decide([review(10), review(6), review(10)], policy).verdict is Verdict.ADJUDICATE


def test_committee_stats_agree_with_exact_statistics() -> None:
    rng = random.Random(4)
    for _ in range(5_000):
        means = [rng.randint(6, 60) / 6 for _ in range(rng.randint(2, 6))]
        for kind, exact in (("population", statistics.pstdev), ("sample", statistics.stdev)):
            mean, std = committee_stats(means, Policy(std=kind))
            assert mean == pytest.approx(statistics.fmean(means), rel=1e-12)
            assert std == pytest.approx(exact(means), rel=1e-12, abs=1e-12)


def test_committee_stats_of_one_reviewer_has_zero_std() -> None:
    assert committee_stats([7.5], Policy(std="sample")) == (7.5, 0.0)
    assert committee_stats([7.5], Policy()) == (7.5, 0.0)


# ---- configurable thresholds -----------------------------------------------


def test_custom_tau_changes_the_outcome() -> None:
    reviews = [review(7), review(8), review(8)]
    assert outcome(reviewed_state(reviews)).decision == "rejected"
    assert outcome(reviewed_state(reviews, Policy(tau=7.5))).decision == "accepted"
    assert outcome(reviewed_state([review(9)] * 3, Policy(tau=9.5))).stage == "score"


def test_custom_delta_changes_the_outcome() -> None:
    reviews = [review(10), review(10), review(6)]  # population std 1.886
    assert reviewed_state(reviews).committee.verdict is Verdict.ADJUDICATE  # type: ignore[union-attr]
    relaxed = outcome(reviewed_state(reviews, Policy(delta=2.0)))
    assert (relaxed.decision, relaxed.stage) == ("accepted", "accepted")
    strict = reviewed_state([review(9), review(9), review(10)], Policy(delta=0.4))
    assert strict.committee is not None
    assert strict.committee.verdict is Verdict.ADJUDICATE


def test_custom_tau_also_binds_the_adjudicator() -> None:
    state = reviewed_state([review(10), review(10), review(6)], Policy(tau=6.0))
    state.apply(AdjudicatorDrawn("adj"))
    state.apply(Adjudicated("adj", adjudication(6)))
    assert outcome(state).decision == "accepted"


def test_population_and_sample_std_differ() -> None:
    reviews = [review(10), review(10), review(7)]
    pop = outcome(reviewed_state(reviews, Policy(std="population")))
    assert pop.std == pytest.approx(2**0.5)  # 1.414 <= 1.5
    assert pop.decision == "accepted"
    sample = reviewed_state(reviews, Policy(std="sample"))
    assert sample.committee is not None
    assert sample.committee.std == pytest.approx(3**0.5)  # 1.732 > 1.5
    assert sample.committee.verdict is Verdict.ADJUDICATE
    assert sample.outcome is None


def test_policy_defaults_are_the_papers() -> None:
    policy = Policy()
    assert (policy.tau, policy.delta, policy.reviewers) == (8.0, 1.5, 3)
    assert (policy.std, policy.reserve_adjudicator, policy.max_rounds) == (
        "population",
        False,
        1,
    )


# ---- deciding a rejection before the committee is complete ---------------------


def test_score_rejection_is_decided_once_tau_is_out_of_reach() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r2", review(5)))  # best mean (5 + 10 + 10) / 3 = 8.33
    assert state.outcome is None
    state.apply(Reviewed("r1", review(7)))  # best (5 + 7 + 10) / 3 = 7.33 < 8
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "score")
    assert "at most 7.33 with 2 of 3 reviews in" in result.reason
    assert result.mean == 6.0 and result.std == 1.0  # over the reviews in
    assert set(state.reviews) == {"r1", "r2"}
    with pytest.raises(ProtocolError):
        state.apply(Reviewed("r3", review(10)))


def test_a_reachable_tau_waits_for_the_whole_committee() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(4)))  # best (4 + 20) / 3 = 8.0: still reachable
    state.apply(Reviewed("r2", review(10)))
    assert state.outcome is None
    assert [s.model for s in state.next_steps()] == ["r3"]


def test_every_review_is_completed_when_early_decisions_are_off() -> None:
    state = make_state(Policy(reject_when_decided=False))
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(0)))
    state.apply(Reviewed("r2", review(0)))
    assert state.outcome is None
    state.apply(Reviewed("r3", review(10)))
    assert outcome(state).reason == "committee mean 3.33 < tau 8.0"


def test_a_revision_round_waits_for_the_whole_committee() -> None:
    state = make_state(Policy(max_rounds=2))
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(0)))
    state.apply(Reviewed("r2", review(0)))
    assert state.round == 1 and state.outcome is None  # its feedback goes back whole
    state.apply(Reviewed("r3", review(9)))
    assert state.round == 2


@pytest.mark.parametrize("seed", range(5))
def test_early_decisions_never_change_a_decision(seed: int) -> None:
    """Any committee size, scores, failed checks and arrival order: the same
    decision as over the complete committee, with at most as many reviews.
    The stage may differ only between two rejections (a pending review that
    would have failed a check is cancelled once the score decided)."""
    rng = random.Random(seed)
    early_rejections = 0
    for _ in range(400):
        size = rng.randint(1, 5)
        committee = tuple(f"r{i + 1}" for i in range(size))
        reviews = {
            model: review(
                [rng.choice((0, 3, 6, 7, 8, 9, 10)) for _ in range(6)],
                failed=["clarity"] if rng.random() < 0.1 else [],
            )
            for model in committee
        }
        order = rng.sample(committee, size)
        tau = rng.choice((6.0, 8.0, 9.0))
        results = []
        for early in (True, False):
            state = make_state(
                Policy(tau=tau, reviewers=size, reject_when_decided=early), reviewers=committee
            )
            state.apply(Generated(GEN, ITEM))
            for model in order:
                if state.outcome is None and state.committee is None:
                    state.apply(Reviewed(model, reviews[model]))
            assert state.committee is not None
            decision = state.outcome.decision if state.outcome else "adjudicate"
            results.append((decision, state.committee.verdict, len(state.reviews)))
        (decision, verdict, seen), (full_decision, full_verdict, full_seen) = results
        assert decision == full_decision
        if full_verdict in (Verdict.ACCEPT, Verdict.ADJUDICATE):
            assert verdict is full_verdict and seen == full_seen
        assert seen <= full_seen
        early_rejections += seen < full_seen
    assert early_rejections > 0  # the property was exercised, not vacuous


def test_score_out_of_reach_bounds() -> None:
    policy = Policy()
    assert score_out_of_reach([], 3, policy) is None
    assert score_out_of_reach([0.0, 0.0, 0.0], 3, policy) is None  # complete: decide() rules
    assert score_out_of_reach([6.0], 2, policy) is None  # (6 + 10) / 2 = 8 reaches tau
    decision = score_out_of_reach([5.9], 2, policy)
    assert decision is not None and decision.verdict is Verdict.REJECT_SCORE


# ---- role draws and exclusions ------------------------------------------------
# The draw the conductor makes (gra.protocols.assignment.BalancedDraw, as the
# supervisor builds it from the policy), with no model busy.


def conductor_draw(
    models: Sequence[str],
    policy: Policy,
    rng: random.Random,
    draw: BalancedDraw | None = None,
    reviewer_models: Sequence[str] | None = None,
) -> tuple[str, tuple[str, ...]]:
    draw = draw or BalancedDraw(policy.assignment_slack)
    return draw.draw(models, policy, rng, reviewer_models=reviewer_models)


def adjudicator_seat(
    draw: BalancedDraw, models: Sequence[str], involved: set[str], rng: random.Random
) -> str | None:
    return draw.seat("adjudicator", set(models) - involved, rng)


def test_generator_is_never_in_its_committee() -> None:
    models = ["a", "b", "c", "d", "e"]
    draw = BalancedDraw(Policy().assignment_slack)
    for seed in range(2000):
        generator, committee = conductor_draw(models, Policy(), random.Random(seed), draw)
        assert generator in models
        assert generator not in committee
        assert len(committee) == 3
        assert len(set(committee)) == 3
        assert set(committee) <= set(models)


def test_the_draw_is_uniform_over_generators_and_reviewers() -> None:
    models = ["a", "b", "c", "d", "e"]
    rng = random.Random(12345)
    draw = BalancedDraw(Policy().assignment_slack)
    n = 30_000
    generators: Counter[str] = Counter()
    reviewers: Counter[str] = Counter()
    for _ in range(n):
        generator, committee = conductor_draw(models, Policy(), rng, draw)
        generators[generator] += 1
        reviewers.update(committee)
    assert set(generators) == set(models)
    for model in models:
        assert generators[model] / n == pytest.approx(1 / 5, rel=0.03)
        # P(on the committee) = P(not generator) * 3/4 = 3/5.
        assert reviewers[model] / n == pytest.approx(3 / 5, rel=0.03)


def test_the_draw_is_deterministic_for_a_seed() -> None:
    models = ["a", "b", "c", "d", "e"]
    first = [conductor_draw(models, Policy(), random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_the_draw_with_narrower_reviewer_pool() -> None:
    models = ["a", "b", "c", "d", "e"]
    for seed in range(500):
        generator, committee = conductor_draw(
            models, Policy(), random.Random(seed), reviewer_models=["a", "b", "c"]
        )
        assert generator not in committee
        assert set(committee) <= {"a", "b", "c"}
        assert len(committee) == (2 if generator in {"a", "b", "c"} else 3)
    with pytest.raises(ProtocolError):
        conductor_draw(["a"], Policy(), random.Random(0), reviewer_models=["a"])


def test_adjudicator_is_never_the_generator_or_a_reviewer() -> None:
    models = ["a", "b", "c", "d", "e", "f"]
    draw = BalancedDraw(Policy().assignment_slack)
    for seed in range(2000):
        rng = random.Random(seed)
        generator, committee = conductor_draw(models, Policy(), rng, draw)
        adjudicator = adjudicator_seat(draw, models, {generator, *committee}, rng)
        assert adjudicator is not None
        assert adjudicator != generator
        assert adjudicator not in committee
    assert adjudicator_seat(draw, ["a", "b"], {"a", "b"}, random.Random(0)) is None


@pytest.mark.parametrize("involved", [GEN, *COMMITTEE])
def test_adjudicator_drawn_refuses_an_involved_model(involved: str) -> None:
    state = reviewed_state([review(10), review(10), review(6)])
    with pytest.raises(ProtocolError, match="already involved"):
        state.apply(AdjudicatorDrawn(involved))
    assert state.adjudicator is None
    assert not state.adjudicator_drawn
    state.apply(AdjudicatorDrawn("adj"))
    assert state.adjudicator == "adj"


def test_adjudicator_drawn_without_pending_adjudication_raises() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    with pytest.raises(ProtocolError, match="no adjudication is pending"):
        state.apply(AdjudicatorDrawn("adj"))


def test_adjudicated_by_someone_else_or_twice_raises() -> None:
    state = reviewed_state([review(10), review(10), review(6)])
    with pytest.raises(ProtocolError):
        state.apply(Adjudicated("adj", adjudication(9)))  # not drawn yet
    state.apply(AdjudicatorDrawn("adj"))
    with pytest.raises(ProtocolError):
        state.apply(Adjudicated("r1", adjudication(9)))
    assert state.outcome is None


@pytest.mark.parametrize("outsider", [GEN, "adj", "nobody"])
def test_review_from_outside_the_committee_raises(outsider: str) -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    with pytest.raises(ProtocolError, match="not on the committee"):
        state.apply(Reviewed(outsider, review(9)))
    assert state.reviews == {}


def test_duplicate_review_raises_and_keeps_the_first() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(9)))
    with pytest.raises(ProtocolError, match="already reviewed"):
        state.apply(Reviewed("r1", review(2)))
    assert state.reviews["r1"].scores.mean() == 9.0


def test_review_before_the_item_raises() -> None:
    with pytest.raises(ProtocolError, match="before the item"):
        make_state().apply(Reviewed("r1", review(9)))


def test_generated_from_a_non_generator_raises() -> None:
    state = make_state()
    with pytest.raises(ProtocolError, match="not this instance's generator"):
        state.apply(Generated("r1", ITEM))
    assert state.item is None
    state.apply(Generated(GEN, ITEM))
    with pytest.raises(ProtocolError, match="already generated"):
        state.apply(Generated(GEN, ITEM_2))
    assert state.item == ITEM


def test_instance_refuses_a_committee_with_the_generator_or_repeats() -> None:
    with pytest.raises(ProtocolError):
        make_state(reviewers=("r1", GEN, "r2"))
    with pytest.raises(ProtocolError):
        make_state(reviewers=("r1", "r1", "r2"))


# ---- replacements ----------------------------------------------------------------


def test_replaced_generator_before_generating() -> None:
    state = make_state()
    state.apply(Replaced(GEN, "adj"))
    assert state.generator == "adj"
    assert state.next_steps() == [Generate("adj", GenerateRequest("coding", EXAMPLES))]
    with pytest.raises(ProtocolError):
        state.apply(Generated(GEN, ITEM))
    state.apply(Generated("adj", ITEM))
    with pytest.raises(ProtocolError, match="no pending work"):
        state.apply(Replaced("adj", "other"))


def test_replaced_reviewer_hands_pending_review_over() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(9)))
    state.apply(Replaced("r2", "adj"))
    assert state.reviewers == ("r1", "adj", "r3")
    assert [s.model for s in state.next_steps() if isinstance(s, Review)] == ["adj", "r3"]
    with pytest.raises(ProtocolError):
        state.apply(Reviewed("r2", review(9)))
    with pytest.raises(ProtocolError, match="no pending work"):
        state.apply(Replaced("r1", "other"))  # r1 already reviewed
    state.apply(Reviewed("adj", review(9)))
    state.apply(Reviewed("r3", review(9)))
    assert outcome(state).decision == "accepted"


@pytest.mark.parametrize("involved", [GEN, "r1", "r3"])
def test_replaced_refuses_an_involved_model(involved: str) -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    with pytest.raises(ProtocolError, match="already involved"):
        state.apply(Replaced("r2", involved))
    assert state.reviewers == COMMITTEE


def test_replaced_adjudicator_and_refuses_reviewer_as_new() -> None:
    state = reviewed_state([review(10), review(10), review(6)])
    state.apply(AdjudicatorDrawn("adj"))
    with pytest.raises(ProtocolError, match="already involved"):
        state.apply(Replaced("adj", "r1"))
    state.apply(Replaced("adj", "spare"))
    assert state.adjudicator == "spare"
    steps = state.next_steps()
    assert len(steps) == 1 and isinstance(steps[0], Adjudicate)
    assert steps[0].model == "spare"
    with pytest.raises(ProtocolError):
        state.apply(Adjudicated("adj", adjudication(10)))
    state.apply(Adjudicated("spare", adjudication(10)))
    assert outcome(state).decision == "accepted"


def test_replaced_for_an_unknown_model_raises() -> None:
    with pytest.raises(ProtocolError, match="no pending work"):
        make_state().apply(Replaced("stranger", "adj"))


# ---- fleets smaller or larger than the paper's --------------------------------


@pytest.mark.parametrize(
    ("n_models", "plain", "reserved"),
    [(2, 1, 1), (3, 2, 1), (4, 3, 2), (5, 3, 3), (6, 3, 3)],
)
def test_committee_size_by_fleet_size(n_models: int, plain: int, reserved: int) -> None:
    assert Policy().committee_size(n_models) == plain
    assert Policy(reserve_adjudicator=True).committee_size(n_models) == reserved
    models = [f"m{i}" for i in range(n_models)]
    generator, committee = conductor_draw(models, Policy(), random.Random(n_models))
    assert generator not in committee
    assert len(committee) == plain
    _, committee = conductor_draw(models, Policy(reserve_adjudicator=True), random.Random(n_models))
    assert len(committee) == reserved


@pytest.mark.parametrize("n_models", [0, 1])
def test_fewer_than_two_models_raises(n_models: int) -> None:
    with pytest.raises(ProtocolError, match="at least 2 models"):
        Policy().committee_size(n_models)
    if n_models:
        with pytest.raises(ProtocolError):
            conductor_draw(["solo"], Policy(), random.Random(0))


def test_reserve_adjudicator_always_leaves_one_model() -> None:
    models = ["a", "b", "c"]
    for seed in range(300):
        rng = random.Random(seed)
        draw = BalancedDraw(Policy().assignment_slack)
        generator, committee = conductor_draw(models, Policy(reserve_adjudicator=True), rng, draw)
        assert len(committee) == 1
        left = adjudicator_seat(draw, models, {generator, *committee}, rng)
        assert left is not None
        assert {generator, *committee, left} == set(models)


def test_three_models_without_reserve_rejects_when_adjudication_is_needed() -> None:
    models = ["a", "b", "c"]
    rng = random.Random(3)
    draw = BalancedDraw(Policy().assignment_slack)
    generator, committee = conductor_draw(models, Policy(), rng, draw)
    assert len(committee) == 2
    state = make_state(generator=generator, reviewers=committee)
    state.apply(Generated(generator, ITEM))
    state.apply(Reviewed(committee[0], review(10)))
    state.apply(Reviewed(committee[1], review(6)))  # mean 8, std 2 > 1.5
    steps = state.next_steps()
    assert steps == [DrawAdjudicator(frozenset(models))]
    assert isinstance(steps[0], DrawAdjudicator)
    drawn = adjudicator_seat(draw, models, set(steps[0].excluded), rng)
    assert drawn is None
    state.apply(AdjudicatorDrawn(drawn))
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "adjudication")
    assert "no uninvolved model left" in result.reason
    assert result.mean == 8.0 and result.std == 2.0


# ---- revision rounds (beyond the paper, opt-in) --------------------------------


def test_default_single_round_does_not_revise() -> None:
    state = reviewed_state([review(5), review(5), review(5)])
    assert state.round == 1
    assert outcome(state).decision == "rejected"
    assert state.history == []


def test_revision_round_sends_item_and_feedback_back_then_accepts() -> None:
    state = make_state(Policy(max_rounds=2))
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(6, weaknesses="no edge cases")))
    state.apply(Reviewed("r2", review(7)))
    state.apply(Reviewed("r3", review(7)))

    assert state.outcome is None
    assert state.round == 2
    assert state.item is None and state.reviews == {} and state.committee is None
    assert len(state.history) == 1
    assert state.history[0].item == ITEM
    assert state.history[0].outcome.stage == "score"
    assert state.history[0].outcome.mean == pytest.approx(20 / 3)

    steps = state.next_steps()
    assert len(steps) == 1 and isinstance(steps[0], Generate)
    assert steps[0].model == GEN
    request = steps[0].request
    assert request.domain == "coding"
    assert request.examples == EXAMPLES
    assert request.previous == Example(ITEM.instruction, ITEM.response)
    assert "committee mean 6.67 < tau" in request.feedback
    assert "Reviewer 1: Strengths: clear\nWeaknesses: no edge cases" in request.feedback
    assert "Reviewer 3:" in request.feedback

    state.apply(Generated(GEN, ITEM_2))
    assert all(
        isinstance(s, Review) and s.request.instruction == ITEM_2.instruction
        for s in state.next_steps()
    )
    for model in COMMITTEE:
        state.apply(Reviewed(model, review(9)))
    result = outcome(state)
    assert (result.decision, result.stage) == ("accepted", "accepted")
    assert result.mean == 9.0


def test_a_failed_check_in_a_revision_round_waits_for_the_whole_committee() -> None:
    """The generator gets every reviewer's feedback, a failed check's too."""
    state = make_state(Policy(max_rounds=2))
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r3", review(10, failed=["clarity"])))
    assert state.round == 1 and state.outcome is None
    assert sorted(s.model for s in state.next_steps()) == ["r1", "r2"]
    state.apply(Reviewed("r1", review(9, weaknesses="unclear input format")))
    assert state.round == 1
    state.apply(Reviewed("r2", review(9)))
    assert state.round == 2
    assert sorted(state.history[0].reviews) == ["r1", "r2", "r3"]
    request = state.next_steps()[0]
    assert isinstance(request, Generate)
    assert "instruction check failed: clarity" in request.request.feedback
    assert "unclear input format" in request.request.feedback


def test_revision_after_instruction_check_and_last_round_rejects() -> None:
    state = make_state(Policy(max_rounds=2))
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r3", review(10, failed=["clarity"])))
    state.apply(Reviewed("r1", review(9)))
    state.apply(Reviewed("r2", review(9)))
    assert state.outcome is None and state.round == 2
    request = state.next_steps()[0]
    assert isinstance(request, Generate)
    assert "instruction check failed: clarity" in request.request.feedback
    assert request.request.previous == Example(ITEM.instruction, ITEM.response)

    state.apply(Generated(GEN, ITEM_2))
    state.apply(Reviewed("r1", review(10, failed=["rationality"])))
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "instruction_check")
    assert state.round == 2
    assert len(state.history) == 1


# ---- terminal states ---------------------------------------------------------------


def test_failed_event_ends_the_instance() -> None:
    state = make_state()
    state.apply(Generated(GEN, ITEM))
    state.apply(Failed("generator timed out 3 times"))
    result = outcome(state)
    assert (result.decision, result.stage) == ("failed", "failed")
    assert result.reason == "generator timed out 3 times"
    with pytest.raises(ProtocolError, match="finished"):
        state.apply(Reviewed("r1", review(9)))


@pytest.mark.parametrize(
    "event",
    [
        Generated(GEN, ITEM),
        Reviewed("r1", review(9)),
        AdjudicatorDrawn("adj"),
        Adjudicated("adj", adjudication(9)),
        Replaced("r1", "adj"),
        Failed("late"),
    ],
)
def test_apply_after_finish_raises(event: object) -> None:
    state = reviewed_state([review(9), review(9), review(9)])
    finished = outcome(state)
    assert finished.decision == "accepted"
    with pytest.raises(ProtocolError, match="finished"):
        state.apply(event)  # type: ignore[arg-type]
    assert state.outcome == finished


def test_without_reject_when_decided_a_failed_check_waits_for_the_whole_committee() -> None:
    policy = Policy(reject_when_decided=False)
    state = InstanceState("i1", "coding", policy, GEN, COMMITTEE)
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(9, failed=["clarity"])))
    assert state.outcome is None
    assert {s.model for s in state.next_steps() if isinstance(s, Review)} == {"r2", "r3"}
    state.apply(Reviewed("r2", review(9)))
    state.apply(Reviewed("r3", review(9)))
    assert state.outcome is not None
    assert (state.outcome.decision, state.outcome.stage) == ("rejected", "instruction_check")
    assert set(state.reviews) == set(COMMITTEE)
