"""Deduplication: the admission rule on exact vectors, then on real MiniLM embeddings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gra.data.dedup import (
    DEFAULT_THRESHOLD,
    Candidate,
    DedupPool,
    Embedder,
    EmbeddingError,
    default_model_path,
)
from gra.data.seeds import SeedItem


class TableEmbedder:
    """Unit vectors chosen by hand, so every similarity in a test is known exactly."""

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.table[t] for t in texts])


def unit(angle_deg: float) -> list[float]:
    return [math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))]


def cand(item_id: str, mean: float, instruction: str | None = None) -> Candidate:
    return Candidate(item_id, instruction or item_id, "r", mean)


def instruction_pool(table: dict[str, Sequence[float]], **kwargs: object) -> DedupPool:
    return DedupPool(TableEmbedder(table), text="instruction", **kwargs)  # type: ignore[arg-type]


# --- the rule, on exact vectors ---------------------------------------------


@pytest.mark.parametrize("order", [["low", "high"], ["high", "low"]])
def test_of_two_duplicates_the_higher_mean_is_kept(order: list[str]) -> None:
    pool = instruction_pool({"low": [1, 0], "high": [1, 0]})
    means = {"low": 8.1, "high": 9.7}
    decisions = pool.admit([cand(name, means[name]) for name in order])
    assert [d.id for d in decisions] == ["high", "low"], "decisions come in visit order"
    high, low = decisions
    assert high.admitted and high.nearest is None and high.similarity is None
    assert not low.admitted and low.duplicate_of == "high"
    assert low.similarity == pytest.approx(1.0)
    assert pool.ids == ["high"]


def test_a_rejected_candidate_does_not_join_the_pool() -> None:
    # b is within 10 degrees of a (rejected); c is within 10 of b but 20 from a.
    pool = instruction_pool({"a": unit(0), "b": unit(10), "c": unit(20)}, threshold=0.97)
    decisions = {d.id: d for d in pool.admit([cand("a", 9.9), cand("b", 9.5), cand("c", 9.0)])}
    assert decisions["a"].admitted
    assert not decisions["b"].admitted and decisions["b"].duplicate_of == "a"
    assert decisions["c"].admitted, "c was compared with b, which never entered the pool"
    assert decisions["c"].nearest == "a"
    assert decisions["c"].similarity == pytest.approx(math.cos(math.radians(20)), abs=1e-6)


def test_only_similarity_strictly_below_the_threshold_is_admitted() -> None:
    table = {"x": unit(0), "y": unit(60)}  # cosine exactly 0.5
    at = instruction_pool(table, threshold=0.5).admit([cand("x", 9), cand("y", 8)])
    assert [d.admitted for d in at] == [True, False]
    above = instruction_pool(table, threshold=0.5001).admit([cand("x", 9), cand("y", 8)])
    assert [d.admitted for d in above] == [True, True]


def test_the_pool_remembers_earlier_calls_and_seeds() -> None:
    table = {"seed": [1, 0, 0], "same-as-seed": [1, 0, 0], "new": [0, 1, 0], "new-again": [0, 1, 0]}
    pool = instruction_pool(table)
    pool.add([SeedItem("seed-1", "seed", "r", "coding")])
    first = pool.admit([cand("same-as-seed", 9.5), cand("new", 9.0)])
    assert [(d.id, d.admitted, d.duplicate_of) for d in first] == [
        ("same-as-seed", False, "seed-1"),
        ("new", True, None),
    ]
    (second,) = pool.admit([cand("new-again", 10.0)])
    assert not second.admitted and second.duplicate_of == "new"
    assert len(pool) == 2


def test_the_embedded_text_is_a_parameter() -> None:
    embedder = TableEmbedder({"i\nr": [1, 0], "i": [0, 1], "r": [1, 1]})
    DedupPool(embedder).admit([Candidate("a", "i", "r", 9)])
    DedupPool(embedder, text="instruction").admit([Candidate("a", "i", "r", 9)])
    DedupPool(embedder, text="response").admit([Candidate("a", "i", "r", 9)])
    DedupPool(embedder, text=lambda c: c.response).admit([Candidate("a", "i", "r", 9)])
    assert embedder.calls == [["i\nr"], ["i"], ["r"], ["r"]]


def test_nothing_to_admit_embeds_nothing() -> None:
    embedder = TableEmbedder({})
    assert DedupPool(embedder).admit([]) == []
    assert embedder.calls == []


def test_an_id_seen_twice_is_refused() -> None:
    pool = instruction_pool({"a": [1, 0], "b": [0, 1]})
    with pytest.raises(ValueError, match="given twice: a"):
        pool.admit([cand("a", 9), cand("a", 8)])
    pool.admit([cand("a", 9)])
    with pytest.raises(ValueError, match="already in the pool"):
        pool.admit([cand("a", 9.5)])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DedupPool(TableEmbedder({}), threshold=1.5)
    with pytest.raises(ValueError, match="text 'both'"):
        DedupPool(TableEmbedder({}), text="both")


def test_weights_that_are_not_minilm_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not the model")
    embedder = Embedder(tmp_path)  # lazy: constructing it checks nothing yet
    with pytest.raises(EmbeddingError, match="sha256"):
        embedder.embed(["x"])


# --- real all-MiniLM-L6-v2 embeddings -----------------------------------------

CAPITAL = ("What is the capital of France?", "The capital of France is Paris.")
CAPITAL_AGAIN = ("What's the capital city of France?", "Paris is the capital of France.")
FIB = (
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
)
FIB_AGAIN = (
    "Implement an iterative Python function returning the nth Fibonacci number.",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a",
)
HAIKU = (
    "Write a haiku about autumn leaves.",
    "Crimson leaves drifting\nwhispers on the cooling wind\nthe year lets go slow",
)
SQL = ("Write a SQL query that counts the rows in table orders.", "SELECT COUNT(*) FROM orders;")
SORT = (
    "Write a Python function that sorts a list of numbers in descending order.",
    "def sort_desc(xs):\n    return sorted(xs, reverse=True)",
)
PHOTO = (
    "Explain photosynthesis in one sentence.",
    "Plants use sunlight, water and carbon dioxide to make glucose and release oxygen.",
)
PHOTO_AGAIN = (
    "In one sentence, explain what photosynthesis is.",
    "Photosynthesis is how plants turn sunlight, water and carbon dioxide into glucose, "
    "releasing oxygen.",
)


def real(item_id: str, pair: tuple[str, str], mean: float) -> Candidate:
    return Candidate(item_id, pair[0], pair[1], mean)


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    try:
        default_model_path()
    except EmbeddingError as exc:
        pytest.skip(str(exc))
    return Embedder()


@pytest.mark.slow
def test_embeddings_are_unit_float32_rows(minilm: Embedder) -> None:
    vectors = minilm.embed(["a cat", "a cat", "quantum chromodynamics"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert float(vectors[0] @ vectors[2]) < 0.5


@pytest.mark.slow
def test_paraphrases_are_caught_and_distinct_items_kept(minilm: Embedder) -> None:
    pool = DedupPool(minilm)
    assert pool.threshold == DEFAULT_THRESHOLD == 0.9
    decisions = pool.admit(
        [
            real("capital", CAPITAL, 9.0),
            real("haiku", HAIKU, 8.5),
            real("capital-again", CAPITAL_AGAIN, 8.7),
            real("fib", FIB, 9.2),
            real("sql", SQL, 8.2),
            real("fib-again", FIB_AGAIN, 9.1),
            real("sort", SORT, 8.9),
        ]
    )
    verdict = {d.id: d for d in decisions}
    assert {d.id for d in decisions if d.admitted} == {"capital", "haiku", "fib", "sql", "sort"}
    assert verdict["capital-again"].duplicate_of == "capital"
    assert verdict["fib-again"].duplicate_of == "fib"
    for duplicate in ("capital-again", "fib-again"):
        assert verdict[duplicate].similarity is not None and verdict[duplicate].similarity >= 0.9
    for kept in ("haiku", "sql", "sort"):
        assert verdict[kept].similarity is not None and verdict[kept].similarity < 0.9
    assert [d.mean for d in decisions] == sorted((d.mean for d in decisions), reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("winner", ["first", "second"])
def test_the_better_scored_paraphrase_survives(minilm: Embedder, winner: str) -> None:
    means = (9.6, 8.4) if winner == "first" else (8.4, 9.6)
    decisions = DedupPool(minilm).admit(
        [real("first", CAPITAL, means[0]), real("second", CAPITAL_AGAIN, means[1])]
    )
    assert [d.id for d in decisions if d.admitted] == [winner]
    loser = next(d for d in decisions if not d.admitted)
    assert loser.duplicate_of == winner


@pytest.mark.slow
def test_the_threshold_is_honoured(minilm: Embedder) -> None:
    a, b = minilm.embed(["\n".join(PHOTO), "\n".join(PHOTO_AGAIN)])
    similarity = float(a @ b)
    assert 0.8 < similarity < 0.99, "the pair must be close but not identical"
    pair = [real("photo", PHOTO, 9.0), real("photo-again", PHOTO_AGAIN, 8.0)]
    loose = DedupPool(minilm, threshold=similarity + 0.002).admit(pair)
    strict = DedupPool(minilm, threshold=similarity - 0.002).admit(pair)
    assert [d.admitted for d in loose] == [True, True]
    assert [d.admitted for d in strict] == [True, False]
    assert strict[1].similarity == pytest.approx(similarity, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("seeds_in_pool", [True, False])
def test_seeds_in_or_out_of_the_pool(minilm: Embedder, seeds_in_pool: bool) -> None:
    pool = DedupPool(minilm)
    if seeds_in_pool:
        pool.add([SeedItem("seed-fib", FIB[0], FIB[1], "coding")])
    decisions = pool.admit([real("fib-again", FIB_AGAIN, 9.0), real("sql", SQL, 8.5)])
    fib_again = decisions[0]
    assert fib_again.admitted is not seeds_in_pool
    assert fib_again.duplicate_of == ("seed-fib" if seeds_in_pool else None)
    assert decisions[1].admitted
