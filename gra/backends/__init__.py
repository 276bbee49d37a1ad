"""The models: one async interface; llama.cpp in process, OpenAI-compatible over HTTP.

The backends themselves load on first use, so that a module wanting only the
interface or a default (``gra.config``) does not load numpy, httpx or llama.cpp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gra.backends.base import Backend, Completion, Sampling
from gra.errors import BackendCancelled, BackendError, BackendUnavailable, ModelUnusable

if TYPE_CHECKING:
    from gra.backends.llamacpp import LlamaCppBackend
    from gra.backends.nomodel import NoModelBackend
    from gra.backends.openai import OpenAIBackend

_LAZY = {
    "LlamaCppBackend": "gra.backends.llamacpp",
    "NoModelBackend": "gra.backends.nomodel",
    "OpenAIBackend": "gra.backends.openai",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Backend",
    "BackendCancelled",
    "BackendError",
    "BackendUnavailable",
    "Completion",
    "LlamaCppBackend",
    "ModelUnusable",
    "NoModelBackend",
    "OpenAIBackend",
    "Sampling",
]
