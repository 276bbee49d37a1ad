"""Where an interrupted run stands: read its journal and outputs back.

Exactly-once outputs: a torn last record is cut; an instance whose record
made it to the outputs counts as finished even if its journal ``finish``
entry did not; every other started instance is rebuilt from its events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from gra.protocols.peer_review import InstanceEvent
from gra.protocols.records import ItemRecord, VerdictRecord
from gra.supervisor.journal import InstanceStarted, replay
from gra.supervisor.outputs import ACCEPTED, REJECTED, SUMMARY, VERDICTS, RunStats, repair


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
        path = out_dir / name
        repair(path)
        if path.exists():
            for line in path.read_bytes().splitlines():
                if line.strip():
                    record = msgspec.json.decode(line, type=ItemRecord)
                    done.add(record.id)
                    stats.count_record(record)
    verdicts = out_dir / VERDICTS
    repair(verdicts)
    if verdicts.exists():
        for line in verdicts.read_bytes().splitlines():
            if line.strip():
                verdict = msgspec.json.decode(line, type=VerdictRecord)
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
        repair(candidates)
        for line in candidates.read_bytes().splitlines():
            if line.strip():
                done.add(msgspec.json.decode(line, type=ItemRecord).id)
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
