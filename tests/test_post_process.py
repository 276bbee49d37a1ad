"""End-of-round post-processing streams the candidates: rank order, chunk by chunk,
with deduplication across chunks and nothing written twice."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gra.config import Config, DedupSettings, RunSettings
from gra.data.dedup import EmbeddingError, default_model_path
from gra.data.pool import Pool, PoolItem
from gra.data.seeds import SeedItem
from gra.protocols.records import GeneratorInfo, ItemRecord
from gra.rundir import ACCEPTED, REJECTED, RoundCounts
from gra.supervisor.journal import Journal
from gra.supervisor.outputs import RecordWriter, RunStats
from gra.supervisor.rounds import SynthesisRounds

SEED = SeedItem("seed-0", "Add two numbers.", "def add(a, b): return a + b", "coding")


def _record(item_id: str, mean: float | None, instruction: str, response: str) -> ItemRecord:
    return ItemRecord(
        id=item_id,
        round=1,
        domain="coding",
        keywords=["a", "b", "c"],
        summary="s",
        instruction=instruction,
        response=response,
        seed_ids=["seed-0"],
        generator=GeneratorInfo("m"),
        reviews=[],
        mean=mean,
        std=0.0,
        adjudication=None,
        decision="accepted",
        stage="accepted",
        reason="ok",
    )


def _rounds(out: Path, *, rounds: int, dedup: bool) -> SynthesisRounds:
    config = Config(
        agents=(),
        run=RunSettings(rounds=rounds),
        dedup=DedupSettings(enabled=dedup, threshold=0.9),
    )
    writer = RecordWriter(out, (ACCEPTED, REJECTED))
    pool = Pool([PoolItem(SEED.id, SEED.instruction, SEED.response, SEED.domain)])
    journal = Journal(out / "journal.jsonl")
    return SynthesisRounds(config, out, writer, journal, RunStats(), pool)


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


async def test_candidates_come_out_best_mean_first_across_chunks(tmp_path: Path) -> None:
    rng = random.Random(2)
    means = [rng.choice([7.5, 8.0, 8.5, 9.0, None]) for _ in range(2_600)]
    records = [_record(f"c{i:04d}", m, f"task {i}", f"answer {i}") for i, m in enumerate(means)]
    rounds = _rounds(tmp_path, rounds=2, dedup=False)
    rounds.post_chunk = 1_000
    for record in records:
        rounds.add_candidate(record, 1, sync=False)
    assert rounds.candidates_written(1) == 2_600
    done, joining = await rounds.finish_round(1)

    # sorted() is stable: equal means keep the order they were accepted in.
    expected = [r.id for r in sorted(records, key=lambda r: -(r.mean or -1.0))]
    assert _ids(tmp_path / ACCEPTED) == expected
    assert _ids(tmp_path / "round-1" / ACCEPTED) == expected
    assert done == RoundCounts(committee_accepted=2_600, accepted=2_600, deduplicated=0)
    # Round 2 draws on them: they join the pool in rank order.
    assert [p.id for p in joining] == expected


async def test_after_the_last_round_nothing_joins_the_pool(tmp_path: Path) -> None:
    rounds = _rounds(tmp_path, rounds=1, dedup=False)
    rounds.add_candidate(_record("c1", 9.0, "task", "answer"), 1)
    done, joining = await rounds.finish_round(1)
    assert done.accepted == 1
    assert _ids(tmp_path / ACCEPTED) == ["c1"] and joining == []


async def test_a_redone_post_processing_writes_nothing_twice(tmp_path: Path) -> None:
    rounds = _rounds(tmp_path, rounds=1, dedup=False)
    for i in range(30):
        rounds.add_candidate(_record(f"c{i:02d}", 9.0 - i / 10, f"task {i}", "answer"), 1)
    rounds.close()
    # A crash after part of the round reached the outputs.
    partial = [json.dumps({"id": f"c{i:02d}"}) for i in range(10)]
    (tmp_path / ACCEPTED).write_text("\n".join(partial) + "\n")
    (tmp_path / "round-1" / ACCEPTED).write_text("\n".join(partial[:4]) + "\n")
    resumed = _rounds(tmp_path, rounds=1, dedup=False)
    assert resumed.candidates_written(1) == 30
    await resumed.finish_round(1)
    assert _ids(tmp_path / ACCEPTED) == [f"c{i:02d}" for i in range(30)]
    assert _ids(tmp_path / "round-1" / ACCEPTED) == [f"c{i:02d}" for i in range(30)]


@pytest.mark.slow
async def test_duplicates_are_caught_across_chunks_with_the_real_model(tmp_path: Path) -> None:
    try:
        default_model_path()
    except EmbeddingError as exc:
        pytest.skip(str(exc))
    topics = ["sort a list", "parse a date", "reverse a string", "count vowels", "merge dicts"]
    topics += ["read a csv file", "compute a factorial", "check a palindrome", "flatten a list"]
    records = [
        _record(f"c{i}", 9.5 - i / 10, f"Write a Python function to {t}.", f"Here is how to {t}.")
        for i, t in enumerate(topics)
    ]
    # The lowest-ranked candidate repeats the best one: three chunks apart.
    records.append(_record("again", 7.0, records[0].instruction, records[0].response))
    rounds = _rounds(tmp_path, rounds=1, dedup=True)
    rounds.post_chunk = 3
    for record in records:
        rounds.add_candidate(record, 1, sync=False)
    done, _ = await rounds.finish_round(1)
    assert done == RoundCounts(committee_accepted=10, accepted=9, deduplicated=1)
    assert _ids(tmp_path / ACCEPTED) == [r.id for r in records[:9]]
    (dropped,) = [json.loads(line) for line in (tmp_path / REJECTED).read_text().splitlines()]
    assert dropped["id"] == "again" and dropped["stage"] == "dedup"
    assert dropped["duplicate_of"] == "c0"
