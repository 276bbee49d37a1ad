"""Grammar-constrained sampling that asks the grammar about the likely tokens only.

llama-cpp-python puts the JSON grammar into its sampler chain ahead of
top-k, so at every sampled token the grammar walks the whole vocabulary
(151,936 tokens for Qwen, 262,144 for Gemma): about 30 ms a token on one
core, as long as a 0.5B model's own forward pass. But the chain then keeps
only the ``top_k`` highest-logit tokens the grammar allows (greedy: the
first one), so the grammar only needs to see tokens in logit order until it
has allowed that many. :class:`WindowedGrammarSampler` asks it about the
highest-logit window of candidates and widens the window (to the whole
vocabulary at worst) until enough are allowed, then runs the rest of the
chain on those. The candidates the chain sees are the ones masking the
whole vocabulary leaves after top-k, so the drawn tokens are the same for
the same seed; inside a JSON string nearly every likely token is allowed
and one small window suffices.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

FIRST_WINDOW = 128
WINDOW_GROWTH = 8


@dataclass
class WindowStats:
    """Sampled tokens, and how many of them needed the whole vocabulary."""

    sampled: int = 0
    full_passes: int = 0


class WindowedGrammarSampler:
    """Drop-in for ``llama_cpp._internals.LlamaSampler`` in ``Llama.sample``.

    ``chain`` is llama-cpp-python's sampler chain built without the grammar
    (its penalties must be off: they would change logits before the
    grammar); ``grammar`` a chain holding only the grammar; ``keep`` what
    the chain keeps of the allowed tokens (``top_k``, or 1 when greedy).
    Both chains keep state (accepted tokens), so one instance serves one
    generation, as llama-cpp-python's own sampler does.
    """

    def __init__(self, chain: Any, grammar: Any, n_vocab: int, keep: int) -> None:
        import llama_cpp

        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._llama_cpp = llama_cpp
        self.chain = chain
        self.grammar = grammar
        self.n_vocab = n_vocab
        self.keep = keep
        self.stats = WindowStats()
        self._token_data = np.dtype(
            [("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True
        )
        if self._token_data.itemsize != ctypes.sizeof(llama_cpp.llama_token_data):
            raise RuntimeError("llama_token_data's layout differs from numpy's")

    def _apply(self, sampler: Any, candidates: np.ndarray) -> Any:
        """Run ``sampler`` over ``candidates`` in place; the array struct it saw."""
        llama_cpp = self._llama_cpp
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=len(candidates),
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(sampler.sampler, ctypes.byref(array))
        return array

    def _candidates(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        candidates = np.empty(len(ids), dtype=self._token_data)
        candidates["id"], candidates["logit"], candidates["p"] = ids, logits[ids], 0.0
        return candidates

    def _allowed(self, logits: np.ndarray) -> np.ndarray:
        """The ``keep`` highest-logit tokens the grammar allows (fewer if it allows fewer)."""
        window = FIRST_WINDOW
        while window < self.n_vocab:
            top = np.argpartition(logits, self.n_vocab - window)[self.n_vocab - window :]
            candidates = self._candidates(top[np.argsort(-logits[top], kind="stable")], logits)
            self._apply(self.grammar, candidates)
            allowed = candidates[np.isfinite(candidates["logit"])]
            if len(allowed) >= self.keep:
                return allowed[: self.keep]
            window *= WINDOW_GROWTH
        self.stats.full_passes += 1
        candidates = self._candidates(np.arange(self.n_vocab, dtype=np.int32), logits)
        self._apply(self.grammar, candidates)
        allowed = candidates[np.isfinite(candidates["logit"])]
        order = np.argsort(-allowed["logit"], kind="stable")
        return allowed[order[: self.keep]]

    def sample(self, ctx: Any, idx: int = -1) -> int:
        """The next token at output ``idx`` of ``ctx`` (a ``LlamaContext``), accepted."""
        llama_cpp = self._llama_cpp
        pointer = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        candidates = self._allowed(logits)
        if not len(candidates):
            raise RuntimeError("the grammar allows no token here")
        array = self._apply(self.chain, candidates)
        if not 0 <= array.selected < array.size:
            raise RuntimeError("the sampler chain selected no token")
        token = int(array.data[array.selected].id)
        self.stats.sampled += 1
        self.accept(token)
        return token

    def accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self.grammar.sampler, token)
        self._llama_cpp.llama_sampler_accept(self.chain.sampler, token)

    def reset(self) -> None:
        self._llama_cpp.llama_sampler_reset(self.grammar.sampler)
        self._llama_cpp.llama_sampler_reset(self.chain.sampler)

    def close(self) -> None:
        self.chain.close()
        self.grammar.close()
