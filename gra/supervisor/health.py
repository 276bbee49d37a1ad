"""A circuit breaker per model: one that keeps failing leaves the rotation for a while.

Without it a model whose every answer is invalid sinks the run: its retries go
back to it when it is its model's only host, and instance after instance fails
until ``max_instances``. Here ``failures`` tasks in a row failing (invalid
output past the agent's retries, a backend error, a deadline) open the breaker:
the model gets no new seats and its queued tasks go to other models, for a
backoff that doubles with each trip (``backoff_s`` up to ``max_backoff_s``).
Then it is tried again; one success closes the breaker and resets the backoff,
one more failure opens it again at once.

Pure logic: the conductor reports outcomes with its clock and asks who is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gra.rundir import HealthReport


@dataclass
class _Breaker:
    consecutive: int = 0
    trips: int = 0
    open_until: float = 0.0
    failed: int = 0
    succeeded: int = 0
    last_reason: str = ""


@dataclass
class ModelHealth:
    failures: int = 5
    backoff_s: float = 30.0
    max_backoff_s: float = 600.0
    _models: dict[str, _Breaker] = field(default_factory=dict)

    def success(self, model: str) -> None:
        breaker = self._models.setdefault(model, _Breaker())
        breaker.succeeded += 1
        breaker.consecutive = 0
        breaker.trips = 0

    def failure(self, model: str, reason: str, now: float) -> bool:
        """Count a failed task; True when this failure takes the model out of rotation."""
        breaker = self._models.setdefault(model, _Breaker())
        breaker.failed += 1
        breaker.consecutive += 1
        breaker.last_reason = reason[:300]
        half_open = breaker.trips > 0 and now >= breaker.open_until
        if now < breaker.open_until:
            return False  # already out: a late failure of a task sent before the trip
        if breaker.consecutive >= self.failures or half_open:
            backoff = min(self.max_backoff_s, self.backoff_s * 2**breaker.trips)
            breaker.trips += 1
            breaker.open_until = now + backoff
            return True
        return False

    def in_rotation(self, model: str, now: float) -> bool:
        breaker = self._models.get(model)
        return breaker is None or now >= breaker.open_until

    def out_of_rotation(self, now: float) -> set[str]:
        return {m for m, b in self._models.items() if now < b.open_until}

    def describe(self, model: str) -> str:
        breaker = self._models.get(model, _Breaker())
        return (
            f"model {model!r} failed {breaker.consecutive} tasks in a row "
            f"(last: {breaker.last_reason or 'unknown'})"
        )

    def report(self, now: float) -> dict[str, HealthReport]:
        """Per model that ever failed: counts, trips and whether it is out now (summary.json)."""
        return {
            model: HealthReport(
                failed=b.failed,
                succeeded=b.succeeded,
                trips=b.trips,
                out_of_rotation_s=round(max(0.0, b.open_until - now), 1),
                last_failure=b.last_reason,
            )
            for model, b in sorted(self._models.items())
            if b.failed
        }
