"""Model output under garbage: broken JSON, out-of-range scores, empty and
endless output are retried (bounded), reported with their reason, and never
crash an agent. The garbage comes from the scripted test double."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import scripted_config
from tests.test_fleet import check_outputs, make_conductor

pytestmark = pytest.mark.guarantee  # README, Reliability

REASONS = {
    "broken": "JSON",
    "range": "Expected `int` <= 10",
    "empty": "not JSON",
    "endless": "output truncated at max_tokens",
}


@pytest.mark.parametrize("mode", sorted(REASONS))
async def test_garbage_output_is_retried_bounded_and_reported(
    tmp_path: Path, double_env: pytest.MonkeyPatch, mode: str
) -> None:
    double_env.setenv("GRA_DOUBLE_GARBAGE", json.dumps({"bad": mode}))
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.01")
    # A seat whose only model is benched waits model_grace_s before it fails; 2 s, not 60.
    config = scripted_config(
        tmp_path, ["bad", "good1", "good2"], target=50, max_instances=8, extra="model_grace_s = 2"
    )
    conductor = make_conductor(config, tmp_path / "out")
    summary = await asyncio.wait_for(conductor.run(), 120)

    accepted, rejected = check_outputs(tmp_path / "out", summary)
    failed = [r for r in rejected if r["decision"] == "failed"]
    assert failed, "no instance involved the bad model"
    # After five failed tasks in a row the breaker takes `bad` out of rotation
    # (README, Reliability); an instance whose committee then has no one left for
    # `bad`'s seat fails with that reason instead.
    assert summary.model_health["bad"].trips >= 1
    seatless = [r for r in failed if r["reason"] == "no live model left for the reviewer role"]
    failed = [r for r in failed if r not in seatless]
    assert failed, "no instance failed on the bad model's output"
    for record in failed:
        # 1 try + 2 output retries in the agent, 1 try + 2 task retries in the supervisor.
        assert "invalid output after 3 tries" in record["reason"]
        assert REASONS[mode] in record["reason"], record["reason"]
        assert "failed 3 times" in record["reason"]
    for record in accepted:
        assert "bad" not in [r["model"] for r in record["reviews"]]
        if mode != "range":  # out-of-range scores only break reviews
            assert record["generator"]["model"] != "bad"
    bad = summary.agents["bad-0"]
    assert bad.alive and bad.failed >= 3 and bad.restarts == 0
    # Every failed task cost exactly three model calls, and no more.
    failed_calls = summary.models["bad"].calls - bad.completed
    assert failed_calls == 3 * bad.failed
