"""The sequential baseline of benchmarks/bench_vllm.py, without a server.

The baseline must make the calls gra would make for the same job, or the
benchmark's ratio means nothing; the scripted double stands in for vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_vllm import (
    SEEDS,
    Sample,
    Settings,
    agreement,
    gra_items,
    parse_metrics,
    queue_stats,
    run_sequential_job,
    write_config,
)
from gra.config import load_config
from gra.data.seeds import read_seeds
from tests.conftest import run_gra, scripted_config
from tests.doubles import ScriptedBackend

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


async def test_sequential_job_is_the_job_a_gra_run_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `gra run` (agent processes, sockets) and the sequential loop, both over a
    double that answers by prompt and sampling seed only (as one checkpoint served
    under several names does): every instance must get the same id, content, item
    and outcome on both sides, although gra draws its roles among free models."""
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
