"""Adjudication through the live supervisor: real agent processes, real sockets.

The fleets give the committee two reviewers that always disagree (scores 10
and 6: mean 8 >= tau, std 2 > delta), so every item goes to an adjudicator,
a model that neither generated nor reviewed it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import scripted_config
from tests.test_fleet import check_outputs, make_conductor, read_jsonl

DISAGREEING = {"high": 10, "low": 6}


def _adjudicated_fleet(tmp_path: Path, judges: dict[str, list[str]], **kw: object) -> Path:
    roles = {"writer": ["generator"], "high": ["reviewer"], "low": ["reviewer"], **judges}
    return scripted_config(tmp_path, list(roles), roles=roles, **kw)  # type: ignore[arg-type]


async def test_disagreeing_reviewers_send_the_item_to_an_uninvolved_adjudicator(
    tmp_path: Path, double_env: pytest.MonkeyPatch
) -> None:
    double_env.setenv("GRA_DOUBLE_SCORES", json.dumps({**DISAGREEING, "keeps": 9, "drops": 5}))
    config = _adjudicated_fleet(
        tmp_path,
        {"keeps": ["adjudicator", "annotator"], "drops": ["adjudicator", "annotator"]},
        target=3,
        max_instances=8,
    )
    out = tmp_path / "out"
    summary = await asyncio.wait_for(make_conductor(config, out).run(), 180)
    accepted, rejected = check_outputs(out, summary)
    records = accepted + rejected
    assert accepted and rejected, "both adjudicators should have judged"
    for record in records:
        assert [r["score"] for r in sorted(record["reviews"], key=lambda r: r["model"])] == [
            10.0,
            6.0,
        ]
        assert record["mean"] == 8.0 and record["std"] == 2.0
        adjudication = record["adjudication"]
        assert adjudication is not None, record["reason"]
        judge = adjudication["model"]
        assert judge not in {record["generator"]["model"], "high", "low"}
        assert adjudication["feedback"] == f"adjudicated by {judge}"
        if judge == "keeps":
            assert (record["decision"], record["stage"]) == ("accepted", "accepted")
            assert record["reason"] == "adjudicator score 9.00 >= tau"
        else:
            assert (record["decision"], record["stage"]) == ("rejected", "adjudication")
            assert record["reason"] == "adjudicator score 5.00 < tau"
    assert summary.counts["adjudicated"] == len(records)
    assert summary.counts["rejected_adjudication"] == len(rejected)
    # The adjudicator was asked with the reviewers' feedback beside the item.
    journal = read_jsonl(out / "journal.jsonl")
    drawn = [e for e in journal if e["t"] == "event" and e["event"]["event"] == "adjudicator_drawn"]
    assert len(drawn) >= len(records)


async def test_adjudicator_and_annotator_seats_wait_for_a_restarting_model(
    tmp_path: Path, double_env: pytest.MonkeyPatch
) -> None:
    """The only model that can adjudicate (and annotate) crashes as the run starts
    and takes seconds to come back: its seats wait ``model_grace_s`` for it, as
    every other role's do, instead of rejecting the items it would have judged."""
    double_env.setenv("GRA_DOUBLE_DELAY_S", "0.5")
    double_env.setenv("GRA_DOUBLE_SCORES", json.dumps({**DISAGREEING, "judge": 9}))
    double_env.setenv("GRA_DOUBLE_RESTART_S", json.dumps({"judge": 4}))
    double_env.setenv("GRA_DOUBLE_DIR", str(tmp_path))
    config = _adjudicated_fleet(
        tmp_path,
        {"judge": ["adjudicator", "annotator"]},
        target=2,
        max_instances=2,
        extra="model_grace_s = 300",  # a loaded machine starts a process slowly
    )
    out = tmp_path / "out"
    conductor = make_conductor(config, out)
    crashed: list[int] = []

    async def crash_the_judge() -> None:
        while not conductor.core.fleet_ready:
            await asyncio.sleep(0.02)
        (judge,) = [a for a in conductor.fleet.live() if a.model == "judge"]
        os.kill(judge.pid, signal.SIGKILL)
        crashed.append(judge.pid)

    crash = asyncio.create_task(crash_the_judge())
    summary = await asyncio.wait_for(conductor.run(), 180)
    await crash
    assert crashed and summary.agents["judge-0"].restarts == 1
    assert summary.agents["judge-0"].pid != crashed[0]
    accepted, rejected = check_outputs(out, summary)
    assert not rejected, [r["reason"] for r in rejected]
    assert len(accepted) == 2
    for record in accepted:
        assert record["adjudication"]["model"] == "judge"
        assert record["annotator"] == "judge"
