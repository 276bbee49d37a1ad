"""How varied the made items are: a reproducible sample, mean cosine distances, a 2-D map.

Pure (numpy, no model, no files): the embedding function is handed in, so the
arithmetic is tested on vectors whose answers are known by hand, and the page
never waits on a model to test its layout.

Why a sample: MiniLM on a CPU embeds 15-40 short texts a second on a busy
two-core machine, so the report embeds at most ``SAMPLE_PER_KIND`` items of
each kind (seeds, accepted, rejected), each cut to ``TEXT_CHARS`` characters
(about the 100 tokens that place a text's topic; the model reads 256 at
most). 150 items give a mean over 11,175 pairs, whose sampling error (about
0.01 for a spread of 0.1) is far below the differences worth looking at, and
450 points still show where the kinds lie apart. The sample is the items whose id
hashes lowest (a bottom-k sketch): the same run gives the same sample in any
file order and on any machine, and a growing run keeps most of its sample.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SAMPLE_PER_KIND = 150
TEXT_CHARS = 500
KINDS = ("seed", "accepted", "rejected")

Embed = Callable[[list[str]], np.ndarray]


def embedding_text(instruction: str, response: str) -> str:
    """What is embedded: the pair, as deduplication embeds it, cut to ``TEXT_CHARS``."""
    return f"{instruction}\n{response}"[:TEXT_CHARS]


def sample_key(item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big")


@dataclass
class BottomK:
    """The ``k`` items whose id hashes lowest among all offered: a reproducible sample."""

    k: int = SAMPLE_PER_KIND
    offered: int = 0
    # A max-heap by key (negated), so the worst kept item is the one to drop.
    _heap: list[tuple[int, str, str]] = field(default_factory=list)

    def offer(self, item_id: str, text: str) -> None:
        self.offered += 1
        if self.k <= 0:
            return
        entry = (-sample_key(item_id), item_id, text)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def texts(self) -> list[str]:
        """The kept texts, lowest hash first (the same order for the same items)."""
        return [text for _, _, text in sorted(self._heap, reverse=True)]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero), so a dot product is the cosine."""
    matrix = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def mean_pairwise_distance(vectors: np.ndarray) -> float | None:
    """Mean cosine distance (1 - cosine) over all pairs of distinct rows; None under two rows.

    The sum of all pairwise cosines of unit rows is |sum of rows|^2 minus the n
    self-pairs, so this is O(n d) rather than an n x n matrix.
    """
    units = unit_rows(vectors)
    n = len(units)
    if n < 2:
        return None
    total = units.sum(axis=0)
    similarity = (float(total @ total) - float((units * units).sum())) / (n * (n - 1))
    return 1.0 - similarity


def mean_cross_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean cosine distance between every row of ``a`` and every row of ``b``."""
    units_a, units_b = unit_rows(a), unit_rows(b)
    if not len(units_a) or not len(units_b):
        return None
    return 1.0 - float(units_a.sum(axis=0) @ units_b.sum(axis=0)) / (len(units_a) * len(units_b))


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows projected on their first two principal components, and each one's share of
    the variance. Each component's sign puts its largest loading positive, so the
    same points always draw the same picture."""
    matrix = np.asarray(vectors, dtype=np.float64)
    points = np.zeros((len(matrix), 2))
    explained = np.zeros(2)
    if len(matrix) < 2:
        return points, explained
    centred = matrix - matrix.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    if variance.sum() <= 0:
        return points, explained
    take = min(2, len(components))
    for index in range(take):
        component = components[index]
        if component[np.argmax(np.abs(component))] < 0:
            component = -component
        points[:, index] = centred @ component
        explained[index] = variance[index] / variance.sum()
    return points, explained


@dataclass(frozen=True)
class ItemMap:
    """The embedded sample: where each point lies on the map, and the mean distances."""

    points: np.ndarray  # (n, 2)
    kinds: tuple[str, ...]  # one of KINDS per point
    explained: tuple[float, float]
    spread: dict[str, float | None]  # kind: mean pairwise cosine distance within it
    accepted_to_seeds: float | None
    sampled: dict[str, int]
    offered: dict[str, int]
    seconds: float  # embedding the sample
    load_seconds: float = 0.0  # loading the model, when the caller timed it


def item_map(samples: Mapping[str, BottomK], embed: Embed) -> ItemMap | None:
    """Embed each kind's sample once, then measure and project; None with nothing to embed."""
    started = time.monotonic()
    kinds: list[str] = []
    texts: list[str] = []
    for kind in KINDS:
        sample = samples.get(kind)
        for text in sample.texts() if sample is not None else ():
            kinds.append(kind)
            texts.append(text)
    if not texts:
        return None
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"embedding returned shape {vectors.shape} for {len(texts)} texts")
    labels = np.array(kinds)
    by_kind = {kind: vectors[labels == kind] for kind in KINDS}
    points, explained = pca_2d(vectors)
    return ItemMap(
        points=points,
        kinds=tuple(kinds),
        explained=(float(explained[0]), float(explained[1])),
        spread={kind: mean_pairwise_distance(by_kind[kind]) for kind in KINDS},
        accepted_to_seeds=mean_cross_distance(by_kind["accepted"], by_kind["seed"]),
        sampled={kind: int((labels == kind).sum()) for kind in KINDS},
        offered={kind: samples[kind].offered if kind in samples else 0 for kind in KINDS},
        seconds=time.monotonic() - started,
    )


def sample_texts(items: Sequence[tuple[str, str]], k: int = SAMPLE_PER_KIND) -> BottomK:
    """A BottomK over (id, text) pairs, for callers that hold the items already (seeds)."""
    sample = BottomK(k)
    for item_id, text in items:
        sample.offer(item_id, text)
    return sample
