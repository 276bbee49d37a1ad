"""The live view: the funnel and each model's busy fraction, drawn from summary.json by
`gra status` (once, or with --watch until the run ends) and under `gra run`'s bar."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rich.console import Console

from gra.cli import main
from gra.rundir import Summary
from gra.status import watch_status
from gra.status_view import funnel, model_rows, run_ended, status_view
from tests.conftest import ROOT, scripted_config

NOW = 1_000_000.0


def crafted_summary(**changes: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "running": True,
        "updated_at": NOW - 1,
        "target": 20,
        "instances_started": 44,
        "instances_finished": 42,
        "instances_unfinished": 2,
        "wall_seconds": 100.0,
        "counts": {
            "generated": 40,
            "rejected_instruction_check": 5,
            "rejected_score": 12,
            "adjudicated": 7,
            "rejected_adjudication": 3,
            "rejected_verification": 2,
            "deduplicated": 1,
            "failed": 4,
            "accepted": 13,
        },
        "models": {
            "alpha": {"calls": 30, "completion_tokens": 1000, "seconds": 50.0},
            "beta": {"calls": 12, "completion_tokens": 600, "seconds": 60.0},
        },
        "agents": {
            "alpha-0": {"model": "alpha", "alive": True, "in_flight": 1, "capacity": 1},
            "beta-0": {"model": "beta", "alive": True, "in_flight": 0, "capacity": 2},
            "beta-1": {"model": "beta", "alive": False, "in_flight": 0, "capacity": 2},
        },
        "busy": {"window_s": 30.0, "models": {"alpha": 0.9, "beta": 0.25}},
    }
    summary.update(changes)
    return summary


def typed(summary: dict[str, Any]) -> Summary:
    """A crafted summary as `gra status` reads it back from summary.json."""
    return msgspec.convert(summary, Summary)


def drawn(renderable: Any, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_funnel_and_busy_fractions_come_from_the_summary() -> None:
    summary = typed(crafted_summary())
    rows = [(r.gate, r.removed, r.left) for r in funnel(summary.counts)]
    assert rows == [
        ("generated", None, 40),
        ("instruction checks", 5, 35),
        ("scores", 12, 23),
        ("adjudication", 3, 20),
        ("verification", 2, 18),
        ("dedup", 1, 17),
        ("accepted", None, 13),
    ]
    alpha, beta = model_rows(summary)
    assert (alpha.alive, alpha.agents, alpha.busy_slots, alpha.slots) == (1, 1, 1, 1)
    assert alpha.busy_recent == 0.9 and alpha.busy_run == 0.5  # 50 s of 100 s on 1 slot
    assert alpha.tokens_per_s == 20.0
    assert (beta.alive, beta.agents, beta.busy_slots, beta.slots) == (1, 2, 0, 2)
    assert beta.busy_recent == 0.25 and beta.busy_run == 0.15  # 60 s of 100 s on 4 slots

    for width in (160, 80):  # side by side, or one above the other
        text = drawn(status_view(summary, NOW), width)
        assert text.startswith("running  accepted 13/20  instances 42/44")
        for gate, out, left in [
            ("generated", "", 40),
            ("instruction checks", "-5", 35),
            ("scores", "-12", 23),
            ("adjudication", "-3", 20),
            ("verification", "-2", 18),
            ("dedup", "-1", 17),
            ("accepted", "", 13),
        ]:
            assert re.search(rf"^ ?{gate} +{out} +{left}\b", text, re.M), (gate, text)
        assert "adjudicated 7 · failed 4 · in progress 2" in text
        assert re.search(r"alpha +1/1 +busy 1/1 +█{9}░ +90% +50% +20\b", text), text
        assert re.search(r"beta +1/2 +idle +██░{8} +25% +15% +10\b", text), text
        assert "busy 30s" in text  # the window the supervisor measured over


def test_a_summary_without_usage_or_busy_window_draws_dashes() -> None:
    summary = crafted_summary(models={}, wall_seconds=0)
    del summary["busy"]  # an older summary, or one written before any busy window
    text = drawn(status_view(typed(summary), NOW))
    assert re.search(r"alpha +1/1 +busy 1/1 +- +- +-", text), text
    assert "busy lately" in text
    dead = crafted_summary()
    for agent in dead["agents"].values():
        agent["alive"] = False
    assert re.search(r"beta +0/2 +down", drawn(status_view(typed(dead), NOW))), "no live agent"


def test_a_run_ends_when_it_stops_or_its_supervisor_falls_silent() -> None:
    assert not run_ended(typed(crafted_summary()), NOW)
    assert run_ended(typed(crafted_summary(running=False)), NOW)
    silent = typed(crafted_summary(updated_at=NOW - 31))
    assert run_ended(silent, NOW)
    assert drawn(status_view(silent, NOW)).startswith("silent for 31s")


class FakeClock:
    def __init__(self, out_dir: Path, summaries: list[dict[str, Any]]) -> None:
        self.now = NOW
        self.out_dir = out_dir
        self.summaries = summaries
        self.sleeps: list[float] = []
        self.write()

    def write(self) -> None:
        (self.out_dir / "summary.json").write_text(json.dumps(self.summaries.pop(0)))

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.summaries:
            self.write()


def test_watch_redraws_until_the_run_stops(tmp_path: Path) -> None:
    fresh = [crafted_summary(updated_at=NOW + i) for i in range(3)]
    clock = FakeClock(tmp_path, [*fresh, crafted_summary(running=False)])
    console = Console(record=True, width=160, color_system=None)
    last = watch_status(tmp_path, console, 0.5, clock=lambda: clock.now, sleep=clock.sleep)
    assert last.running is False
    assert clock.sleeps == [0.5] * 3
    assert console.export_text().startswith("stopped  accepted 13/20")


def test_watch_gives_up_on_a_silent_supervisor(tmp_path: Path) -> None:
    clock = FakeClock(tmp_path, [crafted_summary(updated_at=NOW)])
    console = Console(record=True, width=160, color_system=None)
    watch_status(tmp_path, console, 2.0, clock=lambda: clock.now, sleep=clock.sleep)
    assert sum(clock.sleeps) == 30.0  # the supervisor's last word was 30 s ago
    assert console.export_text().startswith("silent for 30s")


def test_watch_waits_for_a_run_to_write_its_first_summary(tmp_path: Path) -> None:
    sleeps: list[float] = []
    clock = [NOW]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds
        if len(sleeps) == 3:
            (tmp_path / "summary.json").write_text(json.dumps(crafted_summary(running=False)))

    console = Console(record=True, width=160, color_system=None)
    watch_status(tmp_path, console, 0.2, clock=lambda: clock[0], sleep=sleep)
    assert sleeps == [0.2] * 3
    assert "stopped  accepted 13/20" in console.export_text()


def test_watch_on_a_directory_that_never_gets_a_summary_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [NOW]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with pytest.raises(Exception, match="no summary yet") as caught:
        watch_status(tmp_path, Console(), 5.0, clock=lambda: clock[0], sleep=sleep)
    assert type(caught.value).__name__ == "StatusError"
    assert clock[0] == NOW + 30  # waited as long as a supervisor may stay silent, once a second


def gra(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kwargs.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "gra", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def test_watch_follows_a_real_run_to_its_end(tmp_path: Path) -> None:
    """`gra run` in the background, `gra status --watch` on its directory."""
    config = scripted_config(tmp_path, ["a", "b", "c"], target=6, max_in_flight=2)
    out = tmp_path / "run"
    run = gra("run", str(config), "--out", str(out), env={"GRA_DOUBLE_DELAY_S": "0.3"})
    try:
        watch = gra("status", str(out), "--watch", "--interval", "0.2")
        watched_out, watched_err = watch.communicate(timeout=300)
        # The watcher left because the run had ended, not before: the summary says so.
        summary = json.loads((out / "summary.json").read_text())
        assert watch.returncode == 0, watched_err
        assert summary["running"] is False
        ran_out, ran_err = run.communicate(timeout=300)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 0, ran_err[-2000:]
    accepted = summary["counts"]["accepted"]
    assert accepted >= 6
    assert summary["busy"]["window_s"] > 0 and set(summary["busy"]["models"]) >= {"a", "b", "c"}
    # The final state, printed once on a pipe: the state line and the funnel's last row.
    assert watched_out.startswith(f"stopped  accepted {accepted}/6"), watched_out
    assert re.search(rf"^ ?accepted +{accepted}\b", watched_out, re.M), watched_out
    assert watched_err == ""
    # `gra run` drew the same funnel and the models under its progress bar.
    assert re.search(rf"^ ?accepted +{accepted}\b", ran_out, re.M), ran_out
    for model in ("a", "b", "c"):
        assert re.search(rf"(^|\s){model} +\d/1 +(idle|down|busy)", ran_out, re.M), ran_out


def test_watch_on_a_finished_run_returns_at_once(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(crafted_summary(running=False)))
    watch = gra("status", str(tmp_path), "--watch", "--interval", "100")
    out, err = watch.communicate(timeout=60)  # one interval of 100 s would overrun it
    assert watch.returncode == 0, err
    assert out.startswith("stopped  accepted 13/20")
    assert re.search(r"^ ?scores +-12 +23\b", out, re.M), out


@pytest.mark.parametrize("interval", ["0", "-1", "abc", "nan", "inf"])
def test_a_bad_interval_is_one_line(
    interval: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(crafted_summary(running=False)))
    assert main(["status", str(tmp_path), "--watch", "--interval", interval]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"gra: error: --interval must be a number of seconds above 0, not {interval}\n"


def test_a_bad_interval_exits_2_from_the_shell(tmp_path: Path) -> None:
    watch = gra("status", str(tmp_path), "--watch", "--interval=-0.5")
    out, err = watch.communicate(timeout=60)
    assert (watch.returncode, out) == (2, "")
    assert err.splitlines() == [
        "gra: error: --interval must be a number of seconds above 0, not -0.5"
    ]


def read_until(fd: int, wanted: bytes, timeout: float, until_closed: bool = False) -> bytes:
    """What a terminal shows until ``wanted`` appears (or, ``until_closed``, until its
    program has exited and every byte is read)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until_closed or wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed: its program exited
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_ctrl_c_stops_the_watcher_cleanly(tmp_path: Path) -> None:
    """In a terminal: the view is drawn while the run goes on; Ctrl-C leaves, no traceback."""
    summary = crafted_summary(updated_at=time.time() + 3600)  # a run that stays alive
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    main_fd, terminal = pty.openpty()
    watch = subprocess.Popen(
        [sys.executable, "-m", "gra", "status", str(tmp_path), "--watch", "--interval", "0.2"],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(terminal)
    try:
        shown = read_until(main_fd, b"in progress 2", timeout=60)
        assert b"running" in shown and b"scores" in shown
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=30) == 130
        shown = read_until(main_fd, b"", timeout=5, until_closed=True)
    finally:
        watch.kill()
        watch.wait()
        os.close(main_fd)
    assert watch.stderr is not None
    # No traceback, and no word of resuming: the run it watched goes on.
    assert watch.stderr.read() == b""
    assert b"Traceback" not in shown and b"resume" not in shown
