"""The llama.cpp prompt cache on a real model: shared prompt prefixes are not evaluated again.

Judged by token counts (how many prompt tokens llama.cpp evaluated), never by time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gra.agents.roles import get_role
from gra.backends.base import Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.models import resolve
from gra.protocols.roles import AnnotateRequest, ReviewRequest

pytestmark = pytest.mark.slow

MODEL = "gemma-3-270m"
# Short outputs: only the prompt side is under test.
SAMPLING = Sampling(max_tokens=16, temperature=0.2, seed=3)

CALLS: list[tuple[str, Any]] = [
    ("reviewer", ReviewRequest("math", "What is 12 x 12?", "12 x 12 = 144.")),
    # Another role in between: the previous call no longer shares the review prefix.
    ("annotator", AnnotateRequest("Reverse a list in Python.", "Use lst[::-1].")),
    (
        "reviewer",
        ReviewRequest(
            "coding",
            "Write a Python expression that squares x.",
            "x ** 2 multiplies x by itself.",
        ),
    ),
]


async def _evaluated(prompt_cache_mib: int) -> list[tuple[int, int]]:
    """(prompt tokens, prompt tokens evaluated) per call of CALLS."""
    backend = LlamaCppBackend(MODEL, resolve(MODEL), n_ctx=2048, prompt_cache_mib=prompt_cache_mib)
    await backend.start()
    counts = []
    try:
        for role_name, request in CALLS:
            role = get_role(role_name)
            completion = await backend.complete(role.prompt(request), role.schema, SAMPLING)
            call = backend.last_call
            assert call is not None and call.prompt_tokens == completion.prompt_tokens
            counts.append((call.prompt_tokens, call.prompt_evaluated))
    finally:
        await backend.aclose()
    return counts


def test_cache_resumes_a_role_prefix_after_another_role() -> None:
    on = asyncio.run(_evaluated(64))
    off = asyncio.run(_evaluated(0))
    (first_tokens, first_evaluated), _, (last_tokens, last_evaluated) = on
    # Nothing cached yet: (nearly) the whole first prompt is evaluated.
    assert first_evaluated >= 0.9 * first_tokens
    # The second review resumes from the first one's state across the annotation:
    # the shared system prompt (task, rubric, output shape) comes from the cache.
    assert last_evaluated < 0.5 * last_tokens
    # Without the cache, the annotation in between costs that prefix.
    assert off[2][0] == last_tokens
    assert off[2][1] >= 0.9 * last_tokens
    assert [tokens for tokens, _ in on] == [tokens for tokens, _ in off]
