"""The run's outputs: accepted.jsonl, rejected.jsonl, verdicts.jsonl and the numbers
that go into summary.json (gra.rundir.summary).

Records are appended whole (one write of one line, flushed and fsynced) so a
crash leaves at most a torn last line, which is cut when the file is next read.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from gra.protocols.messages import Usage
from gra.protocols.records import ItemRecord, VerdictRecord
from gra.rundir import (
    ACCEPTED,
    COUNT_KEYS,
    REJECTED,
    VERDICTS,
    ModelUsage,
    RoleUsage,
    RoundCounts,
    Summary,
    Throughput,
)
from gra.supervisor.lines import LineFile

_encoder = msgspec.json.Encoder()


class RecordWriter:
    def __init__(self, out_dir: Path, names: tuple[str, ...] = (ACCEPTED, REJECTED)) -> None:
        """Opens (creating) ``names`` at once so that an empty outcome is an empty file."""
        self._out_dir = out_dir
        self._files: dict[str, LineFile] = {}
        for name in names:
            self._file(name)

    def _file(self, name: str) -> LineFile:
        if name not in self._files:
            self._files[name] = LineFile(self._out_dir / name)
        return self._files[name]

    def write(self, record: ItemRecord, *, sync: bool = True) -> None:
        self._file(ACCEPTED if record.decision == "accepted" else REJECTED).append(
            _encoder.encode(record), sync=sync
        )

    def write_verdict(self, verdict: VerdictRecord, *, sync: bool = True) -> None:
        self._file(VERDICTS).append(_encoder.encode(verdict), sync=sync)

    def sync(self) -> None:
        """Make every record written without ``sync`` durable."""
        for handle in self._files.values():
            handle.sync()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


_COUNT_OF_STAGE = {
    "instruction_check": "rejected_instruction_check",
    "score": "rejected_score",
    "adjudication": "rejected_adjudication",
    "verification": "rejected_verification",
    "dedup": "deduplicated",
    "failed": "failed",
    "accepted": "accepted",
}


@dataclass
class RunStats:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    usage: dict[str, dict[str, dict[str, float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    )
    retries: int = 0
    agents_lost: int = 0
    # Results for tasks already reassigned (a frozen agent woke up), or sent by
    # an agent the task was never given to: ignored.
    late_results: int = 0
    # Usage reports with a number out of range (NaN, negative, absurd): not counted.
    invalid_usage: int = 0
    # Hellos refused admission (a model, key or seat they may not claim).
    refused_hellos: int = 0
    rounds: dict[str, RoundCounts] = field(default_factory=dict)
    # Verified items by verdict: passed, failed, cannot_verify.
    verification: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    previous_wall_seconds: float = 0.0

    def count_record(self, record: ItemRecord | VerdictRecord) -> None:
        if isinstance(record, VerdictRecord):
            if record.refined_response is not None:
                self.counts["generated"] += 1
        elif record.instruction:
            self.counts["generated"] += 1
        if record.adjudication is not None:
            self.counts["adjudicated"] += 1
        if record.verification is not None:
            verdict = record.verification.verdict
            self.verification[verdict] = self.verification.get(verdict, 0) + 1
        key = _COUNT_OF_STAGE.get(record.stage, f"rejected_{record.stage}")  # a plugin's step
        self.counts[key] = self.counts.get(key, 0) + 1

    def add_usage(self, model: str, role: str, usage: Usage) -> None:
        """Count what a task cost; a report with any number out of range counts nothing.

        The numbers come from agents, which are not trusted to be sane.
        """
        if not usage_is_valid(usage):
            self.invalid_usage += 1
            return
        slot = self.usage[model][role]
        slot["calls"] += usage.calls
        slot["prompt_tokens"] += usage.prompt_tokens
        slot["completion_tokens"] += usage.completion_tokens
        slot["seconds"] += usage.seconds

    @property
    def wall_seconds(self) -> float:
        return self.previous_wall_seconds + time.monotonic() - self.started_at

    def summary(self) -> Summary:
        """The numbers kept here; the supervisor adds the fleet's (``structs.replace``)."""
        models: dict[str, ModelUsage] = {}
        for model, roles in self.usage.items():
            per_role = {role: _role_usage(numbers) for role, numbers in roles.items()}
            models[model] = ModelUsage(
                calls=sum(u.calls for u in per_role.values()),
                prompt_tokens=sum(u.prompt_tokens for u in per_role.values()),
                completion_tokens=sum(u.completion_tokens for u in per_role.values()),
                seconds=round(sum(_bounded(n["seconds"]) for n in roles.values()), 3),
                roles=per_role,
            )
        wall = self.wall_seconds
        finished = sum(n for k, n in self.counts.items() if k not in ("generated", "adjudicated"))
        return Summary(
            counts=dict(self.counts),
            instances_finished=finished,
            wall_seconds=round(wall, 3),
            throughput=Throughput(
                instances_per_minute=round(60 * finished / wall, 3) if wall else 0.0,
                accepted_per_minute=round(60 * self.counts["accepted"] / wall, 3) if wall else 0.0,
            ),
            models=models,
            retries=self.retries,
            agents_lost=self.agents_lost,
            late_results_ignored=self.late_results,
            invalid_usage_reports=self.invalid_usage,
            refused_hellos=self.refused_hellos,
            rounds=dict(self.rounds),
            verification=dict(self.verification),
        )


def _role_usage(numbers: dict[str, float]) -> RoleUsage:
    return RoleUsage(
        calls=int(_bounded(numbers["calls"])),
        prompt_tokens=int(_bounded(numbers["prompt_tokens"])),
        completion_tokens=int(_bounded(numbers["completion_tokens"])),
        seconds=round(_bounded(numbers["seconds"]), 3),
    )


# Bounds on what one task can report: far above any real task, far below overflow.
MAX_TOKENS = 1 << 40
MAX_SECONDS = 1e7
MAX_CALLS = 1 << 20


def usage_is_valid(usage: Usage) -> bool:
    """Finite, non-negative and bounded: what a real backend can have reported."""
    return (
        0 <= usage.prompt_tokens <= MAX_TOKENS
        and 0 <= usage.completion_tokens <= MAX_TOKENS
        and 0 <= usage.calls <= MAX_CALLS
        and math.isfinite(usage.seconds)
        and 0.0 <= usage.seconds <= MAX_SECONDS
    )


def _bounded(value: float) -> float:
    """A counter read back from an earlier summary.json: 0 unless finite and >= 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) and 0.0 <= value <= MAX_TOKENS * 1e3 else 0.0
