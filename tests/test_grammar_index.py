"""The vocabulary index never prunes a token the grammar allows.

No model weights: the real vocabularies (``vocab_only``) and the real JSON
grammar of each role's schema. Valid role outputs are walked token by
token; at every position the tokens the grammar allows among the index's
candidates must be exactly the tokens it allows among the whole vocabulary
(a pruned allowed token fails this), and between JSON values the index must
leave only a small part of the vocabulary to ask.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import llama_cpp
import numpy as np
import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from gra.agents.roles import get_role
from gra.backends.grammar_sampling import VocabularyIndex
from gra.models import resolve

REVIEW = {
    "checks": {"rationality": True, "completeness": False, "clarity": True},
    "scores": {
        "correctness": 7,
        "clarity": 10,
        "completeness": 0,
        "relevance": 8,
        "coherence": 9,
        "ethics": 10,
    },
    "strengths": 'Uses "sorted(set(xs))"; handles ties.\nClear.',
    "weaknesses": "No test for [] or {}: raises IndexError. Café, naïve, 日本語, 🙂 \\ end",
}
GENERATED = {
    "keywords": ["lists", "sorting", "edge cases"],
    "instruction": "Write `second_largest(xs: list[int]) -> int`.",
    "response": 'def second_largest(xs):\n    """Return it."""\n    return sorted(set(xs))[-2]\n',
}
OUTPUTS = [("reviewer", REVIEW), ("generator", GENERATED)]

pytestmark = pytest.mark.slow


class Grammar:
    """A role schema's grammar as a raw llama.cpp sampler over ``vocab``."""

    def __init__(self, vocab: object, schema: dict[str, object]) -> None:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
        self.sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        self.token_data = np.dtype(
            [("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True
        )

    def refused(self, ids: np.ndarray) -> np.ndarray:
        data = np.zeros(len(ids), dtype=self.token_data)
        data["id"] = ids
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=len(data),
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self.sampler, llama_cpp.ctypes.byref(array))
        return ~np.isfinite(data["logit"])

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.sampler)


def walk(
    model: llama_cpp.Llama, role: str, output: dict[str, object]
) -> Iterator[tuple[Grammar, int]]:
    """(grammar, next token) at every position of ``output``'s JSON text, then the end."""
    text = json.dumps(output, ensure_ascii=False)
    tokens = model.tokenize(text.encode(), add_bos=False, special=False)
    grammar = Grammar(llama_cpp.llama_model_get_vocab(model.model), get_role(role).schema)
    try:
        for token in [*tokens, model.token_eos()]:
            yield grammar, token
            grammar.accept(token)
    finally:
        grammar.close()


@pytest.mark.parametrize("model_name", ["gemma-3-270m", "qwen2.5-coder-0.5b"])
def test_the_index_keeps_every_token_the_grammar_allows(model_name: str) -> None:
    model = llama_cpp.Llama(model_path=str(resolve(model_name)), vocab_only=True, verbose=False)
    n_vocab = model.n_vocab()
    index = VocabularyIndex(llama_cpp.llama_model_get_vocab(model.model), n_vocab)
    everything = np.arange(n_vocab, dtype=np.int32)
    positions = narrow = 0
    for role, output in OUTPUTS:
        for grammar, token in walk(model, role, output):
            allowed = set(everything[~grammar.refused(everything)].tolist())
            assert token in allowed, f"{role}: the test's own text leaves the grammar"
            candidates = index.candidates(grammar.refused)
            found = set(candidates[~grammar.refused(candidates)].tolist())
            missing = sorted(allowed - found)
            assert not missing and found == allowed, f"{role} at {positions}: {missing[:10]}"
            positions += 1
            narrow += len(candidates) < n_vocab // 20
    assert positions > 60
    assert narrow > positions // 4
