"""A backend with no model behind it, for agents whose roles run code, not prompts.

The verifier runs tests in the sandbox; it still joins the fleet as an agent
(its own process, its own capacity, the same bus and lifecycle), so it needs
a backend for its identity and capacity. Asking it for a completion is a
configuration error, reported as a failed task.
"""

from __future__ import annotations

from gra.backends.base import BackendError, ChatMessages, Completion, OutputShape, Sampling


class NoModelBackend:
    def __init__(self, model: str, capacity: int = 2) -> None:
        self.model = model
        self.capacity = capacity

    async def start(self) -> None:
        return None

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        raise BackendError(f"{self.model} hosts no model; give it only roles that run code")

    async def warm(self, messages: ChatMessages, schema: OutputShape) -> bool:
        return False

    async def aclose(self) -> None:
        return None
