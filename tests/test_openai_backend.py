"""The OpenAI-compatible backend's handling of a misbehaving server.

A transport-level test double (httpx.MockTransport) injects the faults; the
real server is exercised in test_vllm_e2e.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gra.backends import BackendError, BackendUnavailable, OpenAIBackend, Sampling


def backend_with(handler) -> OpenAIBackend:  # type: ignore[no-untyped-def]
    return OpenAIBackend(
        "m", "http://server", served_model="m", capacity=2, transport=httpx.MockTransport(handler)
    )


def ok(content: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        },
    )


async def test_sends_json_schema_and_reads_usage() -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return ok('{"a": 1}')

    backend = backend_with(handler)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    completion = await backend.complete([{"role": "user", "content": "hi"}], schema, Sampling())
    assert completion.text == '{"a": 1}' and completion.prompt_tokens == 7
    assert seen[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    await backend.aclose()


@pytest.mark.parametrize("vllm", [False, True])
async def test_no_schema_asks_for_free_text(vllm: bool) -> None:
    # Testers and solvers write fenced code: nothing may constrain them to JSON.
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return ok("```python\nprint(4)\n```")

    backend = OpenAIBackend(
        "m", "http://server", served_model="m", vllm=vllm, transport=httpx.MockTransport(handler)
    )
    completion = await backend.complete([{"role": "user", "content": "2+2?"}], None, Sampling())
    assert completion.text.startswith("```python")
    assert not {"response_format", "structured_outputs"} & set(seen[0])
    await backend.aclose()


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (httpx.Response(500, text="boom"), BackendError, "HTTP 500: boom"),
        (httpx.Response(200, text="not json"), BackendError, "malformed response"),
        (httpx.Response(200, json={"choices": []}), BackendError, "malformed response"),
    ],
)
async def test_server_faults_become_backend_errors(response, error, match) -> None:  # type: ignore[no-untyped-def]
    backend = backend_with(lambda _request: response)
    with pytest.raises(error, match=match):
        await backend.complete([], {}, Sampling())
    await backend.aclose()


async def test_unreachable_server_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    backend = backend_with(handler)
    with pytest.raises(BackendUnavailable):
        await backend.start()
    with pytest.raises(BackendUnavailable):
        await backend.complete([], {}, Sampling())
    await backend.aclose()


async def test_in_flight_requests_never_exceed_capacity() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return ok("{}")

    backend = backend_with(handler)
    await asyncio.gather(*(backend.complete([], {}, Sampling()) for _ in range(10)))
    assert peak == 2
    await backend.aclose()
