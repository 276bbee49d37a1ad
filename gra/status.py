"""`gra status DIR`: the health of a run's fleet, live or finished.

Reads the summary.json that the supervisor rewrites every two seconds, so it
works from another terminal (or machine sharing the directory) while a run
goes on; with ``--watch`` it redraws until the run ends. What is drawn comes
from gra.status_view, which reads nothing itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

from gra.errors import StatusError, SummaryError
from gra.rundir import SUMMARY, Summary, read_summary
from gra.status_view import SILENT_AFTER_S, run_ended, status_view


def read_status(out_dir: Path) -> Summary:
    try:
        summary = read_summary(out_dir)
    except SummaryError as exc:
        raise StatusError(str(exc)) from None
    if summary is None:
        path = out_dir / SUMMARY
        raise StatusError(f"{path}: no summary yet (is this a gra run directory?)")
    return summary


def render_status(summary: Summary, console: Console) -> None:
    console.print(status_view(summary, time.time()))


def watch_status(
    out_dir: Path,
    console: Console,
    interval: float,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Redraw the status every ``interval`` seconds until the run ends; the last summary.

    A run just started may not have written summary.json yet: wait for it as long
    as a supervisor may stay silent. The last state stays on the screen (and is
    printed once when stdout is not a terminal).
    """
    summary = _first_summary(out_dir, console, interval, clock, sleep)
    with Live(status_view(summary, clock()), console=console, auto_refresh=False) as live:
        while not run_ended(summary, clock()):
            sleep(interval)
            summary = read_status(out_dir)
            live.update(status_view(summary, clock()), refresh=True)
    return summary


def _first_summary(
    out_dir: Path,
    console: Console,
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Summary:
    deadline = clock() + SILENT_AFTER_S
    waiting = f"waiting for {out_dir / SUMMARY}"
    with console.status(waiting) if console.is_terminal else contextlib.nullcontext():
        while True:
            try:
                return read_status(out_dir)
            except StatusError:
                if clock() >= deadline:
                    raise
            sleep(min(interval, 1.0))
