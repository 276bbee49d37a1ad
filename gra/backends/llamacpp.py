"""llama.cpp in process (llama-cpp-python), one model, grammar-constrained JSON.

Inference runs in a worker thread so that the agent's event loop (and its
heartbeats) keep running while the model computes. One ``Llama`` object is
not thread-safe, so calls are serialised: capacity is 1 per loaded model.
A cancelled call stops at the next token: a logits processor raises once
the call's cancel flag is set.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from gra.backends.base import (
    BackendCancelled,
    BackendError,
    BackendUnavailable,
    ChatMessages,
    Completion,
    JsonSchema,
    Sampling,
)

log = structlog.get_logger("gra.backends.llamacpp")


class LlamaCppBackend:
    def __init__(
        self,
        model: str,
        model_path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 256,
    ) -> None:
        self.model = model
        self.capacity = 1
        self.model_path = Path(model_path)
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self._n_batch = n_batch
        self._llama: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if not self.model_path.is_file():
            raise BackendUnavailable(f"model file not found: {self.model_path}")
        self._llama = await asyncio.to_thread(self._load)
        log.info("model_loaded", model=self.model, path=str(self.model_path))

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                "llama-cpp-python is not installed: pip install 'gra[llamacpp]'"
            ) from exc
        try:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_batch=self._n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"cannot load {self.model_path}: {exc}") from exc

    async def complete(
        self, messages: ChatMessages, schema: JsonSchema, sampling: Sampling
    ) -> Completion:
        if self._llama is None:
            raise BackendUnavailable("backend not started")
        cancelled = threading.Event()
        async with self._lock:
            try:
                return await asyncio.to_thread(
                    self._complete_blocking, messages, schema, sampling, cancelled
                )
            finally:
                # Reached on cancellation too: the worker thread stops at its next token.
                cancelled.set()

    def _complete_blocking(
        self,
        messages: ChatMessages,
        schema: JsonSchema,
        sampling: Sampling,
        cancelled: threading.Event,
    ) -> Completion:
        from llama_cpp import LogitsProcessorList

        def abort_if_cancelled(_ids: Any, scores: Any) -> Any:
            if cancelled.is_set():
                raise BackendCancelled("cancelled")
            return scores

        started = time.perf_counter()
        try:
            response = self._llama.create_chat_completion(
                messages=messages,
                response_format={"type": "json_object", "schema": schema},
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                logits_processor=LogitsProcessorList([abort_if_cancelled]),
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=time.perf_counter() - started,
            finish_reason=str(choice.get("finish_reason") or ""),
        )

    async def aclose(self) -> None:
        async with self._lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
