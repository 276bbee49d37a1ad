"""summary.json: the run's numbers as one Struct, written by the supervisor and read
back typed by everyone else (`gra status`, the report, the dataset card, resume).

The supervisor rewrites the file every two seconds while it runs, so readers
see a live run too. Every field has a default: a summary written by an older
gra (fewer keys) reads, and keys a newer gra added are ignored. The keys are
the ones the README and ARCHITECTURE.md document; add new ones last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from gra.errors import OutputError, SummaryError
from gra.rundir.layout import SUMMARY

# The counts every summary has (a plugin's check step adds "rejected_<its name>").
COUNT_KEYS = (
    "generated",
    "rejected_instruction_check",
    "rejected_score",
    "adjudicated",
    "rejected_adjudication",
    "rejected_verification",
    "deduplicated",
    "failed",
    "accepted",
)


class RoleUsage(msgspec.Struct):
    """What a model spent in one role."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class ModelUsage(RoleUsage):
    """What a model spent over all its roles, and per role."""

    roles: dict[str, RoleUsage] = {}


class Throughput(msgspec.Struct):
    instances_per_minute: float = 0.0
    accepted_per_minute: float = 0.0


class RoundCounts(msgspec.Struct):
    """One synthesis round's post-processing."""

    committee_accepted: int = 0
    accepted: int = 0
    deduplicated: int = 0


class AgentState(msgspec.Struct):
    """One agent as the supervisor last saw it."""

    model: str = "?"
    roles: list[str] = []
    alive: bool = False
    completed: int = 0
    failed: int = 0
    in_flight: int = 0
    capacity: int = 1
    seconds_since_heard: float = 0.0
    restarts: int = 0
    host: str = ""
    node: str = ""
    pid: int = 0


class Bus(msgspec.Struct):
    """Frames the supervisor's socket dropped (undecodable, oversized...), by reason."""

    dropped_frames: int = 0
    drop_reasons: dict[str, int] = {}


class HealthReport(msgspec.Struct):
    """A model that failed tasks: its counts, circuit-breaker trips, time left out."""

    failed: int = 0
    succeeded: int = 0
    trips: int = 0
    out_of_rotation_s: float = 0.0
    last_failure: str = ""


class Busy(msgspec.Struct):
    """Busy slot fraction per model over the last ``window_s`` seconds."""

    window_s: float = 0.0
    models: dict[str, float] = {}


class Agreement(msgspec.Struct):
    """How much the reviewers agreed (gra.report.agreement.reviewer_agreement)."""

    items: int = 0
    per_criterion: dict[str, float | None] = {}
    per_pair: dict[str, dict[str, Any]] = {}
    per_model: dict[str, dict[str, Any]] = {}
    adjudication: dict[str, Any] = {}
    check_lockstep: float | None = None


class Summary(msgspec.Struct):
    """summary.json. ``agreement`` is computed once, when the run ends."""

    counts: dict[str, int] = {}
    instances_finished: int = 0
    wall_seconds: float = 0.0
    throughput: Throughput = msgspec.field(default_factory=Throughput)
    models: dict[str, ModelUsage] = {}
    retries: int = 0
    agents_lost: int = 0
    late_results_ignored: int = 0
    invalid_usage_reports: int = 0
    refused_hellos: int = 0
    rounds: dict[str, RoundCounts] = {}
    verification: dict[str, int] = {}
    target: int | None = None
    instances_started: int = 0
    protocol: dict[str, Any] = {}
    agents: dict[str, AgentState] = {}
    bus: Bus = msgspec.field(default_factory=Bus)
    running: bool = False
    updated_at: float = 0.0
    instances_unfinished: int = 0
    pending_tasks: int = 0
    in_flight_tasks: int = 0
    model_health: dict[str, HealthReport] = {}
    busy: Busy = msgspec.field(default_factory=Busy)
    agreement: Agreement | None = None
    seed_rows_skipped: int = 0

    def count(self, key: str) -> int:
        """``counts[key]``, 0 where an older or partial summary lacks it."""
        return self.counts.get(key, 0)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Summary)


def decode_summary(data: bytes, path: Path) -> Summary:
    """``data`` as a Summary; ``SummaryError`` naming ``path`` when it is not one."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise SummaryError(f"{path}: unreadable run summary ({exc})") from None


def read_summary(out_dir: Path) -> Summary | None:
    """The run's summary.json; None when there is none yet."""
    path = out_dir / SUMMARY
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SummaryError(f"{path}: cannot read the run summary: {exc.strerror}") from None
    return decode_summary(data, path)


def write_summary(out_dir: Path, summary: Summary) -> None:
    """Replace summary.json atomically: readers never see half of it.

    Strict JSON: msgspec writes a NaN or infinity as null.
    """
    path = out_dir / SUMMARY
    partial = path.with_suffix(".json.partial")
    try:
        partial.write_bytes(msgspec.json.format(_encoder.encode(summary), indent=2) + b"\n")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"{path}: write failed: {exc.strerror}") from exc
