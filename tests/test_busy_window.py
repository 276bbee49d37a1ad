"""The busy window: occupied over offered task slots per model, over the last half minute."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gra.rundir import Busy
from gra.supervisor.busy import BusyWindow


@dataclass
class Agent:
    model: str
    capacity: int
    in_flight: set[str] = field(default_factory=set)


def busy(n: int) -> set[str]:
    return {f"t{i}" for i in range(n)}


def test_slot_seconds_are_integrated_between_samples() -> None:
    window = BusyWindow(window_s=30.0)
    a = Agent("a", capacity=2)
    b = Agent("b", capacity=1)
    # a: 1 of 2 slots busy for 10 s, then 2 of 2 for 10 s; b: idle, then busy.
    a.in_flight = busy(1)
    for t in range(10):
        window.sample(float(t), [a, b])
    a.in_flight, b.in_flight = busy(2), busy(1)
    for t in range(10, 21):
        window.sample(float(t), [a, b])
    report = window.report()
    assert report.window_s == 20.0
    assert report.models == {"a": pytest.approx(0.75), "b": pytest.approx(0.5)}


def test_only_the_last_window_counts() -> None:
    window = BusyWindow(window_s=10.0)
    agent = Agent("a", capacity=1)
    for t in range(20):  # 20 idle seconds...
        window.sample(float(t), [agent])
    agent.in_flight = busy(1)
    for t in range(20, 26):  # ...then 5 busy ones: half of the last ten
        window.sample(float(t), [agent])
    report = window.report()
    assert report.window_s == 10.0
    assert report.models == {"a": pytest.approx(0.5)}


def test_replicas_add_slots_and_a_model_with_none_live_is_left_out() -> None:
    window = BusyWindow()
    a0, a1 = Agent("a", 1, busy(1)), Agent("a", 1)
    window.sample(0.0, [a0, a1])
    window.sample(4.0, [a0, a1])
    window.sample(8.0, [a0])  # a1 died: a's one slot is busy from here on
    window.sample(12.0, [])  # every agent gone
    window.sample(16.0, [])
    # a: 1 of 2 slots for 8 s, 1 of 1 for 4 s, no slot for 4 s: 12 of 20 slot-seconds.
    assert window.report().models == {"a": pytest.approx(0.6)}
    window = BusyWindow()
    window.sample(0.0, [])
    window.sample(5.0, [])
    assert window.report() == Busy(window_s=5.0)


def test_more_in_flight_than_slots_counts_as_full_and_no_sample_is_empty() -> None:
    assert BusyWindow().report() == Busy()
    window = BusyWindow()
    agent = Agent("a", 1, busy(3))
    window.sample(0.0, [agent])
    window.sample(1.0, [agent])
    assert window.report().models == {"a": 1.0}
