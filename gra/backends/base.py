"""One async interface over every model server.

Errors::

    BackendError            anything a backend call can fail with
    ├── BackendUnavailable  the server or model cannot be reached or loaded
    │   └── ModelUnusable   the model itself cannot be used: retrying will not help
    └── BackendCancelled    the call was aborted (deadline, shutdown)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

ChatMessages = list[dict[str, str]]
JsonSchema = dict[str, Any]


class BackendError(Exception):
    pass


class BackendUnavailable(BackendError):
    pass


class ModelUnusable(BackendUnavailable):
    """A model file that is missing, not a model, or truncated: the agent says so and
    exits with ``AGENT_EXIT_UNUSABLE`` so the supervisor stops at once, without restarts."""


class BackendCancelled(BackendError):
    pass


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
        self, messages: ChatMessages, schema: JsonSchema, sampling: Sampling
    ) -> Completion:
        """One chat completion whose text must match ``schema``."""
        ...

    async def warm(self, messages: ChatMessages, schema: JsonSchema) -> bool:
        """Evaluate a prompt's shared prefix ahead of the calls that start with it.

        Returns whether anything was done: a backend whose server keeps its
        own prefix cache (vLLM), or that keeps no saved states, does nothing.
        """
        ...

    async def aclose(self) -> None: ...
