"""Reports over run outputs: how far reviewers agree, how well they judge labelled pairs,
and the run report page (report.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("gra.report")


def write_report_quietly(out_dir: Path, **kwargs: Any) -> Path | None:
    """Write DIR/report.html; on any failure log a warning and return None.

    Called when a run ends: the data is already safe on disk, and a page that
    cannot be drawn (a missing plotting library, a record nobody foresaw) must
    never turn a finished run into a failed one. Imported lazily so that agents
    and the supervisor's hot path never load matplotlib.
    """
    try:
        from gra.report.html import write_report

        return write_report(out_dir, **kwargs)
    except Exception as exc:
        log.warning("report_failed", out_dir=str(out_dir), error=f"{type(exc).__name__}: {exc}")
        return None
