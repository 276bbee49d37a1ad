"""The fleet over time, from the timings a run already logs: nothing new is recorded for it.

Two kinds of line carry a time (logs/, one JSON object per line, written by
structlog): the supervisor's ``instance_finished`` (its ISO timestamp and the
decision), and the llama.cpp backend's ``llama_call`` in each agent's log (the
model, the wall-clock second the call started, how long it took and how many
tokens it wrote). The journal and summary.json hold no times per task. So the
series are per model, not per role (a ``llama_call`` does not name its role),
and a fleet on another backend (an OpenAI-compatible server, the test double)
shows items finished over time but no per-model series.

Reading is one pass per file that decodes only the lines naming one of the two
events (a byte search first), so a long run's logs cost seconds. Binning is a
pure function of the decoded events.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

MAX_BINS = 60
# Bin widths a reader can count in (seconds): the first that gives at most MAX_BINS.
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


class _Finished(msgspec.Struct):
    timestamp: str
    decision: str = ""


class _LlamaCall(msgspec.Struct):
    model: str
    started_at: float
    seconds: float
    completion_tokens: int = 0


@dataclass(frozen=True)
class Finish:
    at: float  # seconds since the epoch
    decision: str


@dataclass(frozen=True)
class Call:
    model: str
    start: float  # seconds since the epoch
    seconds: float
    completion_tokens: int


@dataclass
class Timeline:
    """Per bin of ``bin_s`` seconds from ``start``: items finished, and per model its
    calls finished, busy fraction of its task slots and decode speed."""

    start: float
    bin_s: float
    bins: int
    finished: dict[str, np.ndarray] = field(default_factory=dict)  # decision: counts
    calls: dict[str, np.ndarray] = field(default_factory=dict)  # model: calls ended
    busy: dict[str, np.ndarray] = field(default_factory=dict)  # model: fraction 0-1
    tokens_per_s: dict[str, np.ndarray] = field(default_factory=dict)  # model: nan when idle

    def minutes(self) -> np.ndarray:
        """Each bin's start, in minutes since the first event."""
        return np.arange(self.bins) * self.bin_s / 60.0


def bin_width(span_s: float, max_bins: int = MAX_BINS) -> float:
    """The narrowest of the round widths that covers ``span_s`` in ``max_bins`` bins."""
    needed = span_s / max_bins
    for step in _STEPS:
        if step >= needed:
            return float(step)
    return float(math.ceil(needed / _STEPS[-1]) * _STEPS[-1])


def bin_timeline(
    finishes: Sequence[Finish],
    calls: Sequence[Call],
    slots: Mapping[str, int],
    max_bins: int = MAX_BINS,
) -> Timeline | None:
    """Bin the events; None when there are none. A call's seconds are spread over the bins
    it overlaps, so a long call counts as busy in each; it counts as finished in the bin
    where it ended. A model's busy fraction is its overlapping call seconds over the bin's
    seconds times its task slots (``slots``, at least 1)."""
    ends = [f.at for f in finishes] + [c.start + max(0.0, c.seconds) for c in calls]
    if not ends:
        return None
    start = min([f.at for f in finishes] + [c.start for c in calls])
    end = max(ends)
    width = bin_width(max(end - start, 1e-9), max_bins)
    bins = max(1, min(max_bins, math.floor((end - start) / width) + 1))
    timeline = Timeline(start, width, bins)

    def index(at: float) -> int:
        return min(bins - 1, max(0, math.floor((at - start) / width)))

    for finish in finishes:
        counts = timeline.finished.setdefault(finish.decision or "?", np.zeros(bins))
        counts[index(finish.at)] += 1
    busy: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(bins))
    tokens: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(bins))
    for call in calls:
        seconds = max(0.0, call.seconds)
        call_end = call.start + seconds
        timeline.calls.setdefault(call.model, np.zeros(bins))[index(call_end)] += 1
        for i in range(index(call.start), index(call_end) + 1):
            overlap = min(call_end, start + (i + 1) * width) - max(call.start, start + i * width)
            if overlap > 0:
                busy[call.model][i] += overlap
                tokens[call.model][i] += call.completion_tokens * overlap / seconds
    # The last bin ends with the last event, not a whole width later.
    covered = np.full(bins, width)
    covered[-1] = max(end - (start + (bins - 1) * width), 1e-9)
    for model, seconds_in in busy.items():
        timeline.busy[model] = seconds_in / (covered * max(1, slots.get(model, 1)))
        with np.errstate(divide="ignore", invalid="ignore"):
            timeline.tokens_per_s[model] = np.where(
                seconds_in > 0, tokens[model] / seconds_in, np.nan
            )
    return timeline


# ---- reading the logs --------------------------------------------------------


def _lines_with(path: Path, marker: bytes) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            for line in handle:
                if marker in line:
                    yield line
    except OSError:
        return


def _epoch(timestamp: str) -> float | None:
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def read_finishes(path: Path) -> list[Finish]:
    decoder = msgspec.json.Decoder(_Finished)
    found = []
    for line in _lines_with(path, b'"instance_finished"'):
        try:
            event = decoder.decode(line)
        except msgspec.DecodeError:
            continue
        at = _epoch(event.timestamp)
        if at is not None:
            found.append(Finish(at, event.decision))
    return found


def read_calls(paths: Iterable[Path]) -> list[Call]:
    decoder = msgspec.json.Decoder(_LlamaCall)
    found = []
    for path in paths:
        for line in _lines_with(path, b'"llama_call"'):
            try:
                call = decoder.decode(line)
            except msgspec.DecodeError:
                continue
            if math.isfinite(call.started_at) and math.isfinite(call.seconds):
                found.append(
                    Call(call.model, call.started_at, call.seconds, call.completion_tokens)
                )
    return found


def task_slots(summary: Mapping[str, Any]) -> dict[str, int]:
    """Task slots per model: the capacity of its agents in summary.json."""
    slots: dict[str, int] = defaultdict(int)
    agents = summary.get("agents")
    for agent in agents.values() if isinstance(agents, Mapping) else ():
        if isinstance(agent, Mapping) and isinstance(agent.get("model"), str):
            capacity = agent.get("capacity")
            usable = isinstance(capacity, int) and not isinstance(capacity, bool) and capacity > 0
            slots[agent["model"]] += capacity if usable else 1
    return dict(slots)


def read_timeline(out_dir: Path, summary: Mapping[str, Any]) -> Timeline | None:
    """The run's timeline from ``out_dir/logs``; None when nothing there carries a time."""
    logs = Path(out_dir) / "logs"
    finishes = read_finishes(logs / "supervisor.jsonl")
    calls = read_calls(sorted(logs.glob("agent-*.jsonl")))
    return bin_timeline(finishes, calls, task_slots(summary))
