"""Grammar-constrained sampling that asks the grammar about the likely tokens only.

llama-cpp-python puts the JSON grammar into its sampler chain ahead of
top-k, so at every sampled token the grammar walks the whole vocabulary
(151,936 tokens for Qwen, 262,144 for Gemma): about 30 ms a token on one
core, as long as a 0.5B model's own forward pass. But the chain then keeps
only the ``top_k`` highest-logit tokens the grammar allows (greedy: the
first one), so the grammar only needs to see tokens in logit order until it
has allowed that many. :class:`WindowedGrammarSampler` asks it about the
``WINDOW`` highest-logit candidates; when at least top-k of them are
allowed, those are exactly the candidates the whole-vocabulary mask leaves
after top-k, and the rest of llama-cpp-python's chain runs on them
unchanged, so the same seed draws the same tokens. Inside a JSON string
nearly every likely token is allowed and the window suffices.

Where the grammar allows fewer tokens than that (between JSON values, in
numbers, in keys) the window cannot be enough, and the grammar must see
every token it might allow. :class:`VocabularyIndex` narrows those down by
what a grammar cannot do: allow a token and refuse its prefix. The grammar
is asked about the one-byte tokens, then about the two-byte tokens that
start with an allowed byte, and then only about the tokens under an allowed
two-byte prefix (plus the end-of-generation and control tokens, always
asked): usually a small part of the vocabulary.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

WINDOW = 128


@dataclass
class WindowStats:
    """How many sampled tokens the window alone could not decide."""

    window_misses: int = 0  # fewer than ``keep`` allowed in the window: the index was asked


class VocabularyIndex:
    """The vocabulary grouped by first byte and first two bytes, with probe tokens.

    A token's bytes are its piece as llama.cpp's grammar reads it
    (``llama_token_to_piece`` with special tokens rendered). Tokens that are
    not plain text (end of generation, control, user-defined, unknown,
    empty) are never pruned: the grammar always sees them.
    """

    def __init__(self, vocab: Any, n_vocab: int) -> None:
        import llama_cpp

        plain_kinds = llama_cpp.LLAMA_TOKEN_ATTR_NORMAL | llama_cpp.LLAMA_TOKEN_ATTR_BYTE
        special_kinds = (
            llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
            | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
            | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
            | llama_cpp.LLAMA_TOKEN_ATTR_UNUSED
        )
        buffer = ctypes.create_string_buffer(256)
        first = np.full(n_vocab, -1, dtype=np.int32)  # first byte; -1: always asked
        pair = np.full(n_vocab, -1, dtype=np.int32)  # first two bytes; -1: one byte long
        self.byte_probe = np.full(256, -1, dtype=np.int32)
        self.pair_probe = np.full(1 << 16, -1, dtype=np.int32)
        for token in range(n_vocab):
            kind = llama_cpp.llama_vocab_get_attr(vocab, token)
            if (
                not kind & plain_kinds
                or kind & special_kinds
                or llama_cpp.llama_vocab_is_eog(vocab, token)
            ):
                continue
            size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, True)
            if not 0 < size <= len(buffer) or buffer.raw[0] == 0:
                continue
            first[token] = buffer.raw[0]
            if size == 1:
                self.byte_probe[first[token]] = token
            else:
                pair[token] = buffer.raw[0] << 8 | buffer.raw[1]
                if size == 2:
                    self.pair_probe[pair[token]] = token
        self.first, self.pair = first, pair
        self.always = np.flatnonzero(first < 0).astype(np.int32)

    def candidates(self, refused: Any) -> np.ndarray:
        """Token ids the grammar may allow, given ``refused(ids) -> bool mask``."""
        byte_ok = np.ones(256, dtype=bool)
        probes = np.flatnonzero(self.byte_probe >= 0)
        byte_ok[probes] = ~refused(self.byte_probe[probes])
        pair_ok = np.repeat(byte_ok, 256)
        probes = np.flatnonzero((self.pair_probe >= 0) & pair_ok)
        pair_ok[probes] = ~refused(self.pair_probe[probes])
        plain = self.first >= 0
        one_byte = plain & (self.pair < 0)
        keep = (one_byte & byte_ok[self.first]) | (~one_byte & plain & pair_ok[self.pair])
        keep[self.always] = True
        return np.flatnonzero(keep).astype(np.int32)


class WindowedGrammarSampler:
    """Drop-in for ``llama_cpp._internals.LlamaSampler`` in ``Llama.sample``.

    ``chain`` is llama-cpp-python's sampler chain built without the grammar
    (its penalties must be off: they would change logits before the
    grammar); ``grammar`` a chain holding only the grammar; ``keep`` what
    the chain keeps of the allowed tokens (``top_k``, or 1 when greedy).
    Both chains keep state (accepted tokens), so one instance serves one
    generation, as llama-cpp-python's own sampler does.
    """

    def __init__(
        self, chain: Any, grammar: Any, index: VocabularyIndex, n_vocab: int, keep: int
    ) -> None:
        import llama_cpp

        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._llama_cpp = llama_cpp
        self.chain = chain
        self.grammar = grammar
        self.index = index
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

    def _candidates(self, ids: np.ndarray, logits: np.ndarray | float) -> np.ndarray:
        candidates = np.empty(len(ids), dtype=self._token_data)
        values = logits[ids] if isinstance(logits, np.ndarray) else logits
        candidates["id"], candidates["logit"], candidates["p"] = ids, values, 0.0
        return candidates

    def _refused(self, ids: np.ndarray) -> np.ndarray:
        candidates = self._candidates(ids, 0.0)
        self._apply(self.grammar, candidates)
        return ~np.isfinite(candidates["logit"])

    def _allowed(self, logits: np.ndarray) -> np.ndarray:
        """The ``keep`` highest-logit tokens the grammar allows (fewer if it allows fewer)."""
        first = self.n_vocab - min(WINDOW, self.n_vocab)
        top = np.argpartition(logits, first)[first:]
        candidates = self._candidates(top[np.argsort(-logits[top], kind="stable")], logits)
        self._apply(self.grammar, candidates)
        allowed = candidates[np.isfinite(candidates["logit"])]
        if len(allowed) >= self.keep:
            return allowed[: self.keep]
        self.stats.window_misses += 1
        candidates = self._candidates(self.index.candidates(self._refused), logits)
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
        self.accept(token)
        return token

    def accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self.grammar.sampler, token)
        self._llama_cpp.llama_sampler_accept(self.chain.sampler, token)
