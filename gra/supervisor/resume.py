"""Where an interrupted run stands: read its journal and outputs back.

Exactly-once outputs: a torn last record is cut; an instance whose record
made it to the outputs counts as finished even if its journal ``finish``
entry did not; every other started instance is rebuilt from its events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gra.protocols.peer_review import InstanceEvent
from gra.protocols.records import ItemRecord, VerdictRecord
from gra.supervisor.journal import InstanceStarted, replay
from gra.supervisor.lines import iter_records, read_ids
from gra.supervisor.outputs import ACCEPTED, REJECTED, SUMMARY, VERDICTS, RunStats


class ResumeError(Exception):
    pass


@dataclass
class ResumePoint:
    stats: RunStats
    started: int
    finished: int
    rounds_done: int = 0
    started_in_round: int = 0
    unfinished: list[tuple[InstanceStarted, list[InstanceEvent]]] = field(default_factory=list)


def load_resume_point(out_dir: Path) -> ResumePoint:
    journal = out_dir / "journal.jsonl"
    if not journal.exists():
        raise ResumeError(f"{out_dir}: no journal.jsonl to resume from")
    done: set[str] = set()
    stats = RunStats()
    for name in (ACCEPTED, REJECTED):
        for record in iter_records(out_dir / name, ItemRecord):
            done.add(record.id)
            stats.count_record(record)
    for verdict in iter_records(out_dir / VERDICTS, VerdictRecord):
        done.add(verdict.instance)
        stats.count_record(verdict)
    summary_path = out_dir / SUMMARY
    if summary_path.exists():
        try:
            previous = json.loads(summary_path.read_text())
            stats.previous_wall_seconds = float(previous.get("wall_seconds", 0.0))
            for model, numbers in previous.get("models", {}).items():
                for role, usage in numbers.get("roles", {}).items():
                    for key, value in usage.items():
                        stats.usage[model][role][key] += value
            stats.retries = int(previous.get("retries", 0))
        except (ValueError, TypeError, AttributeError):
            pass
    state = replay(journal)
    done |= set(state.finished)
    # Committee-accepted items wait in round-*/candidates.jsonl until their round ends.
    for candidates in out_dir.glob("round-*/candidates.jsonl"):
        done |= read_ids(candidates)
    unfinished = [
        (state.started[i], state.events.get(i, [])) for i in state.started if i not in done
    ]
    current = state.rounds_done + 1
    in_round = sum(1 for s in state.started.values() if s.round == current)
    return ResumePoint(
        stats,
        len(state.started),
        len(done),
        rounds_done=state.rounds_done,
        started_in_round=in_round,
        unfinished=unfinished,
    )
