"""The fleet over time, from the timings a run already logs: nothing new is recorded for it.

Two kinds of line carry a time (logs/, one JSON object per line, written by
structlog): the supervisor's ``instance_finished`` (its ISO timestamp and the
decision), and each agent's ``task_done`` (its role, model, the wall-clock
second the task started, how long it took and how many tokens it wrote; every
backend). Agents' logs from before ``task_done`` existed carry the llama.cpp
backend's ``llama_call`` lines instead (per model, no role); a file without
``task_done`` lines is read for those. The journal and summary.json hold no
times per task.

Reading is one pass per file that decodes only the lines naming one of these
events (a byte search first), so a long run's logs cost seconds. Binning is a
pure function of the decoded events.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np

from gra.rundir import AGENT_LOGS, SUPERVISOR_LOG, Summary, log_dir

MAX_BINS = 60
# Bin widths a reader can count in (seconds): the first that gives at most MAX_BINS.
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


class _Finished(msgspec.Struct):
    timestamp: str
    decision: str = ""


class _Timed(msgspec.Struct):
    """A ``task_done`` line (or an older run's ``llama_call``, which has no role)."""

    event: str
    model: str
    started_at: float
    seconds: float
    completion_tokens: int = 0
    role: str = ""


@dataclass(frozen=True)
class Finish:
    at: float  # seconds since the epoch
    decision: str


@dataclass(frozen=True)
class Call:
    """One task an agent did (or, from older logs, one backend call)."""

    model: str
    start: float  # seconds since the epoch
    seconds: float
    completion_tokens: int
    role: str = ""  # "" when the log did not say


@dataclass
class Timeline:
    """Per bin of ``bin_s`` seconds from ``start``: items finished; per model its tasks
    finished, busy fraction of its task slots and decode speed; per role the same,
    its busy share taken of all the fleet's slots (the roles' shares add up to the
    fleet's busy fraction)."""

    start: float
    bin_s: float
    bins: int
    finished: dict[str, np.ndarray] = field(default_factory=dict)  # decision: counts
    calls: dict[str, np.ndarray] = field(default_factory=dict)  # model: tasks ended
    busy: dict[str, np.ndarray] = field(default_factory=dict)  # model: fraction 0-1
    tokens_per_s: dict[str, np.ndarray] = field(default_factory=dict)  # model: nan when idle
    role_tasks: dict[str, np.ndarray] = field(default_factory=dict)  # role: tasks ended
    role_busy: dict[str, np.ndarray] = field(default_factory=dict)  # role: share of all slots
    role_tokens_per_s: dict[str, np.ndarray] = field(default_factory=dict)

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
    seconds times its task slots (``slots``, at least 1); a role's busy share is its
    seconds over the bin's seconds times all the models' slots."""
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
    # The last bin ends with the last event, not a whole width later.
    covered = np.full(bins, width)
    covered[-1] = max(end - (start + (bins - 1) * width), 1e-9)
    per_model = _spread(calls, lambda c: c.model, start, width, bins, index)
    for model, (ended, seconds_in, _) in per_model.items():
        timeline.calls[model] = ended
        timeline.busy[model] = seconds_in / (covered * max(1, slots.get(model, 1)))
        timeline.tokens_per_s[model] = _speed(per_model[model])
    named = [c for c in calls if c.role]
    all_slots = sum(max(1, slots.get(model, 1)) for model in per_model)
    per_role = _spread(named, lambda c: c.role, start, width, bins, index)
    for role, (ended, seconds_in, _) in per_role.items():
        timeline.role_tasks[role] = ended
        timeline.role_busy[role] = seconds_in / (covered * max(1, all_slots))
        timeline.role_tokens_per_s[role] = _speed(per_role[role])
    return timeline


_Series = tuple[np.ndarray, np.ndarray, np.ndarray]  # ended, busy seconds, tokens


def _spread(
    calls: Sequence[Call],
    key: Callable[[Call], str],
    start: float,
    width: float,
    bins: int,
    index: Callable[[float], int],
) -> dict[str, _Series]:
    """Per key: tasks ended per bin, and each task's seconds and tokens spread over the
    bins it overlaps."""
    series: dict[str, _Series] = {}
    for call in calls:
        ended, busy, tokens = series.setdefault(
            key(call), (np.zeros(bins), np.zeros(bins), np.zeros(bins))
        )
        seconds = max(0.0, call.seconds)
        call_end = call.start + seconds
        ended[index(call_end)] += 1
        for i in range(index(call.start), index(call_end) + 1):
            overlap = min(call_end, start + (i + 1) * width) - max(call.start, start + i * width)
            if overlap > 0:
                busy[i] += overlap
                tokens[i] += call.completion_tokens * overlap / seconds
    return series


def _speed(series: _Series) -> np.ndarray:
    """Tokens a second while busy; nan in a bin with no busy second."""
    _, seconds_in, tokens = series
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(seconds_in > 0, tokens / seconds_in, np.nan)


# ---- reading the logs --------------------------------------------------------


def _lines_with(path: Path, *markers: bytes) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            for line in handle:
                if any(marker in line for marker in markers):
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
    """Each agent log's ``task_done`` lines; a log with none, its ``llama_call`` lines."""
    decoder = msgspec.json.Decoder(_Timed)
    found = []
    for path in paths:
        events: dict[str, list[Call]] = {"task_done": [], "llama_call": []}
        for line in _lines_with(path, b'"task_done"', b'"llama_call"'):
            try:
                timed = decoder.decode(line)
            except msgspec.DecodeError:
                continue
            usable = math.isfinite(timed.started_at) and math.isfinite(timed.seconds)
            if usable and timed.event in events:
                events[timed.event].append(
                    Call(
                        timed.model,
                        timed.started_at,
                        timed.seconds,
                        timed.completion_tokens,
                        timed.role if timed.event == "task_done" else "",
                    )
                )
        found += events["task_done"] or events["llama_call"]
    return found


def task_slots(summary: Summary) -> dict[str, int]:
    """Task slots per model: the capacity of its agents in summary.json."""
    slots: dict[str, int] = defaultdict(int)
    for agent in summary.agents.values():
        slots[agent.model] += agent.capacity if agent.capacity > 0 else 1
    return dict(slots)


def read_timeline(out_dir: Path, summary: Summary) -> Timeline | None:
    """The run's timeline from ``out_dir/logs``; None when nothing there carries a time."""
    logs = log_dir(Path(out_dir))
    finishes = read_finishes(logs / SUPERVISOR_LOG)
    calls = read_calls(sorted(logs.glob(AGENT_LOGS)))
    return bin_timeline(finishes, calls, task_slots(summary))
