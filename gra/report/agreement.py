"""How much the reviewers of a committee agree with each other, without any labels.

A committee is only worth its cost if its members carry independent signal: reviewers
that never agree are noise, reviewers that always agree are one reviewer paid several
times, and reviewers that tick all three checks the same way on every item are likely
not reading the item at all. Everything here works on plain decoded JSON lines
(``ItemRecord`` or ``VerdictRecord``), so it reads outputs of any version and never
raises on a record it does not understand: such records are skipped.

Only records with at least two usable reviews count, and ``failed`` records never do
(their reviews, if any, did not lead to a decision). A model that reviewed one item
twice is one rater in the per-model figures, two raters in Krippendorff's alpha, and
is represented by its first review in the pairwise figures.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import krippendorff
import numpy as np

SCORE_NAMES = ("correctness", "clarity", "completeness", "relevance", "coherence", "ethics")
CHECK_NAMES = ("rationality", "completeness", "clarity")
# Checks share two names with scores, so their criteria carry a prefix.
CHECK_CRITERIA = tuple(f"check_{name}" for name in CHECK_NAMES)
INTERVAL_CRITERIA = (*SCORE_NAMES, "score")
NOMINAL_CRITERIA = (*CHECK_CRITERIA, "accept_vote")
CRITERIA = (*INTERVAL_CRITERIA, *NOMINAL_CRITERIA)

Level = Literal["interval", "nominal"]


@dataclass(frozen=True)
class _Review:
    model: str
    values: dict[str, float]  # criterion -> value; booleans as 0.0/1.0
    score: float | None
    vote: bool | None
    lockstep: bool | None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _score_of(raw: Mapping[str, Any], scores: Mapping[str, Any]) -> float | None:
    """The recorded mean, or the mean of the six scores when it is absent."""
    score = _number(raw.get("score"))
    if score is not None:
        return score
    values = [_number(scores.get(name)) for name in SCORE_NAMES]
    if any(value is None for value in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def _parse_review(raw: Any, tau: float) -> _Review | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), str):
        return None
    scores = raw.get("scores")
    scores = scores if isinstance(scores, Mapping) else {}
    checks = raw.get("checks")
    checks = checks if isinstance(checks, Mapping) else {}
    values: dict[str, float] = {}
    for name in SCORE_NAMES:
        number = _number(scores.get(name))
        if number is not None:
            values[name] = number
    score = _score_of(raw, scores)
    if score is not None:
        values["score"] = score
    flags = [checks.get(name) for name in CHECK_NAMES]
    for criterion, flag in zip(CHECK_CRITERIA, flags, strict=True):
        if isinstance(flag, bool):
            values[criterion] = float(flag)
    # Any failed check is a rejection whatever the score; a pass needs every check and a score.
    vote: bool | None = None
    if any(flag is False for flag in flags):
        vote = False
    elif all(flag is True for flag in flags) and score is not None:
        vote = score >= tau
    if vote is not None:
        values["accept_vote"] = float(vote)
    lockstep = len(set(flags)) == 1 if all(isinstance(f, bool) for f in flags) else None
    return _Review(raw["model"], values, score, vote, lockstep)


def _parse_record(raw: Any, tau: float) -> list[_Review] | None:
    """The usable reviews of a record that counts, else None."""
    if not isinstance(raw, Mapping) or raw.get("decision") == "failed":
        return None
    reviews = raw.get("reviews")
    if not isinstance(reviews, list):
        return None
    parsed = [r for r in (_parse_review(item, tau) for item in reviews) if r is not None]
    return parsed if len(parsed) >= 2 else None


def _alpha(data: np.ndarray, level: Level) -> float | None:
    """Krippendorff's alpha of raters x units ``data`` (NaN = not rated), None where undefined.

    Undefined means fewer than two units rated twice, or no variation at all: the
    library raises or returns NaN there, and a single unit would give a meaningless 0.
    """
    if data.ndim != 2 or data.shape[0] < 2:
        return None
    if int((np.sum(~np.isnan(data), axis=0) >= 2).sum()) < 2:
        return None
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    except (ValueError, ZeroDivisionError, FloatingPointError, IndexError):
        return None
    return value if math.isfinite(value) else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rater_keys(reviews: list[_Review]) -> list[str]:
    """One key per review; a model's second review of the same item is another rater."""
    seen: Counter[str] = Counter()
    keys = []
    for review in reviews:
        seen[review.model] += 1
        count = seen[review.model]
        keys.append(review.model if count == 1 else f"{review.model}#{count}")
    return keys


def _per_criterion(items: list[list[_Review]]) -> dict[str, float | None]:
    keyed = [dict(zip(_rater_keys(reviews), reviews, strict=True)) for reviews in items]
    raters = sorted({key for item in keyed for key in item})
    row = {key: index for index, key in enumerate(raters)}
    result: dict[str, float | None] = {}
    for criterion in CRITERIA:
        data = np.full((len(raters), len(items)), np.nan)
        for column, item in enumerate(keyed):
            for key, review in item.items():
                value = review.values.get(criterion)
                if value is not None:
                    data[row[key], column] = value
        level: Level = "interval" if criterion in INTERVAL_CRITERIA else "nominal"
        result[criterion] = _alpha(data, level)
    return result


def _per_pair(items: list[list[_Review]]) -> dict[str, dict[str, Any]]:
    together: defaultdict[tuple[str, str], list[tuple[_Review, _Review]]] = defaultdict(list)
    for reviews in items:
        first: dict[str, _Review] = {}
        for review in reviews:
            first.setdefault(review.model, review)
        for a, b in combinations(sorted(first), 2):
            together[a, b].append((first[a], first[b]))
    result: dict[str, dict[str, Any]] = {}
    for (a, b), pairs in sorted(together.items()):
        if len(pairs) < 2:
            continue
        data = np.array(
            [
                [np.nan if x.score is None else x.score for x, _ in pairs],
                [np.nan if y.score is None else y.score for _, y in pairs],
            ]
        )
        votes = [(x.vote, y.vote) for x, y in pairs if x.vote is not None and y.vote is not None]
        diffs = [
            abs(x.score - y.score) for x, y in pairs if x.score is not None and y.score is not None
        ]
        result[f"{a}|{b}"] = {
            "items": len(pairs),
            "alpha": _alpha(data, "interval"),
            "vote_agreement": _mean([float(x == y) for x, y in votes]),
            "mean_abs_diff": _mean(diffs),
        }
    return result


def _per_model(items: list[list[_Review]]) -> dict[str, dict[str, Any]]:
    reviews_of: Counter[str] = Counter()
    scores: defaultdict[str, list[float]] = defaultdict(list)
    committees: defaultdict[str, list[float]] = defaultdict(list)
    votes: defaultdict[str, list[float]] = defaultdict(list)
    for reviews in items:
        committee = _mean([r.score for r in reviews if r.score is not None])
        for review in reviews:
            reviews_of[review.model] += 1
            if review.score is not None and committee is not None:
                scores[review.model].append(review.score)
                committees[review.model].append(committee)
            if review.vote is not None:
                votes[review.model].append(float(review.vote))
    result: dict[str, dict[str, Any]] = {}
    for model in sorted(reviews_of):
        mean_score = _mean(scores[model])
        committee_mean = _mean(committees[model])
        result[model] = {
            "reviews": reviews_of[model],
            "mean_score": mean_score,
            "leniency": (
                None
                if mean_score is None or committee_mean is None
                else mean_score - committee_mean
            ),
            "accept_rate": _mean(votes[model]),
        }
    return result


def _adjudication(
    records: list[tuple[Mapping[str, Any], list[_Review]]], tau: float
) -> dict[str, int]:
    """Adjudications that reversed the committee's majority vote.

    A tied committee counts as an accept-majority: a committee split evenly has not
    rejected the item, so an adjudicator that rejects it overturns half the committee,
    while one that accepts it does not. ``ties`` says how many adjudications were
    of tied committees, so the choice can be undone by the reader. Items whose
    adjudication has no score, or whose reviewers cast no usable vote, are left out.
    """
    adjudicated = overturned = ties = 0
    for raw, reviews in records:
        adjudication = raw.get("adjudication")
        if not isinstance(adjudication, Mapping):
            continue
        scores = adjudication.get("scores")
        score = _score_of(adjudication, scores if isinstance(scores, Mapping) else {})
        votes = [r.vote for r in reviews if r.vote is not None]
        if score is None or not votes:
            continue
        accepts = sum(votes)
        rejects = len(votes) - accepts
        adjudicated += 1
        ties += accepts == rejects
        overturned += (score >= tau) != (accepts >= rejects)
    return {"adjudicated": adjudicated, "overturned": overturned, "ties": ties}


def reviewer_agreement(records: Iterable[Mapping[str, Any]], *, tau: float = 8.0) -> dict[str, Any]:
    """Agreement of the reviewers over ``records`` (decoded JSON lines), JSON-ready.

    A reviewer votes accept when all its checks pass and its score (mean of six) is at
    least ``tau``. Alphas are None where undefined (too few items, no variation).
    """
    counted: list[tuple[Mapping[str, Any], list[_Review]]] = []
    for raw in records:
        reviews = _parse_record(raw, tau)
        if reviews is not None:
            counted.append((raw, reviews))
    items = [reviews for _, reviews in counted]
    lockstep = [r.lockstep for reviews in items for r in reviews if r.lockstep is not None]
    return {
        "items": len(items),
        "per_criterion": _per_criterion(items),
        "per_pair": _per_pair(items),
        "per_model": _per_model(items),
        "adjudication": _adjudication(counted, tau),
        "check_lockstep": _mean([float(x) for x in lockstep]),
    }
