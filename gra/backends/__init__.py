"""The models: one async interface; llama.cpp in process, OpenAI-compatible over HTTP."""

from gra.backends.base import (
    Backend,
    BackendCancelled,
    BackendError,
    BackendUnavailable,
    Completion,
    ModelUnusable,
    Sampling,
)
from gra.backends.llamacpp import LlamaCppBackend
from gra.backends.nomodel import NoModelBackend
from gra.backends.openai import OpenAIBackend

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
