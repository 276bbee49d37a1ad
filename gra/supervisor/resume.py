"""Where an interrupted run stands: read its journal and outputs back.

Exactly-once outputs: a torn last record is cut; an instance whose record
made it to the outputs counts as finished even if its journal ``finish``
entry did not; every other started instance is rebuilt from its events.

A record line that does not decode anywhere but at the end of its file stops
the resume before anything is written (``CorruptRecordError``, FILE:LINE), and
so does a summary.json that does not decode (``SummaryError``).
A run whose rounds are all done continues its last round to a raised target
(``--resume --target N``); a new round starts only when ``[run] rounds`` asks
for one, never because the target went up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gra.errors import ResumeError, TargetAlreadyMet
from gra.protocols.peer_review import InstanceEvent
from gra.protocols.records import ItemRecord, VerdictRecord
from gra.rundir import (
    ACCEPTED,
    CANDIDATES,
    JOURNAL,
    REJECTED,
    SEED_ANNOTATIONS,
    VERDICTS,
    read_ids,
    read_jsonl,
    read_summary,
    round_files,
)
from gra.supervisor.journal import InstanceStarted, replay
from gra.supervisor.outputs import RunStats


@dataclass
class ResumePoint:
    stats: RunStats
    started: int
    finished: int
    rounds_done: int = 0
    started_in_round: int = 0
    # Committee-accepted items of the round the resumed run is in (its target's count).
    accepted_in_round: int = 0
    # The round was already post-processed and is opened again for a higher target.
    reopened: bool = False
    unfinished: list[tuple[InstanceStarted, list[InstanceEvent]]] = field(default_factory=list)


def load_resume_point(out_dir: Path, rounds: int | None = None) -> ResumePoint:
    """Where the run in ``out_dir`` stands; ``rounds``: the config's, when generating.

    With every one of ``rounds`` done, the last round is opened again, so that
    a raised target is met in it rather than in a round nobody asked for.
    """
    journal = out_dir / JOURNAL
    if not journal.exists():
        raise ResumeError(f"{out_dir}: no {JOURNAL} to resume from")
    done: set[str] = set()
    stats = RunStats()
    for name in (ACCEPTED, REJECTED):
        for record in read_jsonl(out_dir / name, ItemRecord, cut_tail=True):
            done.add(record.id)
            stats.count_record(record)
    for verdict in read_jsonl(out_dir / VERDICTS, VerdictRecord, cut_tail=True):
        done.add(verdict.instance)
        stats.count_record(verdict)
    _read_previous_summary(out_dir, stats)
    state = replay(journal)
    done |= set(state.finished)
    # Committee-accepted items wait in round-*/candidates.jsonl until their round ends.
    candidates: dict[int, int] = {}
    for k, path in round_files(out_dir, CANDIDATES):
        ids = read_ids(path)
        candidates[k] = len(ids)
        done |= ids
    _check_other_files(out_dir)
    unfinished = [
        (state.started[i], state.events.get(i, [])) for i in state.started if i not in done
    ]
    reopened = rounds is not None and state.rounds_done >= max(rounds, 1)
    rounds_done = state.rounds_done - 1 if reopened else state.rounds_done
    current = rounds_done + 1
    in_round = sum(1 for s in state.started.values() if s.round == current)
    return ResumePoint(
        stats,
        len(state.started),
        len(done),
        rounds_done=rounds_done,
        started_in_round=in_round,
        accepted_in_round=candidates.get(current, 0),
        reopened=reopened,
        unfinished=unfinished,
    )


def check_target_open(point: ResumePoint, target: int, rounds: int) -> None:
    """Refuse to resume a finished run whose last round already has ``target`` items."""
    if not point.reopened or point.accepted_in_round < target:
        return
    where = f" in round {point.rounds_done + 1}" if rounds > 1 else ""
    more = " (or [run] rounds)" if rounds > 1 else ""
    raise TargetAlreadyMet(
        f"target {target} already met: {point.accepted_in_round} accepted{where}; "
        f"raise --target{more} to continue"
    )


def _read_previous_summary(out_dir: Path, stats: RunStats) -> None:
    """Carry usage, wall time and retries over from the last summary.json, if any."""
    previous = read_summary(out_dir)
    if previous is None:
        return
    stats.previous_wall_seconds = previous.wall_seconds
    for model, numbers in previous.models.items():
        for role, usage in numbers.roles.items():
            slot = stats.usage[model][role]
            slot["calls"] += usage.calls
            slot["prompt_tokens"] += usage.prompt_tokens
            slot["completion_tokens"] += usage.completion_tokens
            slot["seconds"] += usage.seconds
    stats.retries = previous.retries


def _check_other_files(out_dir: Path) -> None:
    """Decode every line the resumed run will read later, so a corrupt one stops it
    now, before it writes anything, rather than half-way through a round."""
    from gra.supervisor.seed_annotations import SeedAnnotation

    for _, path in round_files(out_dir, ACCEPTED):
        read_ids(path)
    for _ in read_jsonl(out_dir / SEED_ANNOTATIONS, SeedAnnotation, cut_tail=True):
        pass
