"""Reports over run outputs: how far reviewers agree, how well they judge labelled pairs,
and the run report page (report.html)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("gra.report")

REFRESH_EVERY_S = 30.0
# A refresh may take at most this share of one core: the wait grows with its cost.
_REFRESH_SHARE = 0.1


def write_report_quietly(out_dir: Path, **kwargs: Any) -> Path | None:
    """Write DIR/report.html; on any failure log a warning and return None.

    Called when a run ends: the data is already safe on disk, and a page that
    cannot be drawn (a missing plotting library, a record nobody foresaw) must
    never turn a finished run into a failed one. Imported lazily so that agents
    and the supervisor's hot path never load matplotlib. The embedding map is
    drawn only by a run that deduplicated (it has loaded MiniLM already); for
    any other, loading torch would add seconds to every short run's end.
    """
    try:
        from gra.report.html import write_report

        config = kwargs.get("config")
        dedup = getattr(getattr(config, "dedup", None), "enabled", True)
        if config is not None and dedup is False:
            kwargs.setdefault(
                "skip_map",
                "this run did not deduplicate, so it never loaded the embedding model; "
                "`gra report DIR` draws the map",
            )
        return write_report(out_dir, **kwargs)
    except Exception as exc:
        log.warning("report_failed", out_dir=str(out_dir), error=f"{type(exc).__name__}: {exc}")
        return None


@contextlib.asynccontextmanager
async def refreshing_report(out_dir: Path, every_s: float = REFRESH_EVERY_S) -> AsyncIterator[None]:
    """Rewrite DIR/report.html every ``every_s`` seconds while the body runs.

    Each refresh is a `gra report` child process at low priority, so the
    supervisor's event loop never draws a plot; the next one waits at least ten
    times as long as the last took, so refreshing never costs more than a tenth
    of a core however large the run grows. A failed refresh is logged once and
    refreshing stops; the run goes on.
    """
    task = asyncio.create_task(_refresh(Path(out_dir), every_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _lower_priority() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError):
        os.nice(10)


async def _refresh(out_dir: Path, every_s: float) -> None:
    from gra.report.embedding import MAP_ENV

    wait = every_s
    while True:
        await asyncio.sleep(wait)
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gra",
                "report",
                str(out_dir),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_lower_priority,
                env={**os.environ, MAP_ENV: "0"},
            )
        except OSError as exc:
            log.warning("report_refresh_failed", error=str(exc))
            return
        try:
            _, stderr = await process.communicate()
        except asyncio.CancelledError:
            # SIGINT, not a kill: the child removes its partial file on the way out.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            with contextlib.suppress(asyncio.TimeoutError, ProcessLookupError):
                await asyncio.wait_for(process.wait(), 10)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        if process.returncode != 0:
            error = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            log.warning("report_refresh_failed", returncode=process.returncode, error=error[0])
            return
        wait = max(every_s, (time.monotonic() - started) / _REFRESH_SHARE)
