"""Through the vllm backend against a REAL vLLM server (CPU build).

The server is built by `make vllm-server` (scripts/setup_vllm.sh) and started
once for this module; it takes one to two minutes to come up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from gra.agents.roles import get_role
from gra.backends import OpenAIBackend
from gra.protocols.records import ItemRecord
from gra.protocols.roles import ReviewRequest
from tests.conftest import SEEDS, run_gra
from tests.vllm_server import running_vllm_server

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

SERVED = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_vllm_server(SERVED, log_dir=tmp_path_factory.mktemp("vllm")) as url:
        yield url


async def test_backend_structured_output_and_concurrency(vllm_url: str) -> None:
    backend = OpenAIBackend("qwen-vllm", vllm_url, served_model=SERVED, capacity=4, vllm=True)
    await backend.start()
    role = get_role("reviewer")
    request = ReviewRequest("math", "What is 2 + 2?", "2 + 2 = 4.")
    try:
        completions = await asyncio.gather(
            *(backend.complete(role.prompt(request), role.schema, role.sampling) for _ in range(4))
        )
    finally:
        await backend.aclose()
    for completion in completions:
        assert completion.finish_reason == "stop", completion.text
        review = role.parse(request, completion.text)
        assert 0 <= review.scores.mean() <= 10
        assert completion.prompt_tokens > 50 and completion.completion_tokens > 10


async def test_a_solver_writes_its_program_as_free_text(vllm_url: str) -> None:
    """No schema reaches the server for a code-writing role: the replies are free
    text in fenced blocks, and within the tries an agent makes (1 + output_retries)
    the role reads a program from one."""
    from gra.errors import InvalidOutput
    from gra.protocols.roles import SolverRequest
    from gra.verify.roles import SOLVER

    backend = OpenAIBackend("qwen-vllm", vllm_url, served_model=SERVED, capacity=3, vllm=True)
    await backend.start()
    request = SolverRequest(
        "math", "A town's population went up from 240 to 264. What was the percentage increase?"
    )
    messages = SOLVER.prompt(request)
    try:
        completions = await asyncio.gather(
            *(
                backend.complete(messages, None, dataclasses.replace(SOLVER.sampling, seed=seed))
                for seed in (3, 4, 5)
            )
        )
    finally:
        await backend.aclose()
    programs = []
    for completion in completions:
        assert "```" in completion.text, completion.text
        try:
            programs.append(SOLVER.parse(request, completion.text).program)
        except InvalidOutput:
            continue  # a reply that is no program: the agent would try again
    assert programs, [c.text for c in completions]
    assert all("print" in program and "```" not in program for program in programs)


async def test_backend_rejects_unknown_model(vllm_url: str) -> None:
    backend = OpenAIBackend("x", vllm_url, served_model="no-such-model")
    with pytest.raises(Exception, match="does not serve 'no-such-model'"):
        await backend.start()
    await backend.aclose()


def test_run_with_a_vllm_agent_in_a_mixed_fleet(vllm_url: str, tmp_path: Path) -> None:
    config = tmp_path / "mixed.toml"
    config.write_text(
        f"""
[run]
target = 1
max_instances = 3
max_in_flight = 3
few_shot = 2
[seeds]
path = "{SEEDS}"
[[agents]]
model = "qwen-vllm"
backend = "vllm"
url = "{vllm_url}"
served_model = "{SERVED}"
capacity = 4
[[agents]]
model = "gemma-3-270m"
roles = ["reviewer", "adjudicator"]
"""
    )
    out = tmp_path / "out"
    run_gra("run", str(config), "--out", str(out), "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    records = [
        msgspec.json.decode(line, type=ItemRecord)
        for name in ("accepted.jsonl", "rejected.jsonl")
        for line in (out / name).read_text().splitlines()
    ]
    assert records and len(records) == summary["instances_finished"]
    generated = [r for r in records if r.decision != "failed"]
    assert generated, [r.reason for r in records]
    for record in generated:
        assert record.generator.model == "qwen-vllm"
        assert [r.model for r in record.reviews] == ["gemma-3-270m"]
    usage = summary["models"]["qwen-vllm"]["roles"]["generator"]
    assert usage["calls"] >= 1 and usage["completion_tokens"] > 0


async def test_server_alone_measurement_counts_every_call_at_the_server(vllm_url: str) -> None:
    """benchmarks/bench_vllm.py's ceiling phase: its calls are what the server counts."""
    from benchmarks.bench_vllm import MetricsPoller, counter_delta, replay, request_body

    role = get_role("reviewer")
    sampling = dataclasses.replace(role.sampling, max_tokens=64)
    bodies = [
        request_body(
            SERVED,
            role.prompt(ReviewRequest("math", f"What is {n} + {n}?", f"It is {2 * n}.")),
            role.schema,
            dataclasses.replace(sampling, seed=n),
        )
        for n in (1, 2, 3)
    ]
    poller = MetricsPoller(vllm_url)
    before = poller.scrape()
    result = await replay(vllm_url, bodies, concurrency=3)
    counted = counter_delta(before, poller.scrape())
    assert result["seconds"] > 0 and result["requests_sent"] == 3
    assert counted["requests"] == 3 and counted["completion_tokens"] > 30
    assert counted["completion_tokens"] == result["completion_tokens_client"]


async def test_backend_sampling_seed_decides_the_output(vllm_url: str) -> None:
    """What reproducible runs rest on: the same seed gives the same review, alone or
    beside other requests in the batch; another seed samples differently."""
    backend = OpenAIBackend("qwen-vllm", vllm_url, served_model=SERVED, capacity=4, vllm=True)
    await backend.start()
    role = get_role("reviewer")
    request = ReviewRequest("math", "What is 2 + 2?", "It is 4, since 2 + 2 = 4.")
    hot = dataclasses.replace(role.sampling, temperature=1.0, max_tokens=96)

    async def text(seed: int) -> str:
        sampling = dataclasses.replace(hot, seed=seed)
        return (await backend.complete(role.prompt(request), role.schema, sampling)).text

    try:
        alone = await text(11)
        batched = await asyncio.gather(text(11), text(12), text(13), text(14))
    finally:
        await backend.aclose()
    assert batched[0] == alone
    assert len(set(batched)) > 1, batched
