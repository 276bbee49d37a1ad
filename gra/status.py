"""`gra status DIR`: the health of a run's fleet, live or finished.

Reads the summary.json that the supervisor rewrites every two seconds, so it
works from another terminal (or machine sharing the directory) while a run
goes on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gra.errors import StatusError


def read_status(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StatusError(f"{path}: no summary yet (is this a gra run directory?)") from None
    except ValueError as exc:
        raise StatusError(f"{path}: unreadable summary: {exc}") from None


def render_status(summary: dict[str, Any], console: Console) -> None:
    age = time.time() - float(summary.get("updated_at", 0))
    state = "running" if summary.get("running") and age < 30 else "stopped"
    if summary.get("running") and age >= 30:
        state = f"silent for {age:.0f}s (supervisor gone? continue with --resume)"
    counts = summary["counts"]
    console.print(
        f"[bold]{state}[/]  accepted {counts['accepted']}/{summary.get('target', '?')}  "
        f"instances {summary.get('instances_finished', 0)}/{summary.get('instances_started', 0)}  "
        f"tasks in flight {summary.get('in_flight_tasks', 0)}, pending "
        f"{summary.get('pending_tasks', 0)}  retries {summary.get('retries', 0)}  "
        f"agents lost {summary.get('agents_lost', 0)}  "
        f"bus drops {summary.get('bus', {}).get('dropped_frames', 0)}"
    )
    table = Table("agent", "model", "health", "tasks", "done", "failed", "restarts", "heard")
    for agent_id, agent in sorted(summary.get("agents", {}).items()):
        health = "[green]alive[/]" if agent["alive"] else "[red]dead[/]"
        table.add_row(
            agent_id,
            agent["model"],
            health,
            f"{agent['in_flight']}/{agent.get('capacity', '?')}",
            str(agent["completed"]),
            str(agent["failed"]),
            str(agent.get("restarts", 0)),
            f"{agent.get('seconds_since_heard', 0):.1f}s ago",
        )
    console.print(table)
