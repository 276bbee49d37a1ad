"""llama.cpp in process (llama-cpp-python), one model, grammar-constrained JSON.

Inference runs in a worker thread so that the agent's event loop (and its
heartbeats) keep running while the model computes. One ``Llama`` object is
not thread-safe, so calls are serialised: capacity is 1 per loaded model.
A cancelled call stops before its next evaluation (the next token, or the
prompt's next batch of ``n_batch`` tokens): ``eval`` raises once the call's
cancel flag is set. (A logits processor cannot do it: llama-cpp-python calls
those through a ctypes callback, which swallows the exception, and sampling
would go on to ``max_tokens``.)

Prompt cache. llama-cpp-python reuses the KV cache of the longest token
prefix a prompt shares with the *previous* call only; an agent that
alternates roles (generate, review, annotate) loses the shared prefix of a
role at each switch. With ``prompt_cache_mib > 0`` the model state after each
call is kept in an LRU cache in RAM (``LlamaRAMCache``), and a new prompt
starts from the cached state that shares its longest prefix; roles put their
fixed text first (``gra.agents.roles``) so that prefix is long. States are
saved without llama-cpp-python's copy of the logits array (n_batch x n_vocab
floats, about 155 MB for Qwen's vocabulary, unused since sampling runs in
llama.cpp and not counted against the cache's capacity), so a cached state
costs about its KV cells. Each call's evaluated and reused prompt tokens are
counted (``last_call``, ``stats``) and logged.

Grammar. JSON output is constrained by llama.cpp's grammar, built by gra
from the schema (``gra.backends.gbnf``: raw newlines and tabs allowed in
strings unless ``raw_newlines=False``) and asked only about the
highest-logit candidates (``gra.backends.grammar_sampling``): the same
tokens as llama-cpp-python's whole-vocabulary mask for the same seed, in a
fraction of its sampling time.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gra.backends.base import (
    DEFAULT_PROMPT_CACHE_MIB,
    BackendCancelled,
    BackendError,
    BackendUnavailable,
    ChatMessages,
    Completion,
    ModelUnusable,
    OutputShape,
    Sampling,
)
from gra.backends.gbnf import json_grammar
from gra.backends.grammar_sampling import VocabularyIndex, WindowedGrammarSampler
from gra.backends.threads import run_exclusive

log = structlog.get_logger("gra.backends.llamacpp")


@dataclass(frozen=True)
class CallStats:
    """Where one call's prompt came from: the KV cache (reused) or a fresh evaluation."""

    prompt_tokens: int
    prompt_evaluated: int
    prompt_eval_seconds: float
    seconds: float
    started_at: float  # time.time(), to line calls up with other processes' logs
    # Sampled tokens the grammar's window could not decide alone
    # (``gra.backends.grammar_sampling``); None: the call sampled without the window.
    grammar_window_misses: int | None = None

    @property
    def prompt_reused(self) -> int:
        return self.prompt_tokens - self.prompt_evaluated

    def log_fields(self) -> dict[str, float | None]:
        return {
            "seconds": round(self.seconds, 6),
            "started_at": self.started_at,
            "prompt_tokens": self.prompt_tokens,
            "prompt_evaluated": self.prompt_evaluated,
            "prompt_eval_seconds": round(self.prompt_eval_seconds, 6),
            "grammar_window_misses": self.grammar_window_misses,
        }


@dataclass
class CacheTotals:
    calls: int = 0
    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    prompt_eval_seconds: float = 0.0
    seconds: float = 0.0

    def add(self, call: CallStats) -> None:
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.prompt_evaluated += call.prompt_evaluated
        self.prompt_eval_seconds += call.prompt_eval_seconds
        self.seconds += call.seconds


@functools.cache
def _llama_class() -> type[Any]:
    """``Llama`` that measures prompt evaluation and saves lean states (see module doc)."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama, LlamaState, _internals

    class MeasuredLlama(Llama):  # type: ignore[misc]
        # Outside a call (none has begun yet): nothing is measured or cancelled.
        gra_prompt_evaluated: int | None = 0
        gra_prompt_eval_seconds = 0.0
        gra_sampled = 0
        # Prompt tokens evaluated when a call was cancelled inside its prompt.
        gra_prompt_cut: int | None = None
        gra_cancelled = threading.Event()
        gra_sampler: WindowedGrammarSampler | None = None
        gra_vocabulary: VocabularyIndex | None = None

        def begin_call(self, cancelled: threading.Event) -> None:
            self.gra_prompt_evaluated = None
            self.gra_prompt_eval_seconds = 0.0
            self.gra_sampled = 0
            self.gra_prompt_cut = None
            self.gra_cancelled = cancelled
            self.gra_sampler = None

        def vocabulary_index(self) -> VocabularyIndex:
            if self.gra_vocabulary is None:
                self.gra_vocabulary = VocabularyIndex(self._model.vocab, self._n_vocab)
            return self.gra_vocabulary

        def _init_sampler(self, **options: Any) -> Any:
            # The windowed grammar keeps llama-cpp-python's chain and its draws;
            # it needs that chain to be: (no-op) penalties, then top-k or greedy.
            grammar = options.pop("grammar", None)
            temperature, top_k = options.get("temp", 0.8), options.get("top_k", 40)
            plain = (
                grammar is None
                or options.get("logits_processor") is not None
                or options.get("mirostat_mode", 0) != 0
                or options.get("repeat_penalty", 1.0) != 1.0
                or options.get("frequency_penalty", 0.0) != 0.0
                or options.get("presence_penalty", 0.0) != 0.0
                or temperature < 0.0
                or (temperature > 0.0 and top_k <= 0)
            )
            if plain:
                return super()._init_sampler(grammar=grammar, **options)
            grammar_only = _internals.LlamaSampler()
            grammar_only.add_grammar(self._model, grammar)
            self.gra_sampler = WindowedGrammarSampler(
                super()._init_sampler(**options),
                grammar_only,
                self.vocabulary_index(),
                self._n_vocab,
                keep=1 if temperature == 0.0 else top_k,
            )
            return self.gra_sampler

        def eval(self, tokens: Any) -> None:
            # The first eval of a call is the prompt's uncached suffix; later ones
            # are sampled tokens, one at a time.
            if self.gra_cancelled.is_set():
                raise BackendCancelled(f"cancelled after {self.gra_sampled} sampled tokens")
            if self.gra_prompt_evaluated is not None:
                super().eval(tokens)
                self.gra_sampled += 1
                return
            # The prompt, a batch at a time (as Llama.eval does it, so the state is
            # the same), so that a cancelled call stops between batches: a long
            # prompt nobody waits for any more does not hold the model.
            started = time.perf_counter()
            for start in range(0, len(tokens), self.n_batch):
                if start and self.gra_cancelled.is_set():
                    self.gra_prompt_cut = start
                    raise BackendCancelled(
                        f"cancelled after {start} of {len(tokens)} prompt tokens"
                    )
                super().eval(tokens[start : start + self.n_batch])
            self.gra_prompt_evaluated = len(tokens)
            self.gra_prompt_eval_seconds = time.perf_counter() - started

        def save_state(self) -> Any:
            if self._logits_all:
                return super().save_state()
            ctx = self._ctx.ctx
            size = llama_cpp.llama_state_get_size(ctx)
            buffer = (ctypes.c_uint8 * int(size))()
            n_bytes = int(llama_cpp.llama_state_get_data(ctx, buffer, size))
            if n_bytes > int(size):
                raise RuntimeError("failed to copy llama state data")
            return LlamaState(
                scores=np.empty((0, self._n_vocab), dtype=np.single),
                input_ids=self.input_ids.copy(),
                n_tokens=self.n_tokens,
                llama_state=ctypes.string_at(buffer, n_bytes),
                llama_state_size=n_bytes,
                seed=self._seed,
            )

        def load_state(self, state: Any) -> None:
            if self._logits_all or len(state.scores):
                super().load_state(state)
                return
            self.input_ids = state.input_ids.copy()
            self.n_tokens = state.n_tokens
            self._requires_eval = True
            self._seed = state.seed
            data = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
            ctx = self._ctx.ctx
            if llama_cpp.llama_state_set_data(ctx, data, state.llama_state_size) != (
                state.llama_state_size
            ):
                raise RuntimeError("failed to set llama state data")

    return MeasuredLlama


class LlamaCppBackend:
    def __init__(
        self,
        model: str,
        model_path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 256,
        prompt_cache_mib: int = DEFAULT_PROMPT_CACHE_MIB,
        raw_newlines: bool = True,
    ) -> None:
        """``prompt_cache_mib``: RAM for saved model states (0: only the last call's prefix);
        ``raw_newlines``: JSON strings may hold raw newlines and tabs (``gra.backends.gbnf``)."""
        self.model = model
        self.capacity = 1
        self.model_path = Path(model_path)
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self._n_batch = n_batch
        self.prompt_cache_mib = prompt_cache_mib
        self.raw_newlines = raw_newlines
        self._llama: Any = None
        self._lock = asyncio.Lock()
        self.last_call: CallStats | None = None
        # Tokens the last cancelled call had sampled when it stopped, and the
        # prompt tokens it had evaluated when it stopped inside its prompt.
        self.cancelled_after_tokens: int | None = None
        self.cancelled_in_prompt: int | None = None
        self.stats = CacheTotals()

    async def start(self) -> None:
        if not self.model_path.is_file():
            raise ModelUnusable(f"model file not found: {self.model_path}")
        self._llama = await asyncio.to_thread(self._load)
        log.info(
            "model_loaded",
            model=self.model,
            path=str(self.model_path),
            prompt_cache_mib=self.prompt_cache_mib,
        )

    def _load(self) -> Any:
        try:
            from llama_cpp import LlamaRAMCache
        except ImportError as exc:
            raise BackendUnavailable(
                "llama-cpp-python is not installed: pip install 'gra[llamacpp]'"
            ) from exc
        try:
            llama = _llama_class()(
                model_path=str(self.model_path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_batch=self._n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnusable(
                f"cannot load {self.model_path}: {exc} (not a usable GGUF file?)"
            ) from exc
        if self.prompt_cache_mib > 0:
            llama.set_cache(LlamaRAMCache(capacity_bytes=self.prompt_cache_mib << 20))
        # Part of loading (under a second), not of the first JSON call.
        llama.vocabulary_index()
        return llama

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        if self._llama is None:
            raise BackendUnavailable("backend not started")
        cancelled = threading.Event()
        options = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }
        response, call = await run_exclusive(
            self._lock,
            functools.partial(self._chat, messages, schema, options, cancelled),
            cancelled,
        )
        self.last_call = call
        self.stats.add(call)
        choice = response["choices"][0]
        completion_tokens = int((response.get("usage") or {}).get("completion_tokens", 0))
        log.debug("llama_call", **call.log_fields(), completion_tokens=completion_tokens)
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=call.prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=call.seconds,
            finish_reason=str(choice.get("finish_reason") or ""),
        )

    async def warm(self, messages: ChatMessages, schema: OutputShape) -> bool:
        """Evaluate ``messages`` once and keep the state in the prompt cache.

        The first real call of a role then evaluates only its own text after
        the shared prefix instead of the whole prompt. Done only with a prompt
        cache: without one, the next call of another role would discard it.
        """
        if self._llama is None or self.prompt_cache_mib <= 0:
            return False
        # One sampled token: llama-cpp-python saves a call's state to the cache
        # only after sampling.
        options = {"max_tokens": 1, "temperature": 0.0}
        cancelled = threading.Event()
        _response, call = await run_exclusive(
            self._lock,
            functools.partial(self._chat, messages, schema, options, cancelled),
            cancelled,
        )
        log.debug("prompt_warmed", **call.log_fields())
        return True

    def _chat(
        self,
        messages: ChatMessages,
        schema: OutputShape,
        options: dict[str, Any],
        cancelled: threading.Event,
    ) -> tuple[dict[str, Any], CallStats]:
        """One chat completion (in a worker thread; grammar-constrained unless
        ``schema`` is None), and where its prompt came from; stops at its next
        evaluation once ``cancelled`` is set."""
        from llama_cpp import LlamaGrammar

        llama = self._llama
        grammar = (
            None
            if schema is None
            else LlamaGrammar.from_string(
                json_grammar(schema, raw_newlines=self.raw_newlines), verbose=False
            )
        )
        llama.begin_call(cancelled)
        started_at, started = time.time(), time.perf_counter()
        try:
            response = llama.create_chat_completion(messages=messages, grammar=grammar, **options)
        except BackendCancelled:
            self.cancelled_after_tokens = llama.gra_sampled
            self.cancelled_in_prompt = llama.gra_prompt_cut
            raise
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        prompt_tokens = int((response.get("usage") or {}).get("prompt_tokens", 0))
        evaluated = llama.gra_prompt_evaluated
        windowed = llama.gra_sampler
        return response, CallStats(
            prompt_tokens=prompt_tokens,
            prompt_evaluated=prompt_tokens if evaluated is None else evaluated,
            prompt_eval_seconds=llama.gra_prompt_eval_seconds,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            grammar_window_misses=None if windowed is None else windowed.stats.window_misses,
        )

    async def aclose(self) -> None:
        async with self._lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
