"""The report's diversity figures and timeline on inputs whose answers are known by hand
(gra/report/diversity.py, gra/report/timeline.py): no model, no files, milliseconds."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from gra.report.diversity import (
    BottomK,
    embedding_text,
    item_map,
    mean_cross_distance,
    mean_pairwise_distance,
    pca_2d,
    sample_texts,
    unit_rows,
)
from gra.report.timeline import Call, Finish, bin_timeline, bin_width, read_calls

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def test_mean_pairwise_distance_is_one_minus_the_mean_cosine_over_pairs() -> None:
    # Pairs: (e1, e2) 1, (e1, -e1) 2, (e2, -e1) 1.
    assert mean_pairwise_distance(np.array([E1, E2, [-1.0, 0.0]])) == pytest.approx(4 / 3)
    # Length does not matter: [2, 0] and [0, 3] are orthogonal.
    assert mean_pairwise_distance(np.array([[2.0, 0.0], [0.0, 3.0]])) == pytest.approx(1.0)
    # The same direction three times: no spread at all.
    assert mean_pairwise_distance(np.array([E1, [5.0, 0.0], [0.1, 0.0]])) == pytest.approx(0.0)
    assert mean_pairwise_distance(np.array([E1])) is None


def test_mean_pairwise_distance_agrees_with_the_full_matrix() -> None:
    vectors = np.random.default_rng(3).normal(size=(40, 8))
    units = unit_rows(vectors)
    cosines = units @ units.T
    pairs = [1 - cosines[i, j] for i in range(40) for j in range(40) if i != j]
    assert mean_pairwise_distance(vectors) == pytest.approx(sum(pairs) / len(pairs))


def test_mean_cross_distance_over_every_pair_of_the_two_sets() -> None:
    # e1 to e1: 0; e1 to e2: 1.
    assert mean_cross_distance(np.array([E1]), np.array([E1, E2])) == pytest.approx(0.5)
    assert mean_cross_distance(np.array([E1]), np.zeros((0, 2))) is None


def test_pca_of_points_on_a_line_is_the_line() -> None:
    points, explained = pca_2d(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [3.0, 6.0, 0.0]]))
    # The component is (1, 2, 0)/sqrt(5), its largest loading positive.
    root5 = math.sqrt(5)
    np.testing.assert_allclose(points[:, 0], [-root5, 0.0, root5], atol=1e-12)
    np.testing.assert_allclose(points[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(explained, [1.0, 0.0], atol=1e-12)


def test_pca_of_a_cross_finds_the_long_arm_first_and_its_share() -> None:
    cross = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    points, explained = pca_2d(cross)
    # Variances along x and y: 8 and 2 (sums of squares), so 80% and 20%.
    np.testing.assert_allclose(explained, [0.8, 0.2])
    np.testing.assert_allclose(np.abs(points), np.abs(cross), atol=1e-12)
    # The same points in another order draw the same picture.
    again, _ = pca_2d(cross[::-1])
    np.testing.assert_allclose(again, points[::-1], atol=1e-12)


def test_pca_of_too_few_or_identical_points_is_all_zeros() -> None:
    for vectors in (np.array([[1.0, 2.0]]), np.array([[1.0, 2.0], [1.0, 2.0]])):
        points, explained = pca_2d(vectors)
        assert not points.any() and not explained.any()


def test_the_sample_is_the_same_whatever_the_order_and_capped() -> None:
    items = [(f"item-{i}", f"text {i}") for i in range(1000)]
    first = sample_texts(items, k=50)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    second = sample_texts(shuffled, k=50)
    assert first.texts() == second.texts()
    assert len(first.texts()) == 50 and first.offered == 1000
    # A growing run keeps its sample: items added later displace only those they beat.
    grown = sample_texts([*items, *((f"item-{i}", f"text {i}") for i in range(1000, 1100))], k=50)
    assert len(set(grown.texts()) & set(first.texts())) >= 40
    assert BottomK(0).texts() == []


def test_embedding_text_is_the_pair_cut_short() -> None:
    assert embedding_text("Q", "A") == "Q\nA"
    assert len(embedding_text("q" * 10_000, "a")) == 500


def test_item_map_measures_each_kind_and_the_accepted_against_the_seeds() -> None:
    vectors = {"s1": E1, "s2": E2, "a1": E1, "a2": E1, "r1": [-1.0, 0.0]}
    samples = {
        "seed": sample_texts([("1", "s1"), ("2", "s2")]),
        "accepted": sample_texts([("3", "a1"), ("4", "a2")]),
        "rejected": sample_texts([("5", "r1")]),
    }
    embedded = item_map(samples, lambda texts: np.array([vectors[t] for t in texts]))
    assert embedded is not None
    assert embedded.spread["seed"] == pytest.approx(1.0)
    assert embedded.spread["accepted"] == pytest.approx(0.0)
    assert embedded.spread["rejected"] is None
    # a1 and a2 against e1 (0) and e2 (1): 0.5.
    assert embedded.accepted_to_seeds == pytest.approx(0.5)
    assert embedded.sampled == {"seed": 2, "accepted": 2, "rejected": 1}
    assert sorted(embedded.kinds) == ["accepted", "accepted", "rejected", "seed", "seed"]
    assert embedded.points.shape == (5, 2)
    assert item_map({}, lambda texts: np.zeros((0, 2))) is None
    with pytest.raises(ValueError, match="shape"):
        item_map(samples, lambda texts: np.zeros((1, 2)))


# ---- the timeline --------------------------------------------------------------


def test_bin_width_is_a_round_width_giving_at_most_the_bins_asked() -> None:
    assert bin_width(50, 60) == 1
    assert bin_width(3600, 60) == 60
    assert bin_width(3601, 60) == 120
    assert bin_width(10 * 86400, 60) == 21600
    # Past a day a bin, whole days.
    assert bin_width(100 * 86400, 60) == 2 * 86400


def test_busy_fraction_and_speed_per_bin_from_call_timings() -> None:
    # Bins of 10 s. Model m (2 slots): a 10 s call in bin 0, and a 20 s call from
    # t=15 to t=35 spread over bins 1 (5 s), 2 (10 s) and 3 (5 s).
    calls = [Call("m", 100.0, 10.0, 50), Call("m", 115.0, 20.0, 200)]
    finishes = [Finish(100.0, "accepted"), Finish(139.0, "rejected"), Finish(101.0, "accepted")]
    timeline = bin_timeline(finishes, calls, {"m": 2}, max_bins=4)
    assert timeline is not None
    assert (timeline.start, timeline.bin_s, timeline.bins) == (100.0, 10.0, 4)
    np.testing.assert_allclose(timeline.finished["accepted"], [2, 0, 0, 0])
    np.testing.assert_allclose(timeline.finished["rejected"], [0, 0, 0, 1])
    np.testing.assert_allclose(timeline.calls["m"], [0, 1, 0, 1])  # ended at 110 and 135
    # The last bin covers 130-139: 5 busy seconds over 9 s of two slots.
    np.testing.assert_allclose(timeline.busy["m"], [10 / 20, 5 / 20, 10 / 20, 5 / 18])
    # 50 tokens in 10 s, then 200 tokens in 20 s: 5 and 10 tokens a second.
    np.testing.assert_allclose(timeline.tokens_per_s["m"], [5, 10, 10, 10])
    np.testing.assert_allclose(timeline.minutes(), [0, 1 / 6, 2 / 6, 3 / 6])


def test_per_role_series_share_the_whole_fleets_slots() -> None:
    # Bins of 10 s over two models of one slot each (2 slots in all). Model a reviews
    # for 10 s in bin 0 (40 tokens); model b generates for 10 s in bin 0 (100 tokens)
    # and reviews from t=10 to 20 (60 tokens).
    calls = [
        Call("a", 0.0, 10.0, 40, "reviewer"),
        Call("b", 0.0, 10.0, 100, "generator"),
        Call("b", 10.0, 10.0, 60, "reviewer"),
        Call("b", 15.0, 0.0, 0),  # from a log that names no role: per model only
    ]
    timeline = bin_timeline([], calls, {"a": 1, "b": 1}, max_bins=2)
    assert timeline is not None and (timeline.bin_s, timeline.bins) == (10.0, 2)
    np.testing.assert_allclose(timeline.role_tasks["reviewer"], [0, 2])  # ended at 10, 20
    np.testing.assert_allclose(timeline.role_tasks["generator"], [0, 1])
    np.testing.assert_allclose(timeline.calls["b"], [0, 3])
    np.testing.assert_allclose(timeline.role_busy["reviewer"], [10 / 20, 10 / 20])
    np.testing.assert_allclose(timeline.role_busy["generator"], [10 / 20, 0])
    # The roles' shares add up to the fleet's busy fraction.
    fleet = (timeline.busy["a"] + timeline.busy["b"]) / 2
    np.testing.assert_allclose(sum(timeline.role_busy.values()), fleet)
    np.testing.assert_allclose(timeline.role_tokens_per_s["reviewer"], [4, 6])
    assert math.isnan(timeline.role_tokens_per_s["generator"][1])
    assert set(timeline.role_tasks) == {"reviewer", "generator"}


def test_an_idle_bin_has_no_speed_and_no_events_no_timeline() -> None:
    calls = [Call("m", 0.0, 1.0, 10), Call("m", 30.0, 1.0, 10)]
    timeline = bin_timeline([], calls, {}, max_bins=60)
    assert timeline is not None and timeline.bin_s == 1.0
    assert math.isnan(timeline.tokens_per_s["m"][10])
    assert timeline.busy["m"][0] == pytest.approx(1.0)  # one slot when summary names none
    assert bin_timeline([], [], {}) is None


def test_task_done_lines_are_read_and_older_logs_fall_back_to_llama_calls(tmp_path: Path) -> None:
    def line(event: str, **fields: object) -> str:
        return json.dumps({"event": event, "model": "m", "seconds": 2.0, **fields}) + "\n"

    both = tmp_path / "agent-m-0.jsonl"
    both.write_text(
        line("llama_call", started_at=10.0, completion_tokens=5)
        + line("task_done", started_at=10.0, completion_tokens=5, role="tester")
        + "not json, with task_done in it\n"
        + line("task_done", started_at=float("nan"), role="tester")
    )
    older = tmp_path / "agent-n-0.jsonl"
    older.write_text(line("llama_call", started_at=3.0, completion_tokens=7))
    calls = read_calls([both, older])
    assert calls == [Call("m", 10.0, 2.0, 5, "tester"), Call("m", 3.0, 2.0, 7, "")]
