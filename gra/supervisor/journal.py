"""The journal: an append-only record of every state change of a run.

One msgpack-free JSON line per entry so that a human can read it. Resume
replays it: finished instances are done; unfinished ones are rebuilt by
applying their events to a fresh state machine, then continue.

Write order gives exactly-once outputs: an instance's record is written to
its output file and flushed BEFORE its ``finish`` entry; on resume, a record
found in the outputs without a ``finish`` entry counts as finished.

Observers (``Journal.add_observer``) see each entry right after it is
written: the journal is the one place every state change passes, so
watching it (a benchmark timing instances, say) needs no hook elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from gra.errors import CorruptRecordError, JournalError
from gra.protocols.peer_review import InstanceEvent
from gra.protocols.roles import Example, GeneratedItem, Inspiration
from gra.rundir import read_jsonl
from gra.supervisor.lines import LineFile


class Entry(msgspec.Struct, tag_field="t", frozen=True):
    pass


class RunStarted(Entry, tag="run"):
    config_path: str
    seed: int
    at: float


class InstanceStarted(Entry, tag="start"):
    instance: str
    round: int
    domain: str
    generator: str | None
    reviewers: tuple[str, ...]
    seed_ids: tuple[str, ...]
    examples: tuple[Example, ...]
    # Review and refine modes: the existing pair under judgement.
    original: GeneratedItem | None = None
    inspirations: tuple[Inspiration, ...] = ()
    # "item": a GRA instance; "seed_annotation": a seed getting its domain,
    # keywords and summary before generation starts.
    kind: str = "item"


class InstanceChanged(Entry, tag="event"):
    instance: str
    event: InstanceEvent


class TaskRetried(Entry, tag="retry"):
    instance: str
    task_id: str
    agent: str
    reason: str


class InstanceFinished(Entry, tag="finish"):
    instance: str
    decision: str
    stage: str


class RoundFinished(Entry, tag="round_done"):
    round: int
    accepted: int
    deduplicated: int


JournalEntry = (
    RunStarted | InstanceStarted | InstanceChanged | TaskRetried | InstanceFinished | RoundFinished
)

# Called with each entry after it is written, in the supervisor's one task: it
# must return quickly and must not raise (an exception stops the run).
JournalObserver = Callable[[Entry], None]

_encoder = msgspec.json.Encoder()


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = LineFile(path)
        self._observers: list[JournalObserver] = []

    def add_observer(self, observer: JournalObserver) -> None:
        """Call ``observer`` with every entry appended from now on, after it is written."""
        self._observers.append(observer)

    def append(self, entry: Entry, *, sync: bool = False) -> None:
        """Write an entry; without ``sync`` it is made durable by the writer's next ``sync()``
        (the supervisor group-commits once per batch of inputs)."""
        self._file.append(_encoder.encode(entry), sync=sync)
        if self._observers:  # one falsy test per entry when nobody watches
            for observer in self._observers:
                observer(entry)

    def sync(self) -> None:
        self._file.sync()

    def close(self) -> None:
        self._file.close()


def read_journal(path: Path) -> Iterator[JournalEntry]:
    """Entries in order; a torn last line (a crash mid-write) is skipped."""
    try:
        yield from read_jsonl(path, JournalEntry)
    except CorruptRecordError as exc:
        raise JournalError(str(exc)) from None


@dataclass
class Replay:
    """What a journal says about a run so far."""

    started: dict[str, InstanceStarted] = field(default_factory=dict)
    events: dict[str, list[InstanceEvent]] = field(default_factory=dict)
    finished: dict[str, InstanceFinished] = field(default_factory=dict)
    rounds_done: int = 0


def replay(path: Path) -> Replay:
    result = Replay()
    for entry in read_journal(path):
        match entry:
            case InstanceStarted(instance=instance):
                result.started[instance] = entry
                result.events[instance] = []
            case InstanceChanged(instance=instance, event=event):
                result.events.setdefault(instance, []).append(event)
            case InstanceFinished(instance=instance):
                result.finished[instance] = entry
            case RoundFinished(round=k):
                result.rounds_done = max(result.rounds_done, k)
            case _:
                pass
    return result


__all__ = [
    "InstanceChanged",
    "InstanceFinished",
    "InstanceStarted",
    "Journal",
    "JournalError",
    "JournalObserver",
    "Replay",
    "RunStarted",
    "TaskRetried",
    "read_journal",
    "replay",
]
