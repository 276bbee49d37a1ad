"""Judging accuracy on labelled pairs, its chance verdicts, and reliability weights."""

from __future__ import annotations

import pytest

from gra.report.calibration import (
    judge_metrics,
    metrics_markdown,
    metrics_table,
    reliability_weights,
    weighted_committee_mean,
)


def scored(correct: int, n: int) -> dict:
    """Metrics of a judge right on ``correct`` of ``n`` pairs, half of them good."""
    labels = {f"p{i}": "good" if i % 2 == 0 else "bad" for i in range(n)}
    predictions = {
        item: (label == "good") == (i < correct) for i, (item, label) in enumerate(labels.items())
    }
    return judge_metrics(predictions, labels)


def test_hand_made_confusion_matrix() -> None:
    labels = {f"g{i}": "good" for i in range(6)} | {f"b{i}": "bad" for i in range(4)}
    labels["u"] = "unsure"  # not a label: ignored
    predictions = {f"g{i}": i != 0 for i in range(6)} | {f"b{i}": i == 0 for i in range(4)}
    predictions["unlabelled"] = True  # no label: ignored
    m = judge_metrics(predictions, labels)
    assert (m["n"], m["correct"], m["accepted"], m["rejected"]) == (10, 8, 6, 4)
    assert (m["true_positive"], m["false_positive"]) == (5, 1)
    assert (m["true_negative"], m["false_negative"]) == (3, 1)
    assert m["accuracy"] == 0.8
    assert m["accept_precision"] == pytest.approx(5 / 6)
    assert m["accept_recall"] == pytest.approx(5 / 6)
    assert m["reject_precision"] == 0.75
    assert m["reject_recall"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx(19 / 24)
    # 8 of 10 is not enough: P(X >= 8) = (45 + 10 + 1) / 1024.
    assert m["p_value"] == 56 / 1024
    assert m["beats_chance"] is False
    assert m["verdict"] == "no better than chance"


def test_empty_denominators_are_none() -> None:
    m = judge_metrics({"a": False, "b": False}, {"a": "good", "b": "good"})
    assert m["accept_precision"] is None  # nothing accepted
    assert m["reject_recall"] is None  # no bad pairs
    assert m["balanced_accuracy"] is None
    assert m["accept_recall"] == 0.0
    none = judge_metrics({}, {})
    assert none["n"] == 0
    assert none["accuracy"] is None
    assert none["verdict"] == "no better than chance"


@pytest.mark.parametrize(
    ("correct", "n", "verdict", "p_value", "p_value_worse"),
    [
        (17, 40, "no better than chance", 0.8659063744726154, 0.21479525392169307),
        (36, 40, "better than chance", 9.285122359870002e-08, 0.9999999902674972),
        (5, 40, "worse than chance", 0.9999999071487764, 6.91306013322901e-07),
        (5, 5, "better than chance", 1 / 32, 1.0),
        (4, 5, "no better than chance", 6 / 32, 31 / 32),
        (0, 5, "worse than chance", 1.0, 1 / 32),
        (0, 4, "no better than chance", 1.0, 1 / 16),
    ],
)
def test_chance_verdicts(
    correct: int, n: int, verdict: str, p_value: float, p_value_worse: float
) -> None:
    m = scored(correct, n)
    assert (m["n"], m["correct"]) == (n, correct)
    assert m["verdict"] == verdict
    assert m["beats_chance"] is (verdict == "better than chance")
    assert m["p_value"] == pytest.approx(p_value, rel=1e-12)
    assert m["p_value_worse"] == pytest.approx(p_value_worse, rel=1e-12)


def test_tables() -> None:
    rows = {"committee": scored(36, 40), "tiny": judge_metrics({}, {})}
    assert metrics_table(rows) == "\n".join(
        [
            "name        n  accuracy  accept precision  accept recall  verdict",
            "committee  40     0.900             0.900          0.900  better than chance",
            "tiny        0         -                 -              -  no better than chance",
        ]
    )
    assert metrics_markdown(rows) == "\n".join(
        [
            "| name | n | accuracy | accept precision | accept recall | verdict |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
            "| committee | 40 | 0.900 | 0.900 | 0.900 | better than chance |",
            "| tiny | 0 | - | - | - | no better than chance |",
        ]
    )


def test_reliability_weights() -> None:
    weights = reliability_weights(
        {
            "half": {"balanced_accuracy": 0.75},
            "coin": {"balanced_accuracy": 0.5},
            "contrary": {"balanced_accuracy": 0.2},
            "perfect": {"balanced_accuracy": 1.0},
            "one_class": {"balanced_accuracy": None, "accuracy": 1.0},
        }
    )
    assert weights == {"half": 0.5, "coin": 0.0, "contrary": 0.0, "perfect": 1.0}


def test_weighted_committee_mean() -> None:
    weights = {"half": 0.5, "coin": 0.0, "perfect": 1.0}
    scores = {"half": 8.0, "coin": 2.0, "perfect": 6.0}
    assert weighted_committee_mean(scores, weights) == pytest.approx((4 + 6) / 1.5)
    # An unmeasured model gets the mean known weight, 0.5.
    unmeasured = {**scores, "new": 9.0}
    assert weighted_committee_mean(unmeasured, weights) == pytest.approx((4 + 6 + 4.5) / 2.0)
    assert weighted_committee_mean({"coin": 2.0}, weights) is None
    assert weighted_committee_mean({}, weights) is None
    assert weighted_committee_mean({"a": 4.0, "b": 7.0}, {}) == 5.5
