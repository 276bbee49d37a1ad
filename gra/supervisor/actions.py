"""What the scheduling core is told, and what it asks its shell to do.

The core (``gra.supervisor.core``) never touches a socket, a file, a process
or a clock: the shell (``gra.supervisor.conductor``) turns what happens into
inputs, hands them to ``SchedulingCore.handle`` with the time, and carries out
the actions it gets back, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gra.data.pool import PoolItem
from gra.protocols.messages import Message
from gra.protocols.records import ItemRecord, VerdictRecord
from gra.supervisor.journal import JournalEntry
from gra.supervisor.seed_annotations import SeedAnnotation

# ---- inputs -----------------------------------------------------------------


@dataclass(frozen=True)
class Frames:
    """Frames from the bus, in arrival order (heartbeats left out: hearing from a
    peer is all they say, and ``heard`` says it)."""

    frames: list[tuple[bytes, Any]]
    # Every peer a frame (heartbeats included) came from, and when they arrived.
    heard: tuple[bytes, ...]
    at: float
    # The authorised key each peer that said hello in this batch said it with.
    keys: dict[bytes, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Tick:
    """Time passed: deadlines, heartbeats and grace periods are checked."""


@dataclass(frozen=True)
class Unreachable:
    """A frame to this peer could not be sent."""

    identity: bytes


@dataclass(frozen=True)
class ProcessExited:
    """A local agent's process ended."""

    agent_id: str
    code: int


@dataclass(frozen=True)
class RoundPostProcessed:
    """A ``FinishRound`` was carried out: these items join the pool."""

    round: int
    joining: list[PoolItem]


Input = Frames | Tick | Unreachable | ProcessExited | RoundPostProcessed

# ---- actions ----------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    identity: bytes
    message: Message


@dataclass(frozen=True)
class StartAgent:
    """Start (or restart) the local agent ``agent_id``."""

    agent_id: str


@dataclass(frozen=True)
class KillAgent:
    """End a hung local agent so that it can be restarted."""

    agent_id: str


@dataclass(frozen=True)
class AppendJournal:
    entry: JournalEntry


@dataclass(frozen=True)
class WriteRecord:
    """A generated item decided outside the committee-accepted pool (rejected)."""

    record: ItemRecord


@dataclass(frozen=True)
class AddCandidate:
    """A committee-accepted item of round ``round``, for the round's post-processing."""

    record: ItemRecord
    round: int


@dataclass(frozen=True)
class WriteVerdict:
    verdict: VerdictRecord


@dataclass(frozen=True)
class WriteSeedAnnotation:
    entry: SeedAnnotation


@dataclass(frozen=True)
class FinishRound:
    """Post-process round ``round``; the shell answers with ``RoundPostProcessed``."""

    round: int


Action = (
    Send
    | StartAgent
    | KillAgent
    | AppendJournal
    | WriteRecord
    | AddCandidate
    | WriteVerdict
    | WriteSeedAnnotation
    | FinishRound
)
# Actions after which something finished must reach the disk soon (a group commit).
DURABLE = (WriteRecord, AddCandidate, WriteVerdict, WriteSeedAnnotation)
