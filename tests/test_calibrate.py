"""`gra calibrate`'s arithmetic over recorded verdicts (no runs: the runs are in
tests/test_calibrate_e2e.py)."""

from __future__ import annotations

from typing import Any

from gra.calibrate import (
    alone_predictions,
    combined_predictions,
    committee_predictions,
    score_runs,
    subcommittee_predictions,
)
from gra.protocols.peer_review import Policy

ALL_PASS = {"rationality": True, "completeness": True, "clarity": True}
ONE_FAILS = {**ALL_PASS, "clarity": False}


def _review(model: str, score: int, checks: dict[str, bool] = ALL_PASS) -> dict[str, Any]:
    scores = dict.fromkeys(
        ("correctness", "clarity", "completeness", "relevance", "coherence", "ethics"), score
    )
    return {"model": model, "checks": checks, "scores": scores, "score": float(score)}


VERDICTS = {
    # b vetoes by a check; without b, a and c accept.
    "x": {"decision": "rejected", "reviews": [_review("a", 9), _review("b", 9, ONE_FAILS),
                                              _review("c", 9)]},
    # c scores 0; without c, a and b accept.
    "y": {"decision": "rejected", "reviews": [_review("a", 9), _review("b", 10), _review("c", 0)]},
    # a and c disagree beyond delta (adjudication needed): rejected without b.
    "z": {"decision": "accepted", "reviews": [_review("a", 10), _review("b", 9), _review("c", 6)]},
    "failed": {"decision": "failed", "reviews": []},
}  # fmt: skip


def test_each_model_alone_follows_the_rule_for_one_reviewer() -> None:
    alone = alone_predictions(VERDICTS, tau=8.0)
    assert alone["a"] == {"x": True, "y": True, "z": True}
    assert alone["b"] == {"x": False, "y": True, "z": True}
    assert alone["c"] == {"x": True, "y": False, "z": False}


def test_subcommittees_apply_the_papers_rule_to_the_reviews_kept() -> None:
    policy = Policy()
    assert subcommittee_predictions(VERDICTS, ["a", "c"], policy) == {
        "x": True,
        "y": False,
        "z": False,
    }
    assert subcommittee_predictions(VERDICTS, ["a", "b"], policy) == {
        "x": False,
        "y": True,
        "z": True,
    }


def test_a_failed_verification_rejects_and_a_pass_accepts_only_with_on_pass_accept() -> None:
    committee = committee_predictions(VERDICTS)
    assert committee == {"x": False, "y": False, "z": True, "failed": False}
    verified = {
        "x": {"verification": {"verdict": "passed"}},
        "z": {"verification": {"verdict": "failed"}},
        "y": {"verification": {"verdict": "cannot_verify"}},
    }
    assert combined_predictions(committee, verified, "committee") == {
        "x": False,
        "y": False,
        "z": False,
        "failed": False,
    }
    assert combined_predictions(committee, verified, "accept") == {
        "x": True,
        "y": False,
        "z": False,
        "failed": False,
    }


def test_unverified_reject_rejects_what_was_not_verified() -> None:
    committee = {"x": True, "y": True, "z": True}
    verified = {
        "x": {"verification": {"verdict": "passed"}},
        "y": {"verification": {"verdict": "cannot_verify"}},
        "z": {"verification": None},
    }
    assert combined_predictions(committee, verified, "accept", unverified="reject") == {
        "x": True,
        "y": False,
        "z": False,
    }
    assert combined_predictions(committee, verified, "committee", unverified="reject") == {
        "x": True,
        "y": False,
        "z": False,
    }


def test_the_verifier_run_alone_gives_the_verifier_rows_only() -> None:
    labels = {"x": "good", "y": "bad", "z": "good"}
    verified = {
        "x": {"decision": "accepted", "verification": {"verdict": "passed"}},
        "y": {"decision": "rejected", "verification": {"verdict": "failed"}},
        "z": {"decision": "accepted", "verification": {"verdict": "cannot_verify"}},
    }
    result = score_runs(Policy(), labels, None, verified)
    rows = result["configurations"]
    assert set(rows) == {
        "verifier alone (on_pass=accept, unverified=reject)",
        "committee + verifier (live run, on_pass=accept)",
    }
    alone = rows["verifier alone (on_pass=accept, unverified=reject)"]
    assert (alone["true_positive"], alone["true_negative"], alone["false_negative"]) == (1, 1, 1)
    assert rows["committee + verifier (live run, on_pass=accept)"]["accuracy"] == 1.0
    assert "weights" not in result
    assert result["verification"]["cannot_verify"] == {"good": 1, "bad": 0}
