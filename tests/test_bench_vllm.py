"""The baselines of benchmarks/bench_vllm.py, without a server.

Every baseline must do the job gra does (the same requests, so the same work),
or the benchmark's ratios mean nothing; the scripted double stands in for vLLM,
behind an httpx transport where the plain client is tested. Nothing here times
anything: the tests check what the benchmark computes, never a speed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.bench_vllm import (
    SEEDS,
    PlainClient,
    Sample,
    Settings,
    agreement,
    build_checks,
    gra_items,
    parse_metrics,
    phase_order,
    plain_http,
    queue_stats,
    ratios,
    replay,
    request_body,
    run_concurrent_job,
    run_sequential_job,
    write_config,
)
from gra.backends import OpenAIBackend
from gra.backends.base import Sampling
from gra.config import load_config
from gra.data.seeds import read_seeds
from tests.conftest import run_gra, scripted_config
from tests.doubles import ScriptedBackend


class FakeVllm:
    """An OpenAI-compatible chat endpoint answering as the scripted double does.

    Notes every body it answered, the requests in flight per served name (their
    peak), and the requests cancelled before their answer. ``delays``: seconds
    per served name before answering.
    """

    def __init__(self, delays: dict[str, float] | None = None) -> None:
        self.delays = delays or {}
        self.backends: dict[str, ScriptedBackend] = {}
        self.answered: list[dict[str, Any]] = []
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        self.cancelled = 0
        self.transport = httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        model = body["model"]
        backend = self.backends.setdefault(model, ScriptedBackend(model))
        self.in_flight[model] += 1
        self.peak[model] = max(self.peak[model], self.in_flight[model])
        self.peak_total = max(self.peak_total, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(self.delays.get(model, 0.002))
            sampling = Sampling(
                body["max_tokens"], body["temperature"], body["top_p"], body.get("seed")
            )
            schema = body["structured_outputs"]["json"]
            completion = await backend.complete(body["messages"], schema, sampling)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight[model] -= 1
        self.answered.append(body)
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": completion.text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                },
            },
        )


async def _concurrent_over(
    fake: FakeVllm, config: Any, settings: Settings, record: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    seeds = read_seeds(SEEDS, config.seeds).items
    async with plain_http("http://fake", settings.request_slots, fake.transport) as http:
        clients = {n: PlainClient(http, n, settings.capacity, record) for n in settings.names()}
        return await run_concurrent_job(
            config, seeds, clients, settings.instances, settings.max_in_flight
        )


METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
vllm:num_requests_running{engine="0",model_name="a"} 3.0
vllm:num_requests_waiting{engine="0",model_name="a"} 1.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="a",reason="capacity"} 7.0
vllm:generation_tokens_total{engine="0",model_name="a"} 120.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="a"} 4.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="a"} 1.0
"""


def test_parse_metrics_sums_series_over_labels_only() -> None:
    m = parse_metrics(METRICS)
    assert m["vllm:num_requests_running"] == 3.0
    assert m["vllm:num_requests_waiting"] == 1.0  # not the by-reason series
    assert m["vllm:generation_tokens_total"] == 120.0
    assert m["vllm:request_success_total"] == 5.0
    assert m["vllm:prompt_tokens_total"] == 0.0


def test_queue_stats_only_inside_the_window() -> None:
    samples = [Sample(0.0, 9, 9), Sample(1.0, 2, 0), Sample(2.0, 4, 1), Sample(9.0, 9, 9)]
    stats = queue_stats(samples, 0.5, 2.5)
    assert stats["running_mean"] == 3.0 and stats["running_max"] == 4
    assert queue_stats(samples, 3.0, 4.0)["running_mean"] is None


@pytest.mark.parametrize("enrich", [True, False])
async def test_sequential_job_makes_the_calls_gra_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enrich: bool
) -> None:
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0")
    settings = Settings(instances=4, models=3, enrich=enrich)
    config = load_config(write_config(settings, "http://127.0.0.1:9", tmp_path))
    backends = {name: ScriptedBackend(name) for name in settings.names()}
    seeds = read_seeds(SEEDS, config.seeds).items  # type: ignore[arg-type]
    result = await run_sequential_job(config, seeds, backends, settings.instances)
    # Every review scores 9: accepted; generate + the 2 others' reviews (+ annotate).
    assert result["stages"] == {"accepted": 4}
    per_instance = 1 + 2 + (1 if enrich else 0)
    assert result["calls"] == 4 * per_instance
    assert sum(b.calls for b in backends.values()) == result["calls"]
    assert result["ignored_calls"] == 0
    assert len(result["instance_seconds"]) == 4


async def test_sequential_job_retries_invalid_outputs_as_gra_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0")
    settings = Settings(instances=2, models=3)
    names = settings.names()
    monkeypatch.setenv("GRA_DOUBLE_GARBAGE", json.dumps(dict.fromkeys(names, "broken")))
    config = load_config(write_config(settings, "http://127.0.0.1:9", tmp_path))
    backends = {name: ScriptedBackend(name) for name in names}
    seeds = read_seeds(SEEDS, config.seeds).items  # type: ignore[arg-type]
    result = await run_sequential_job(config, seeds, backends, settings.instances)
    # Each generation: (1 + output_retries) calls x (1 + task_retries) attempts, then failed.
    assert result["stages"] == {"failed": 2}
    assert result["calls"] == 2 * 3 * 3
    assert result["failed_attempts"] == 2 * 3
    assert result["invalid_outputs_by_role"] == {"generator": 18}
    assert result["invalid_output_samples"][0]["role"] == "generator"


async def test_both_baselines_do_the_job_a_gra_run_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `gra run` (agent processes, sockets), the sequential loop and the
    concurrent client, all over a double that answers by prompt and sampling seed
    only (as one checkpoint served under several names does): every instance must
    get the same id, content, item and outcome on every side, although gra draws
    its roles among free models, and the same items must be decided."""
    monkeypatch.setenv("GRA_DOUBLE_SEEDED", "1")
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0.005")
    names = ["qwen-0.5b-a", "qwen-0.5b-b", "qwen-0.5b-c"]
    config_path = scripted_config(
        tmp_path, names, target=10, max_instances=10, max_in_flight=6, capacity=2, seed=7
    )
    run_gra("run", str(config_path), "--out", str(tmp_path / "out"), "--no-progress")
    config = load_config(config_path)
    backends = {name: ScriptedBackend(name) for name in names}
    seeds = read_seeds(SEEDS, config.seeds).items  # type: ignore[arg-type]
    result = await run_sequential_job(config, seeds, backends, 10)
    gra = gra_items(tmp_path / "out")
    assert sorted(gra) == sorted(result["items"])
    same = agreement(gra, result["items"])
    assert same == {"instances_in_both": 10, "same_item": 10, "same_outcome": 10}, (
        gra,
        result["items"],
    )
    assert len(result["stages"]) > 1  # seeded scores: not every instance decided alike

    settings = Settings(instances=10, models=3, capacity=2, max_in_flight=6)
    fake = FakeVllm()
    concurrent = await _concurrent_over(fake, config, settings)
    assert agreement(gra, concurrent["items"]) == same
    assert concurrent["decisions"] == result["decisions"]
    assert sum(concurrent["decisions"].values()) == 10
    # Every request the server answered was counted by the client, none twice.
    assert len(fake.answered) == concurrent["calls"]


@pytest.mark.parametrize(
    "schema", [{"type": "object", "properties": {"a": {"type": "string"}}}, None]
)
async def test_plain_client_sends_what_gras_vllm_backend_sends(
    schema: dict[str, Any] | None,
) -> None:
    """Same prompt, schema (or free text) and sampling: the same request body, so the
    same work."""
    bodies: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7},
            },
        )

    transport = httpx.MockTransport(handle)
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    sampling = Sampling(max_tokens=64, temperature=0.3, top_p=0.9, seed=123)
    gra = OpenAIBackend("m", "http://fake", served_model="m", vllm=True, transport=transport)
    await gra.complete(messages, schema, sampling)
    await gra.aclose()
    async with plain_http("http://fake", 4, transport) as http:
        record: list[dict[str, Any]] = []
        completion = await PlainClient(http, "m", 4, record).complete(messages, schema, sampling)
    assert bodies[0] == bodies[1] == request_body("m", messages, schema, sampling) == record[0]
    assert completion.completion_tokens == 7


async def test_concurrent_job_keeps_gras_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_in_flight instances at once, capacity requests per served name: the limits
    gra's fleet runs under, used to the full (the committee's reviews in parallel)."""
    monkeypatch.setenv("GRA_DOUBLE_SEEDED", "1")
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0")
    settings = Settings(instances=12, models=3, capacity=2, max_in_flight=4)
    config = load_config(write_config(settings, "http://fake", tmp_path))
    fake = FakeVllm(dict.fromkeys(settings.names(), 0.02))
    result = await _concurrent_over(fake, config, settings)
    assert sum(result["decisions"].values()) == 12
    assert max(fake.peak.values()) == settings.capacity
    assert fake.peak_total <= settings.request_slots
    assert fake.peak_total > settings.capacity  # more than one served name busy at once


async def test_concurrent_client_cancels_moot_reviews_as_gra_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every review scores 2: the first review in puts tau out of reach, so the
    other, slower one is cancelled unfinished (gra cancels it too) rather than
    completed and thrown away."""
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0")
    # Capacity for every request at once: a cancelled review is at the server, not queued.
    settings = Settings(instances=4, models=3, capacity=4, max_in_flight=4, enrich=False)
    names = settings.names()
    monkeypatch.setenv("GRA_DOUBLE_SCORES", json.dumps(dict.fromkeys(names, 2)))
    config = load_config(write_config(settings, "http://fake", tmp_path))
    # Distinct speeds: in every committee of two, one review finishes well first.
    fake = FakeVllm(dict(zip(names, (0.005, 0.05, 0.5), strict=True)))
    result = await _concurrent_over(fake, config, settings)
    assert result["decisions"] == {"rejected": 4}
    assert result["stages"] == {"score": 4}
    # Per instance: the generation and the one review that decided; the other cancelled.
    assert len(fake.answered) == result["calls"] == 4 * 2
    assert result["cancelled_calls"] == fake.cancelled == 4


async def test_ceiling_replays_the_recorded_requests_at_its_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRA_DOUBLE_SEEDED", "1")
    monkeypatch.setenv("GRA_DOUBLE_DELAY_S", "0")
    settings = Settings(instances=6, models=3, capacity=2, max_in_flight=6)
    config = load_config(write_config(settings, "http://fake", tmp_path))
    record: list[dict[str, Any]] = []
    job = await _concurrent_over(FakeVllm(), config, settings, record)
    assert len(record) == job["calls"]
    fake = FakeVllm(dict.fromkeys(settings.names(), 0.01))
    result = await replay("http://fake", record, 5, fake.transport)
    # The same requests, seeds included.
    assert sorted(map(json.dumps, fake.answered)) == sorted(map(json.dumps, record))
    assert result["requests_sent"] == len(record)
    assert result["completion_tokens_client"] == job["completion_tokens_client"]
    assert fake.peak_total == 5


def test_sides_alternate_abba_over_repeats() -> None:
    order = phase_order(("gra", "concurrent", "ceiling"), 4)
    assert order == [
        (1, "gra"), (1, "concurrent"), (1, "ceiling"),
        (2, "ceiling"), (2, "concurrent"), (2, "gra"),
        (3, "gra"), (3, "concurrent"), (3, "ceiling"),
        (4, "ceiling"), (4, "concurrent"), (4, "gra"),
    ]  # fmt: skip
    # Over each pair of repeats every side holds every position once from each end.
    for side in ("gra", "concurrent", "ceiling"):
        positions = [i % 3 for i, (_, s) in enumerate(order) if s == side]
        assert sum(positions[:2]) == sum(positions[2:]) == 2
    # The ceiling replays the concurrent side's requests: never before the first of them.
    led = phase_order(("gra", "concurrent", "ceiling"), 2, first="concurrent")
    assert [s for _, s in led] == [
        "concurrent", "gra", "ceiling", "ceiling", "gra", "concurrent"
    ]  # fmt: skip
    assert phase_order(("gra", "sequential"), 2) == [
        (1, "gra"), (1, "sequential"), (2, "sequential"), (2, "gra")
    ]  # fmt: skip
    with pytest.raises(ValueError):
        phase_order(("gra", "ceiling"), 3)
    with pytest.raises(ValueError):
        phase_order(("gra", "gra"), 3)


def _phase(repeat: int, side: str, seconds: float, tokens: int, requests: int, decided: int = 0):  # type: ignore[no-untyped-def]
    phase: dict[str, Any] = {
        "phase": side,
        "repeat": repeat,
        "seconds": seconds,
        "server": {"completion_tokens": tokens, "requests": requests, "prompt_tokens": 0},
        "queue": {"running_mean": 4.0},
    }
    if side != "ceiling":
        phase["items"] = {
            f"r1-{i:06d}": {"item": f"x{i}", "decision": "accepted", "stage": "accepted"}
            for i in range(decided)
        }
    return phase


def test_ratios_are_taken_within_each_repeat_and_reported_as_median_and_range() -> None:
    phases = [
        _phase(1, "gra", 100.0, 1000, 30, 8),
        _phase(1, "concurrent", 110.0, 1000, 30, 8),
        _phase(1, "ceiling", 80.0, 1000, 30),
        _phase(2, "ceiling", 50.0, 1000, 30),  # a quiet moment: the ratio is per repeat
        _phase(2, "concurrent", 60.0, 1000, 30, 8),
        _phase(2, "gra", 50.0, 1000, 30, 8),
        _phase(3, "gra", 100.0, 1000, 30, 8),
        _phase(3, "concurrent", 100.0, 1000, 30, 8),
        _phase(3, "ceiling", 90.0, 1000, 30),
    ]
    tps = ratios(phases, "gra", "concurrent", "completion_tokens_per_s")
    assert tps["values"] == pytest.approx([1.1, 1.2, 1.0])
    assert tps["median"] == pytest.approx(1.1)
    assert (tps["min"], tps["max"]) == pytest.approx((1.0, 1.2))
    ceiling = ratios(phases, "gra", "ceiling", "completion_tokens_per_s")
    assert ceiling["values"] == pytest.approx([0.8, 1.0, 0.9])
    checks = {c.metric.split(" (")[0]: c for c in build_checks(phases)}
    headline = checks["gra / concurrent client: completion tokens/s"]
    assert headline.ratio == pytest.approx(1.1) and headline.passed
    assert "median of 3; ratio range 1.000-1.200" in headline.metric
    assert checks["gra / server ceiling: completion tokens/s"].ratio == pytest.approx(0.9)
    work = checks["same job: server requests / completion tokens, per repeat"]
    assert work.value == work.baseline == "30/1000, 30/1000, 30/1000"
    decided = checks["same job: items decided / instances, per repeat"]
    assert decided.value == decided.baseline == "8/8, 8/8, 8/8"
    # The first row is the like-for-like headline.
    assert build_checks(phases)[0].metric.startswith("gra / concurrent client: completion tokens/s")


def test_a_run_report_is_assembled_printed_and_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole report path after the phases, on phases shaped as the real ones."""
    from benchmarks.bench_vllm import assemble_report, print_report
    from benchmarks.harness import machine_info, write_result

    settings = Settings(instances=8, repeats=3)
    phases = []
    for repeat, side in phase_order(settings.sides, settings.repeats):
        phase = _phase(repeat, side, 100.0 + repeat, 1000, 30, 8)
        phase |= {"load_average_before": [1.0, 1, 1], "load_average_after": [2.0, 2, 2]}
        if side == "gra":
            phase |= {"fleet_start_seconds": 3.0, "late_results_ignored": 0}
        if side == "concurrent":
            phase |= {"cancelled_calls": 2, "ignored_calls": 0}
        phases.append(phase)
    info = machine_info()
    report = assemble_report(settings, info, phases, 60.0, tmp_path, 0.0)
    assert report["order"][:4] == ["1:gra", "1:concurrent", "1:ceiling", "2:ceiling"]
    assert report["ratios"]["gra/concurrent:completion_tokens_per_s"]["median"] == 1.0
    assert report["load_average_range"] == [1.0, 2.0]
    print_report(report)
    assert "gra / concurrent client: completion tokens/s" in capsys.readouterr().out
    written = json.loads(write_result(tmp_path / "results", "vllm", report).read_text())
    assert written["source"]["commit"] and written["settings"]["repeats"] == 3
