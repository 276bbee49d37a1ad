"""vLLM, or any OpenAI-compatible server, over async HTTP.

Structured output through ``response_format`` of type ``json_schema``; up to
``capacity`` requests in flight so that the server's continuous batching has
work to batch. Against vLLM (``vllm=True``) the schema goes through vLLM's own
``structured_outputs`` with whitespace disabled: otherwise a small model,
once a string has hit its maxLength, can pad with blanks until max_tokens.
vLLM 0.32's xgrammar backend ignores that per-request flag, so start such a
server with ``--structured-outputs-config '{"backend": "xgrammar",
"disable_any_whitespace": true}'`` (README, "Heterogeneous hardware").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import structlog

from gra.backends.base import (
    BackendError,
    BackendUnavailable,
    ChatMessages,
    Completion,
    OutputShape,
    Sampling,
)

log = structlog.get_logger("gra.backends.openai")


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        served_model: str | None = None,
        capacity: int = 8,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
        vllm: bool = False,
    ) -> None:
        self.model = model
        self.vllm = vllm
        self.capacity = capacity
        self.served_model = served_model or model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=capacity, max_keepalive_connections=capacity),
            transport=transport,
        )
        self._slots = asyncio.Semaphore(capacity)

    async def start(self) -> None:
        try:
            response = await self._client.get("/v1/models")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{self._client.base_url} is not reachable: {exc}") from exc
        served = [m.get("id") for m in response.json().get("data", [])]
        if self.served_model not in served:
            raise BackendUnavailable(
                f"{self._client.base_url} does not serve {self.served_model!r} (serves {served})"
            )

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": messages,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if schema is None:
            pass  # free text
        elif self.vllm:
            body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
        else:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        async with self._slots:
            started = time.perf_counter()
            try:
                response = await self._client.post("/v1/chat/completions", json=body)
            except httpx.TransportError as exc:
                raise BackendUnavailable(f"request failed: {exc!r}") from exc
            if response.status_code >= 400:
                raise BackendError(f"HTTP {response.status_code}: {response.text[:500]}")
            elapsed = time.perf_counter() - started
        try:
            payload = response.json()
            choice = payload["choices"][0]
            usage = payload.get("usage") or {}
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"malformed response: {response.text[:500]}") from exc
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=elapsed,
            finish_reason=str(choice.get("finish_reason") or ""),
        )

    async def warm(self, messages: ChatMessages, schema: OutputShape) -> bool:
        """Nothing to do: vLLM and similar servers keep their own prefix cache."""
        return False

    async def aclose(self) -> None:
        await self._client.aclose()
