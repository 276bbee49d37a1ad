"""Test doubles: a scripted backend for fault injection and fleet tests.

``ScriptedBackend`` is a *stand-in* for a model, loaded by agents through the
plugin backend (``factory = "tests.doubles:scripted"``). It answers every role
with well-formed JSON after a configurable delay, so tests can exercise real
processes and real sockets without waiting on a real model. Behaviour comes
from environment variables so that each agent process can be told apart:

- ``GRA_DOUBLE_DELAY_S``: seconds per call (default 0.05)
- ``GRA_DOUBLE_SCORES``: JSON {model: score} for reviews/adjudications (default 9)
- ``GRA_DOUBLE_GARBAGE``: JSON {model: "broken"|"range"|"empty"|"endless"} output faults
- ``GRA_DOUBLE_WRONG``: JSON list of models whose generated code is wrong
  (subtracts where the instruction asks to add), for verification tests
- ``GRA_DOUBLE_SEEDED=1``: answers depend only on the prompt and the sampling
  seed, never on the model or the call count, as a seeded sampler over one
  shared checkpoint would; scores then range over 4-10 by seed
- ``GRA_DOUBLE_RESTART_S``: JSON {model: seconds}: an agent of that model
  started again (after a crash) loads for that long before it joins, as a
  real model's agent does; ``GRA_DOUBLE_DIR`` is where each agent's start
  leaves a mark
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from gra.backends.base import ChatMessages, Completion, OutputShape, Sampling
from gra.config import AgentSettings

SIX = ("correctness", "clarity", "completeness", "relevance", "coherence", "ethics")


class ScriptedBackend:
    def __init__(self, model: str, capacity: int = 1, agent_id: str = "") -> None:
        self.model = model
        self.capacity = capacity
        self.agent_id = agent_id or model
        self.delay_s = float(os.environ.get("GRA_DOUBLE_DELAY_S", "0.05"))
        self.score = int(json.loads(os.environ.get("GRA_DOUBLE_SCORES", "{}")).get(model, 9))
        self.garbage = json.loads(os.environ.get("GRA_DOUBLE_GARBAGE", "{}")).get(model)
        self.seeded = os.environ.get("GRA_DOUBLE_SEEDED") == "1"
        self.wrong = model in json.loads(os.environ.get("GRA_DOUBLE_WRONG", "[]"))
        self.calls = 0

    async def start(self) -> None:
        restart_s = json.loads(os.environ.get("GRA_DOUBLE_RESTART_S", "{}")).get(self.model)
        if restart_s is None:
            return
        mark = Path(os.environ["GRA_DOUBLE_DIR"]) / f"{self.agent_id}.started"
        if mark.exists():
            await asyncio.sleep(float(restart_s))
        mark.touch()

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        self.calls += 1
        # Block a worker thread, as llama.cpp inference does.
        await asyncio.to_thread(time.sleep, self.delay_s)
        if schema is None:  # a role that writes code as plain text
            return Completion(self._written_code(messages), 10, 10, self.delay_s, "stop")
        properties = schema.get("properties", {})
        if self.seeded:
            text = json.dumps(self._seeded_answer(properties, messages, sampling.seed))
            return Completion(text, 10, 10, self.delay_s, "stop")
        text = json.dumps(self._answer(properties, messages))
        if self.garbage == "broken":
            text = text[: len(text) // 2]
        elif self.garbage == "range":
            text = text.replace(f": {self.score}", ": 99")
        elif self.garbage == "empty":
            text = ""
        elif self.garbage == "endless":
            # What a model that never closes its JSON looks like at max_tokens.
            text = '{"instruction": "' + "and again " * sampling.max_tokens
            return Completion(text, 10, sampling.max_tokens, self.delay_s, "length")
        return Completion(text, 10, 10, self.delay_s, "stop")

    def _answer(self, properties: dict[str, Any], messages: ChatMessages) -> dict[str, Any]:
        scores = dict.fromkeys(SIX, self.score)
        if "instruction" in properties:
            n = self.calls
            return {
                "keywords": ["addition", "functions", f"{self.model}-{n}"],
                "instruction": f"Write function {n} from {self.model} that adds two numbers.",
                "response": f"def add_{n}(a, b):\n    return a {'-' if self.wrong else '+'} b",
            }
        if "summary" in properties:
            return {
                "domain": "coding",
                "keywords": ["arithmetic", "functions", self.model],
                "summary": f"Annotated by {self.model}.",
            }
        if "response" in properties:
            return {"response": f"A better answer, rewritten by {self.model} (call {self.calls})."}
        if "checks" in properties:
            checks = {"rationality": True, "completeness": True, "clarity": True}
            review = {"checks": checks, "scores": scores, "strengths": "ok", "weaknesses": "none"}
            if "same_answer" in properties:  # a drafted review: its own answer came first
                review |= {"response_answer": "the response's", "same_answer": True}
            return review
        return {"scores": scores, "feedback": f"adjudicated by {self.model}"}

    @staticmethod
    def _written_code(messages: ChatMessages) -> str:
        """A tester's or a solver's reply, in fenced blocks as the roles ask."""
        fence = "`" * 3
        if "Answer it yourself" in messages[0]["content"]:  # a reviewer's draft
            return "2 + 2 = 4.\nAnswer: 4"
        if "unit tests" in messages[0]["content"]:
            # The function's name is a guess, as a real tester's would be.
            code = (
                "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nassert add(-4, 4) == 0"
            )
        else:
            code = "print(2 + 2)"
        return f"{fence}python\n{code}\n{fence}"

    def _seeded_answer(
        self, properties: dict[str, Any], messages: ChatMessages, seed: int | None
    ) -> dict[str, Any]:
        digest = hashlib.blake2b(f"{json.dumps(messages)}|{seed}".encode(), digest_size=4)
        tag = digest.hexdigest()
        score = 4 + int(tag, 16) % 7
        scores = dict.fromkeys(SIX, score)
        if "instruction" in properties:
            return {
                "keywords": ["addition", "functions", tag],
                "instruction": f"Write function {tag} that adds two numbers.",
                "response": f"def add_{tag}(a, b):\n    return a + b",
            }
        if "summary" in properties:
            return {"domain": "coding", "keywords": ["arithmetic", tag], "summary": f"About {tag}."}
        if "response" in properties:
            return {"response": f"A better answer, {tag}."}
        if "checks" in properties:
            checks = {"rationality": True, "completeness": True, "clarity": True}
            return {"checks": checks, "scores": scores, "strengths": tag, "weaknesses": "none"}
        return {"scores": scores, "feedback": f"adjudicated: {tag}"}

    async def warm(self, messages: ChatMessages, schema: OutputShape) -> bool:
        return False

    async def aclose(self) -> None:
        pass


def scripted(settings: AgentSettings) -> ScriptedBackend:
    return ScriptedBackend(settings.entry.model_id, settings.entry.capacity or 1, settings.agent_id)


def recording(settings: AgentSettings) -> ScriptedBackend:
    """``scripted``, after writing to $GRA_DOUBLE_SETTINGS_OUT the settings it was built
    with and which GRA_AGENT_* variables the agent's environment still holds."""
    record = {
        "settings": json.loads(msgspec.json.encode(settings)),
        "environment": sorted(name for name in os.environ if name.startswith("GRA_AGENT_")),
    }
    Path(os.environ["GRA_DOUBLE_SETTINGS_OUT"]).write_text(json.dumps(record))
    return scripted(settings)
