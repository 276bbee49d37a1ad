"""The run directory (gra.rundir): the one JSON-lines reader, and summary.json written
and read back as a typed Summary, by this gra or an older one, or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from gra.data.card import render_card
from gra.errors import CorruptRecordError, StatusError, SummaryError
from gra.protocols.messages import Usage
from gra.report.collect import collect
from gra.rundir import (
    COUNT_KEYS,
    SUMMARY,
    AgentState,
    Agreement,
    Bus,
    Busy,
    HealthReport,
    RoundCounts,
    Summary,
    journal_config_path,
    read_ids,
    read_jsonl,
    read_raw,
    read_summary,
    round_files,
    write_summary,
)
from gra.status import read_status
from gra.supervisor.outputs import RunStats
from gra.supervisor.resume import load_resume_point


class Item(msgspec.Struct):
    id: str
    n: int = 0


# ---- the JSON-lines reader ----------------------------------------------------


def test_a_torn_last_line_is_skipped_unless_whole_and_cut_only_when_asked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"id": "a", "n": 1}\n\n{"id": "b"}\n{"id": "c", "n')
    assert [i.id for i in read_jsonl(path, Item)] == ["a", "b"]
    assert path.read_bytes().endswith(b'"n')  # a reader may not cut: a run may be writing
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')  # whole, only its newline missing
    assert [i.id for i in read_jsonl(path, Item)] == ["a", "b"]
    assert [i.id for i in read_jsonl(path, Item, cut_tail=True)] == ["a"]
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_a_bad_line_is_named_by_file_and_line_or_skipped_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": 7}\n{"id": "c"}\n')
    with pytest.raises(CorruptRecordError, match=rf"{path}:2: corrupt record .*\$\.id"):
        list(read_jsonl(path, Item))
    assert [i.id for i in read_jsonl(path, Item, skip_bad=True)] == ["a", "c"]
    path.write_bytes(b'{"id": "a"}\nnot json\n')
    with pytest.raises(CorruptRecordError, match=rf"{path}:2:"):
        read_ids(path)
    assert list(read_jsonl(tmp_path / "missing.jsonl", Item)) == []


def test_read_ids_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "accepted.jsonl"
    path.write_bytes(b'{"id": "a", "other": [1]}\n{"id": "b"}\n{"id": "c"')
    assert read_ids(path) == {"a", "b"}
    assert path.read_bytes().endswith(b'{"id": "b"}\n')


def test_read_raw_is_lenient(tmp_path: Path) -> None:
    first = tmp_path / "accepted.jsonl"
    first.write_text('{"id": "a"}\n\n[1, 2]\n{"id": "b"}\nnot json\n{"id": "c", "rev')
    second = tmp_path / "rejected.jsonl"
    second.write_text('{"id": "d"}\n')
    paths = [first, tmp_path / "missing.jsonl", second]
    assert [r["id"] for r in read_raw(paths)] == ["a", "b", "d"]
    assert first.read_text().endswith('"rev')  # never cut: a run may still be writing


def test_the_journal_names_the_config_the_run_started_from(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    assert journal_config_path(journal) is None
    journal.write_text('{"t": "run", "config_path": "job.toml", "seed": 1, "at": 0}\n{"t"')
    assert journal_config_path(journal) == "job.toml"
    journal.write_text('{"t": "start", "instance": "i"}\n')
    assert journal_config_path(journal) is None


def test_round_files_are_found_by_round_number(tmp_path: Path) -> None:
    for name in ("round-10", "round-2", "round-x", "rounds-3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "accepted.jsonl").write_text("")
    found = round_files(tmp_path, "accepted.jsonl")
    assert [(k, p.parent.name) for k, p in found] == [(2, "round-2"), (10, "round-10")]


# ---- summary.json -----------------------------------------------------------------


def _full_summary() -> Summary:
    stats = RunStats()
    stats.add_usage("m", "reviewer", Usage(10, 20, 1.5, 1))
    stats.add_usage("m", "generator", Usage(5, 6, 0.25, 2))
    stats.counts["accepted"] = 3
    stats.counts["rejected_screen"] = 1  # a plugin step's count
    stats.rounds["1"] = RoundCounts(4, 3, 1)
    return msgspec.structs.replace(
        stats.summary(),
        target=10,
        agents={"m-0": AgentState(model="m", roles=["reviewer"], alive=True, capacity=2)},
        bus=Bus(3, {"frame_count": 3}),
        model_health={"m": HealthReport(failed=2, trips=1, last_failure="timeout")},
        busy=Busy(30.0, {"m": 0.5}),
        agreement=Agreement(items=3, per_criterion={"score": 0.4, "clarity": None}),
        running=True,
    )


def test_a_summary_goes_through_summary_json_unchanged(tmp_path: Path) -> None:
    summary = _full_summary()
    write_summary(tmp_path, summary)
    assert read_summary(tmp_path) == summary
    assert read_summary(tmp_path / "elsewhere") is None
    # The keys ARCHITECTURE.md and the README promise, as plain JSON.
    raw = json.loads((tmp_path / SUMMARY).read_text())
    assert set(COUNT_KEYS) <= set(raw["counts"]) and raw["counts"]["rejected_screen"] == 1
    assert raw["models"]["m"] == {
        "calls": 3,
        "prompt_tokens": 15,
        "completion_tokens": 26,
        "seconds": 1.75,
        "roles": {
            "reviewer": {"calls": 1, "prompt_tokens": 10, "completion_tokens": 20, "seconds": 1.5},
            "generator": {"calls": 2, "prompt_tokens": 5, "completion_tokens": 6, "seconds": 0.25},
        },
    }
    assert raw["agents"]["m-0"]["capacity"] == 2 and raw["bus"]["dropped_frames"] == 3
    assert raw["rounds"]["1"] == {"committee_accepted": 4, "accepted": 3, "deduplicated": 1}
    assert raw["agreement"]["per_criterion"] == {"score": 0.4, "clarity": None}
    assert isinstance(raw["wall_seconds"], float) and raw["running"] is True


def test_an_older_summary_reads_with_defaults_and_newer_keys_are_ignored(
    tmp_path: Path,
) -> None:
    (tmp_path / SUMMARY).write_text(
        json.dumps(
            {
                "counts": {"accepted": 2, "generated": 5},
                "wall_seconds": 12,
                "models": {"m": {"calls": 1, "roles": {"generator": {"calls": 1}}}},
                "agents": {"m-0": {"model": "m", "alive": True}},
                "added_by_a_newer_gra": {"x": 1},
            }
        )
    )
    summary = read_summary(tmp_path)
    assert summary is not None
    assert summary.count("accepted") == 2 and summary.count("failed") == 0
    assert summary.wall_seconds == 12.0 and summary.retries == 0
    assert summary.models["m"].roles["generator"].seconds == 0.0
    assert summary.agents["m-0"].capacity == 1 and summary.agents["m-0"].node == ""
    assert summary.busy == Busy() and summary.agreement is None and summary.target is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "malformed"),
        ('{"retries": "seven"}', r"\$\.retries"),
        ('{"agents": {"a": {"alive": "yes"}}}', r"\$\.agents\[\.\.\.\]\.alive"),
        ("[1, 2]", "Expected `object`"),
    ],
)
def test_a_corrupt_summary_is_an_error_that_names_the_file(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / SUMMARY
    path.write_text(text)
    with pytest.raises(SummaryError, match=rf"^{path}: unreadable run summary \(.*{why}"):
        read_summary(tmp_path)
    # gra status says so; resuming over it stops before anything is written.
    with pytest.raises(StatusError, match=str(path)):
        read_status(tmp_path)
    (tmp_path / "journal.jsonl").write_text("")
    with pytest.raises(SummaryError, match=str(path)):
        load_resume_point(tmp_path)


def test_the_report_and_the_card_say_a_summary_was_unreadable_and_go_on(
    tmp_path: Path,
) -> None:
    (tmp_path / SUMMARY).write_text('{"counts": {"accepted": "many"}}')
    (tmp_path / "accepted.jsonl").write_text("")
    report = collect(tmp_path, skip_map="not wanted here")
    assert any(str(tmp_path / SUMMARY) in note for note in report.notes), report.notes
    card = render_card(tmp_path, [], "data.jsonl", "chat", "jsonl")
    assert f"- summary: {tmp_path / SUMMARY}: unreadable run summary" in card


def test_resume_carries_usage_over_from_the_typed_summary(tmp_path: Path) -> None:
    write_summary(tmp_path, _full_summary())
    (tmp_path / "journal.jsonl").write_text("")
    stats = load_resume_point(tmp_path).stats
    carried = stats.summary()
    assert carried.models["m"].roles["reviewer"].prompt_tokens == 10
    assert carried.models["m"].calls == 3
