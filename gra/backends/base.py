"""One async interface over every model server.

Its errors (``BackendError`` and below) live in ``gra.errors``, re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gra.errors import BackendCancelled as BackendCancelled
from gra.errors import BackendError as BackendError
from gra.errors import BackendUnavailable as BackendUnavailable
from gra.errors import ModelUnusable as ModelUnusable

# llama.cpp's RAM for saved prompt states (gra.backends.llamacpp); here so that
# the config can default to it without loading a backend.
DEFAULT_PROMPT_CACHE_MIB = 256

ChatMessages = list[dict[str, str]]
JsonSchema = dict[str, Any]
# ``None`` in place of a schema: free text, unconstrained (a role whose model
# writes code reads better as a fenced block than inside a JSON string).
OutputShape = JsonSchema | None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None


class Backend(Protocol):
    """A model behind a chat API that can be constrained by a JSON schema."""

    model: str
    capacity: int

    async def start(self) -> None:
        """Load or connect; may take long, must not block the event loop."""

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        """One chat completion whose text must match ``schema`` (None: free text)."""
        ...

    async def warm(self, messages: ChatMessages, schema: OutputShape) -> bool:
        """Evaluate a prompt's shared prefix ahead of the calls that start with it.

        Returns whether anything was done: a backend whose server keeps its
        own prefix cache (vLLM), or that keeps no saved states, does nothing.
        """
        ...

    async def aclose(self) -> None: ...
