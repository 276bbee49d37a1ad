"""The windowed grammar draws exactly what llama-cpp-python's full mask draws.

Real models: gra's backend and a plain ``llama_cpp.Llama`` on the same GGUF
file get the same prompt, JSON schema, sampling options and seed; the texts
must be identical (a window that kept the wrong candidates, or too few,
would change a draw within a few tokens, and so would a vocabulary index
that pruned a token the grammar allows). Both ways of narrowing must have
been used: the window alone (inside strings) and the index (between values).
"""

from __future__ import annotations

import pytest

from gra.agents.roles import get_role
from gra.backends.base import Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.models import resolve
from gra.protocols.roles import Example, GenerateRequest, ReviewRequest

pytestmark = pytest.mark.slow

REVIEW = ReviewRequest("python", "Reverse a list in place.", "Use `items.reverse()`.")
GENERATE = GenerateRequest("python", (Example("Sum a list of numbers.", "Use `sum(numbers)`."),))
CALLS = [
    ("reviewer", REVIEW, Sampling(max_tokens=64, temperature=0.0, seed=1)),
    ("reviewer", REVIEW, Sampling(max_tokens=64, temperature=0.2, seed=2)),
    ("reviewer", REVIEW, Sampling(max_tokens=64, temperature=0.8, seed=3)),
    ("reviewer", REVIEW, Sampling(max_tokens=64, temperature=1.0, top_p=0.9, seed=4)),
    ("generator", GENERATE, Sampling(max_tokens=64, temperature=0.8, seed=5)),
]


@pytest.mark.parametrize("model", ["gemma-3-270m", "qwen2.5-coder-0.5b"])
async def test_windowed_grammar_draws_the_same_tokens_as_the_full_mask(model: str) -> None:
    from llama_cpp import Llama

    path = resolve(model)
    plain = Llama(model_path=str(path), n_ctx=2048, n_threads=2, n_batch=256, verbose=False)
    backend = LlamaCppBackend(model, path, n_ctx=2048, n_threads=2, prompt_cache_mib=0)
    await backend.start()
    sampled = misses = 0
    try:
        # The same calls in the same order: both reuse the same prompt prefix.
        for role_name, request, sampling in CALLS:
            role = get_role(role_name)
            messages = role.prompt(request)
            expected = plain.create_chat_completion(
                messages=messages,
                response_format={"type": "json_object", "schema": role.schema},
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
            )
            completion = await backend.complete(messages, role.schema, sampling)
            assert completion.text == expected["choices"][0]["message"]["content"], sampling
            call = backend.last_call
            assert call is not None and call.grammar_window_misses is not None
            sampled += completion.completion_tokens
            misses += call.grammar_window_misses
    finally:
        plain.close()
        await backend.aclose()
    assert sampled > 100
    assert 0 < misses < sampled
