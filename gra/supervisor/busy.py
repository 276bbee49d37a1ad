"""How busy each model's agents have been lately: the live view's busy fraction.

summary.json's per-model seconds are credited when a task ends, so the
difference of two summaries says little about a window shorter than a task (a
40-second llama.cpp call lands whole in one 2-second window), and the agents'
in_flight at the moment summary.json is written is one sample in ten ticks.
So the conductor samples, at every tick, the task slots each model's live
agents hold busy and offer, and this window integrates those samples over the
last half minute: occupied slot-seconds over offered slot-seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable
from typing import Protocol

from gra.rundir import Busy

WINDOW_S = 30.0


class SlotHolder(Protocol):
    """What the window reads of a live agent (gra.supervisor.fleet.AgentInfo)."""

    @property
    def model(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def in_flight(self) -> Collection[str]: ...


class BusyWindow:
    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        # The last sample: when, and per model (busy slots, offered slots); it
        # holds until the next sample, which closes it into a span.
        self._last: tuple[float, dict[str, tuple[int, int]]] | None = None
        self._spans: deque[tuple[float, float, dict[str, tuple[int, int]]]] = deque()

    def sample(self, now: float, agents: Iterable[SlotHolder]) -> None:
        occupancy: dict[str, tuple[int, int]] = {}
        for agent in agents:
            busy, slots = occupancy.get(agent.model, (0, 0))
            capacity = max(0, agent.capacity)
            occupancy[agent.model] = (busy + min(len(agent.in_flight), capacity), slots + capacity)
        if self._last is not None and now > self._last[0]:
            self._spans.append((self._last[0], now, self._last[1]))
        self._last = (now, occupancy)
        while self._spans and self._spans[0][1] <= now - self.window_s:
            self._spans.popleft()

    def report(self) -> Busy:
        """The seconds covered and each model's busy fraction over them.

        A model that offered no slot in the window (every agent dead) is left out.
        """
        if self._last is None:
            return Busy()
        start = self._last[0] - self.window_s
        busy_s: dict[str, float] = {}
        slot_s: dict[str, float] = {}
        covered = 0.0
        for begin, end, occupancy in self._spans:
            length = end - max(begin, start)
            if length <= 0:
                continue
            covered += length
            for model, (busy, slots) in occupancy.items():
                busy_s[model] = busy_s.get(model, 0.0) + busy * length
                slot_s[model] = slot_s.get(model, 0.0) + slots * length
        models = {m: round(busy_s[m] / s, 3) for m, s in sorted(slot_s.items()) if s > 0}
        return Busy(window_s=round(covered, 1), models=models)
