"""Role assignment: random, uniform over time, and never waiting on a busy model when
an eligible one is free (gra/protocols/assignment.py)."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from gra.protocols.assignment import BalancedDraw
from gra.protocols.peer_review import Policy, ProtocolError

MODELS = ["a", "b", "c", "d", "e"]


def _eligible(draw: BalancedDraw, pool: list[str]) -> set[str]:
    least = min(draw.generated[m] for m in pool)
    return {m for m in pool if draw.generated[m] < least + draw.slack}


@pytest.mark.parametrize("slack", [1, 2, 5])
def test_generator_shares_stay_within_slack_when_availability_is_skewed(slack: int) -> None:
    # "a" is never free, "e" always is, the rest now and then: a free-first draw
    # without the bound would hand "e" almost everything.
    rng = random.Random(slack)
    draw = BalancedDraw(slack)
    for _ in range(20_000):
        free = {"e"} | {m for m in ("b", "c", "d") if rng.random() < 0.3}
        draw.draw(MODELS, Policy(), rng, free_generators=free, free_reviewers=free)
        counts = [draw.generated[m] for m in MODELS]
        assert max(counts) - min(counts) <= slack
    reviewed = [draw.reviewed[m] for m in MODELS]
    mean = sum(reviewed) / len(reviewed)
    assert all(abs(n - mean) / mean < 0.02 for n in reviewed), reviewed


def test_a_free_eligible_model_is_always_preferred() -> None:
    rng = random.Random(3)
    draw = BalancedDraw(2)
    preferred = 0
    for _ in range(5_000):
        free = {m for m in MODELS if rng.random() < 0.4}
        eligible = _eligible(draw, MODELS)
        generator, committee = draw.draw(MODELS, Policy(), rng, free_generators=free)
        if eligible & free:
            assert generator in eligible & free
            preferred += 1
        else:
            assert generator in eligible
        assert generator not in committee and len(set(committee)) == len(committee) == 3
    assert preferred > 1_000  # the branch above was really exercised


def test_draws_stay_random_not_round_robin() -> None:
    # With every model free, the first generator of a run is uniform over seeds...
    first = Counter(
        BalancedDraw(2).draw(MODELS, Policy(), random.Random(seed))[0] for seed in range(5_000)
    )
    assert set(first) == set(MODELS)
    assert all(800 < n < 1_200 for n in first.values()), first
    # ...and a model may be drawn twice running (strict turns would forbid it).
    draw, rng = BalancedDraw(2), random.Random(11)
    sequence = [draw.draw(MODELS, Policy(), rng)[0] for _ in range(2_000)]
    repeats = sum(x == y for x, y in itertools.pairwise(sequence))
    assert 50 < repeats < 600


def test_generator_reviewer_pairs_are_uniform() -> None:
    draw, rng = BalancedDraw(2), random.Random(5)
    pairs: Counter[tuple[str, str]] = Counter()
    for _ in range(20_000):
        free = {m for m in MODELS if rng.random() < 0.5}
        generator, committee = draw.draw(MODELS, Policy(), rng, free_generators=free)
        pairs.update((generator, r) for r in committee)
    assert len(pairs) == 20  # every ordered pair of distinct models
    mean = sum(pairs.values()) / len(pairs)
    assert all(abs(n - mean) / mean < 0.06 for n in pairs.values()), pairs


def test_narrow_reviewer_pool_and_review_mode_committee() -> None:
    draw, rng = BalancedDraw(1), random.Random(0)
    for _ in range(200):
        generator, committee = draw.draw(["a", "b"], Policy(), rng, reviewer_models=["b", "c"])
        assert generator in {"a", "b"} and generator not in committee
        assert set(committee) <= {"b", "c"}
    draw, seats = BalancedDraw(1), Counter()
    for _ in range(300):
        seats.update(draw.committee(MODELS, 2, rng, free={"a"}))
    assert len(seats) == len(MODELS) and max(seats.values()) - min(seats.values()) <= 1


def test_impossible_draws_are_refused() -> None:
    with pytest.raises(ValueError):
        BalancedDraw(0)
    draw = BalancedDraw()
    with pytest.raises(ProtocolError):
        draw.draw(["a"], Policy(), random.Random(0), reviewer_models=["a"])
    with pytest.raises(ProtocolError):
        draw.draw([], Policy(), random.Random(0))
    with pytest.raises(ProtocolError):
        draw.committee(["a"], 2, random.Random(0))
    assert not draw.generated and not draw.reviewed  # nothing counted for failed draws


def test_single_seats_are_balanced_random_and_prefer_free_models() -> None:
    # Annotators drawn independently drift apart like a random walk; the seat
    # draw keeps every model's count within slack, per role.
    rng, draw = random.Random(8), BalancedDraw(2)
    firsts: Counter[str] = Counter()
    for _ in range(20_000):
        free = {m for m in MODELS if rng.random() < 0.3}
        before = Counter(draw.seats.get("annotator", {}))
        eligible = {m for m in MODELS if before[m] < min(before[x] for x in MODELS) + 2}
        chosen = draw.seat("annotator", MODELS, rng, free)
        assert chosen in (eligible & free or eligible)
        counts = [draw.seats["annotator"][m] for m in MODELS]
        assert max(counts) - min(counts) <= 2
    for seed in range(2_000):
        firsts[BalancedDraw(2).seat("annotator", MODELS, random.Random(seed)) or ""] += 1
    assert set(firsts) == set(MODELS) and all(300 < n < 500 for n in firsts.values()), firsts
    # Roles keep separate counts; no candidate, no seat.
    assert draw.seat("adjudicator", ["a", "b"], rng) in {"a", "b"}
    assert sum(draw.seats["adjudicator"].values()) == 1
    assert draw.seat("adjudicator", [], rng) is None
