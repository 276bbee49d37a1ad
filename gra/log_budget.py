"""A log budget: a flood of one event writes a few lines and a count, not a line each.

A peer that sprays junk frames must not be able to fill the disk through the
supervisor's log. Each event name gets ``burst`` lines per ``window_s``; what
is over the budget is counted, and the count is handed back once the window
has passed so that the caller logs one summary line for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Window:
    start: float
    used: int = 0
    suppressed: int = 0


@dataclass
class LogBudget:
    burst: int = 20
    window_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, _Window] = field(default_factory=dict)

    def take(self, event: str) -> tuple[bool, int]:
        """(whether to log this line, lines suppressed in the window that just ended)."""
        now = self.clock()
        window = self._windows.get(event)
        missed = 0
        if window is None or now - window.start >= self.window_s:
            missed = window.suppressed if window is not None else 0
            window = self._windows[event] = _Window(now)
        if window.used < self.burst:
            window.used += 1
            return True, missed
        window.suppressed += 1
        return False, missed

    def drain(self) -> dict[str, int]:
        """Lines suppressed and not yet reported, per event (for a last summary line)."""
        out = {e: w.suppressed for e, w in self._windows.items() if w.suppressed}
        for window in self._windows.values():
            window.suppressed = 0
        return out
