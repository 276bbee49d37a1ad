"""Reviewer agreement on scripted committees whose agreement is known in advance."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gra.report.agreement import CRITERIA, SCORE_NAMES, reviewer_agreement

ALL_PASS = (True, True, True)


def review(
    model: str,
    value: float,
    checks: tuple[bool, bool, bool] = ALL_PASS,
    scores: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A review whose six scores are all ``value`` unless ``scores`` says otherwise."""
    scores = scores if scores is not None else dict.fromkeys(SCORE_NAMES, value)
    rationality, completeness, clarity = checks
    return {
        "model": model,
        "checks": {"rationality": rationality, "completeness": completeness, "clarity": clarity},
        "scores": scores,
        "score": sum(scores.values()) / len(scores),
        "feedback": "",
    }


def record(*reviews: dict[str, Any], decision: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "decision": decision,
        "reviews": list(reviews),
        "adjudication": None,
        **extra,
    }


def identical_committee() -> list[dict[str, Any]]:
    """Three reviewers that give the same varied scores and checks to six items."""
    records = []
    for i in range(6):
        scores = {name: 2 + i + (i + j) % 3 for j, name in enumerate(SCORE_NAMES)}
        checks = (i != 1, i != 3, i != 4)  # items 0, 2 and 5 pass; only 5 scores 8
        records.append(record(*(review(m, 0, checks, scores) for m in ("a", "b", "c"))))
    return records


def test_identical_reviewers_agree_perfectly() -> None:
    report = reviewer_agreement(identical_committee())
    assert report["items"] == 6
    assert report["per_criterion"] == dict.fromkeys(CRITERIA, 1.0)
    assert set(report["per_pair"]) == {"a|b", "a|c", "b|c"}
    for pair in report["per_pair"].values():
        assert pair == {"items": 6, "alpha": 1.0, "vote_agreement": 1.0, "mean_abs_diff": 0.0}
    for stats in report["per_model"].values():
        assert stats["reviews"] == 6
        assert stats["leniency"] == 0.0


def test_a_reviewer_two_points_higher() -> None:
    base = [3, 5, 6, 7]
    records = [record(review("low", s), review("high", s + 2)) for s in base]
    report = reviewer_agreement(records, tau=8.0)
    low, high = report["per_model"]["low"], report["per_model"]["high"]
    assert low["leniency"] == pytest.approx(-1.0, abs=1e-12)
    assert high["leniency"] == pytest.approx(1.0, abs=1e-12)
    assert low["mean_score"] == pytest.approx(5.25)
    assert high["mean_score"] == pytest.approx(7.25)
    # Votes at tau 8: "low" never reaches it, "high" does for 6 and 7.
    assert low["accept_rate"] == 0.0
    assert high["accept_rate"] == 0.5
    pair = report["per_pair"]["high|low"]
    assert pair["items"] == 4
    assert pair["mean_abs_diff"] == pytest.approx(2.0)
    assert pair["vote_agreement"] == 0.5


def interval_alpha_two_raters(a: list[float], b: list[float]) -> float:
    """Krippendorff's interval alpha for two raters and no missing values, in closed form.

    With n units, N = 2n values, SS their sum of squared deviations and d the per-unit
    differences: D_o = sum(d^2) / n, D_e = 2 SS / (N - 1), alpha = 1 - D_o / D_e.
    """
    n = len(a)
    values = a + b
    mean = sum(values) / len(values)
    ss = sum((v - mean) ** 2 for v in values)
    observed = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / n
    expected = 2 * ss / (2 * n - 1)
    return 1 - observed / expected


def test_interval_alpha_matches_the_closed_form() -> None:
    a, b = [7.0, 8.0, 9.0], [8.0, 8.0, 10.0]
    expected = interval_alpha_two_raters(a, b)
    assert expected == pytest.approx(0.6875)  # 1 - 5 * 2 / (6 * 16/3)
    records = [record(review("a", x), review("b", y)) for x, y in zip(a, b, strict=True)]
    report = reviewer_agreement(records)
    for name in (*SCORE_NAMES, "score"):
        assert report["per_criterion"][name] == pytest.approx(expected, abs=1e-12)
    assert report["per_pair"]["a|b"]["alpha"] == pytest.approx(expected, abs=1e-12)
    assert report["per_pair"]["a|b"]["mean_abs_diff"] == pytest.approx(2 / 3)


def test_nominal_alpha_of_votes_matches_the_coincidence_matrix() -> None:
    # Votes a = [1, 1, 0, 0], b = [1, 0, 0, 0]. Coincidences: o_11 = 2, o_10 = o_01 = 1,
    # o_00 = 4, so n_1 = 3, n_0 = 5, N = 8 and
    # alpha = 1 - (N - 1) * (o_10 + o_01) / (n_1 n_0 + n_0 n_1) = 1 - 7 * 2 / 30.
    expected = 1 - 7 * 2 / 30
    a, b = [9, 9, 5, 5], [9, 5, 5, 5]
    records = [record(review("a", x), review("b", y)) for x, y in zip(a, b, strict=True)]
    report = reviewer_agreement(records)
    assert report["per_criterion"]["accept_vote"] == pytest.approx(expected, abs=1e-12)
    assert report["per_pair"]["a|b"]["vote_agreement"] == 0.75
    # Every check passed everywhere: no variation, so no alpha.
    assert report["per_criterion"]["check_rationality"] is None


def test_odd_and_failed_records_are_skipped() -> None:
    clean = identical_committee()
    odd: list[Any] = [
        record(review("a", 9)),  # one review
        record(review("a", 2), review("b", 9), decision="failed"),
        {"id": "y", "decision": "rejected"},  # no reviews
        {"id": "z", "decision": "rejected", "reviews": "garbage"},
        record({"checks": {}}, review("a", 3)),  # one usable review
        "not a record",
        None,
    ]
    assert reviewer_agreement([*odd[:3], *clean, *odd[3:]]) == reviewer_agreement(clean)
    assert reviewer_agreement(clean)["items"] == 6


def test_undefined_alpha_is_none() -> None:
    empty = reviewer_agreement([])
    assert empty["items"] == 0
    assert empty["per_criterion"] == dict.fromkeys(CRITERIA)
    assert empty["per_pair"] == {}
    assert empty["per_model"] == {}
    assert empty["check_lockstep"] is None
    assert empty["adjudication"] == {"adjudicated": 0, "overturned": 0, "ties": 0}

    single = reviewer_agreement([record(review("a", 3), review("b", 9))])
    assert single["items"] == 1
    assert single["per_criterion"] == dict.fromkeys(CRITERIA)
    assert single["per_pair"] == {}  # co-reviewed only once

    constant = reviewer_agreement([record(review("a", 8), review("b", 8)) for _ in range(3)])
    assert constant["per_criterion"] == dict.fromkeys(CRITERIA)
    assert constant["per_pair"]["a|b"] == {
        "items": 3,
        "alpha": None,
        "vote_agreement": 1.0,
        "mean_abs_diff": 0.0,
    }
    json.dumps(constant, allow_nan=False)


def test_check_lockstep_fraction() -> None:
    records = [
        record(review("a", 5, (True, True, True)), review("b", 5, (False, False, False))),
        record(review("a", 5, (True, False, True)), review("b", 5, (True, True, False))),
        record(review("a", 5, (True, True, True)), {"model": "c", "checks": {"clarity": True}}),
    ]
    # The review with one check is not judged; 3 of the other 5 are all equal.
    assert reviewer_agreement(records)["check_lockstep"] == pytest.approx(3 / 5)


def adjudicated(votes: list[bool], adjudication: dict[str, Any]) -> dict[str, Any]:
    reviews = [review(f"m{i}", 9 if vote else 4) for i, vote in enumerate(votes)]
    return {**record(*reviews), "adjudication": {"model": "j", "feedback": "", **adjudication}}


def test_adjudication_overturns() -> None:
    records = [
        adjudicated([True, True, False], {"score": 6.0}),  # majority accept, rejected: over
        adjudicated([True, True, False], {"score": 9.0}),  # kept
        adjudicated([True, False], {"score": 5.0}),  # tie counts as accept: over
        adjudicated([False, True], {"score": 7.9}),  # tie, rejected below tau: over
        adjudicated([False, False], {"score": 9.0}),  # majority reject, accepted: over
        adjudicated([False, False], {"scores": dict.fromkeys(SCORE_NAMES, 8)}),  # mean 8: over
        adjudicated([True, True], {"score": "nine"}),  # no usable score: left out
        record(review("a", 9), review("b", 2)),  # not adjudicated
    ]
    report = reviewer_agreement(records)
    assert report["adjudication"] == {"adjudicated": 6, "overturned": 5, "ties": 2}
