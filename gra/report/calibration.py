"""How accurately a judge (one reviewer, or the whole committee) separates labelled pairs.

Agreement alone cannot tell a good committee from one that agrees on the wrong answer;
labelled pairs can. A pair labelled ``good`` should be accepted and one labelled ``bad``
rejected, so acceptance is the positive class throughout. Small models are often no
better than a coin on this, so every result says whether it is, by an exact binomial
test rather than by eye.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

ALPHA = 0.05  # significance level of the chance tests
BETTER = "better than chance"
NO_BETTER = "no better than chance"
WORSE = "worse than chance"


class Labelled(msgspec.Struct):
    """One labelled pair: ``good`` pairs should be accepted, ``bad`` ones rejected."""

    id: str
    label: Literal["good", "bad"]
    instruction: str = ""
    response: str = ""


def labels_of(pairs: Sequence[Labelled]) -> dict[str, str]:
    """The ``labels`` argument of ``judge_metrics``: id -> label."""
    return {pair.id: pair.label for pair in pairs}


def _upper_tail(successes: int, n: int) -> float:
    """P(X >= successes) for X ~ Binomial(n, 1/2), exactly (integer sums, then one division)."""
    return sum(math.comb(n, k) for k in range(successes, n + 1)) / 2**n


def _lower_tail(successes: int, n: int) -> float:
    """P(X <= successes) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, k) for k in range(successes + 1)) / 2**n


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def judge_metrics(predictions: Mapping[str, bool], labels: Mapping[str, str]) -> dict[str, Any]:
    """Accuracy of ``predictions`` (id -> accepted) against ``labels`` (id -> good/bad).

    Only ids present in both, with a ``good`` or ``bad`` label, count. Ratios whose
    denominator is empty are None. Chance is 0.5, the accuracy of a coin: the verdict
    runs two one-sided exact binomial tests at 0.05 on the number of correct judgements,
    "better than chance" when P(X >= correct) < 0.05 (``p_value``) and "worse than
    chance" when P(X <= correct) < 0.05 (``p_value_worse``); both tails cannot be small
    at once, and neither gives "no better than chance". On a set with unequal numbers of
    good and bad pairs, a judge that always accepts beats 0.5; ``balanced_accuracy``
    (the mean of the recalls of the two classes) does not reward that.
    """
    tp = fp = tn = fn = 0
    for item_id, label in labels.items():
        if item_id not in predictions or label not in ("good", "bad"):
            continue
        accepted = bool(predictions[item_id])
        if accepted and label == "good":
            tp += 1
        elif accepted:
            fp += 1
        elif label == "bad":
            tn += 1
        else:
            fn += 1
    n = tp + fp + tn + fn
    correct = tp + tn
    accept_recall = _ratio(tp, tp + fn)
    reject_recall = _ratio(tn, tn + fp)
    balanced = (
        None
        if accept_recall is None or reject_recall is None
        else (accept_recall + reject_recall) / 2
    )
    p_value = _upper_tail(correct, n)
    p_value_worse = _lower_tail(correct, n)
    beats_chance = p_value < ALPHA
    verdict = BETTER if beats_chance else WORSE if p_value_worse < ALPHA else NO_BETTER
    return {
        "n": n,
        "correct": correct,
        "accuracy": _ratio(correct, n),
        "accepted": tp + fp,
        "rejected": tn + fn,
        "true_positive": tp,
        "false_positive": fp,
        "true_negative": tn,
        "false_negative": fn,
        "accept_precision": _ratio(tp, tp + fp),
        "accept_recall": accept_recall,
        "reject_precision": _ratio(tn, tn + fn),
        "reject_recall": reject_recall,
        "balanced_accuracy": balanced,
        "p_value": p_value,
        "p_value_worse": p_value_worse,
        "beats_chance": beats_chance,
        "verdict": verdict,
    }


_HEADERS = ("name", "n", "accuracy", "accept precision", "accept recall", "verdict")
_NUMERIC = (False, True, True, True, True, False)


def _cells(name: str, metrics: Mapping[str, Any]) -> list[str]:
    def ratio(key: str) -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.3f}"

    return [
        name,
        str(metrics.get("n", "-")),
        ratio("accuracy"),
        ratio("accept_precision"),
        ratio("accept_recall"),
        str(metrics.get("verdict", "-")),
    ]


def metrics_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """``judge_metrics`` results by judge name, as aligned plain text for a terminal."""
    table = [list(_HEADERS), *(_cells(name, metrics) for name, metrics in rows.items())]
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(
            cell.rjust(width) if numeric else cell.ljust(width)
            for cell, width, numeric in zip(row, widths, _NUMERIC, strict=True)
        ).rstrip()
        for row in table
    ]
    return "\n".join(lines)


def metrics_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The same table as Markdown, numbers right-aligned, for the README."""
    rule = ["---:" if numeric else "---" for numeric in _NUMERIC]
    table = [list(_HEADERS), rule, *(_cells(name, metrics) for name, metrics in rows.items())]
    return "\n".join("| " + " | ".join(row) + " |" for row in table)


def reliability_weights(per_model_metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """A weight per model for weighting its scores: ``max(0, balanced_accuracy - 0.5) * 2``.

    0 for a judge no better than a coin (or worse: its inverted opinion is not trusted
    either), 1 for a perfect one. Balanced accuracy rather than accuracy, so a judge
    that accepts everything earns nothing on a set of mostly good pairs. A model whose
    balanced accuracy is unknown (a labelled set with one class only) gets no weight
    here, so ``weighted_committee_mean`` gives it the default for unmeasured models.
    """
    weights: dict[str, float] = {}
    for model, metrics in per_model_metrics.items():
        balanced = metrics.get("balanced_accuracy")
        if isinstance(balanced, int | float) and math.isfinite(balanced):
            weights[model] = min(1.0, max(0.0, balanced - 0.5) * 2)
    return weights


def weighted_committee_mean(
    scores: Mapping[str, float], weights: Mapping[str, float]
) -> float | None:
    """The committee's mean score with each model's score weighted by its reliability.

    A model missing from ``weights`` (never measured) gets the mean of the known
    weights, so it counts as much as a typical measured reviewer, or 1.0 when no weight
    is known (a plain mean). Negative weights count as 0. None when the scores are
    empty or every weight is 0: no reviewer is trusted, so there is no mean to give.
    """
    known = [max(0.0, w) for w in weights.values()]
    default = sum(known) / len(known) if known else 1.0
    total = weighted = 0.0
    for model, score in scores.items():
        weight = max(0.0, weights[model]) if model in weights else default
        total += weight
        weighted += weight * score
    return weighted / total if total > 0 else None
