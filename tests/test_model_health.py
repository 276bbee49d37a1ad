"""A model that keeps failing leaves the rotation: the circuit breaker, alone and live."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gra.supervisor.conductor import RunError
from gra.supervisor.health import ModelHealth
from tests.conftest import scripted_config
from tests.test_fleet import check_outputs, make_conductor


def test_breaker_opens_backs_off_and_closes() -> None:
    health = ModelHealth(failures=3, backoff_s=10.0, max_backoff_s=25.0)
    assert not health.failure("m", "bad json", 0.0)
    health.success("m")  # a success in between: the count starts again
    assert [health.failure("m", "bad json", 1.0) for _ in range(3)] == [False, False, True]
    assert not health.in_rotation("m", 5.0) and health.out_of_rotation(5.0) == {"m"}
    assert not health.failure("m", "late", 6.0)  # already out: no second trip
    assert health.in_rotation("m", 11.0)
    # Half-open: the first failure after the backoff opens it again, for twice as long.
    assert health.failure("m", "still bad", 11.0)
    assert not health.in_rotation("m", 30.0) and health.in_rotation("m", 31.0)
    assert health.failure("m", "still bad", 31.0)
    assert health.in_rotation("m", 56.0)  # capped at max_backoff_s
    assert "failed" in health.describe("m") and "still bad" in health.describe("m")
    health.success("m")
    assert health.in_rotation("m", 56.0) and health.report(56.0)["m"].trips == 0
    assert health.in_rotation("other", 0.0)


async def test_a_sick_model_leaves_the_rotation_and_the_run_goes_on(
    tmp_path: Path, double_env
) -> None:
    """Model c answers nothing valid: its seats go to the other models, the run reaches
    its target, and at most a few instances fail (before: most of them did)."""
    double_env.setenv("GRA_DOUBLE_GARBAGE", json.dumps({"c": "broken"}))
    config = scripted_config(
        tmp_path,
        ["a", "b", "c", "d"],
        target=16,
        max_instances=40,
        extra="breaker_failures = 3\nbreaker_backoff_s = 600",
    )
    conductor = make_conductor(config, tmp_path / "out")
    summary = await asyncio.wait_for(conductor.run(), 180)
    accepted, _ = check_outputs(tmp_path / "out", summary)
    assert len(accepted) >= 16
    assert summary.counts["failed"] <= 3, summary.counts
    assert summary.model_health["c"].trips >= 1
    assert summary.model_health["c"].out_of_rotation_s > 0
    assert "c" not in {r["generator"]["model"] for r in accepted}


async def test_no_model_left_for_a_role_stops_with_a_clear_error(
    tmp_path: Path, double_env
) -> None:
    double_env.setenv("GRA_DOUBLE_GARBAGE", json.dumps({"b": "broken"}))
    config = scripted_config(
        tmp_path, ["a", "b"], target=10, max_instances=40, extra="breaker_failures = 3"
    )
    conductor = make_conductor(config, tmp_path / "out")
    with pytest.raises(RunError, match=r"model 'b' failed 3 tasks in a row.*out of rotation"):
        await asyncio.wait_for(conductor.run(), 180)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["instances_started"] < 20
