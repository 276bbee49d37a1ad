"""A run's summary.json drawn for a terminal: the state line, the funnel, how busy
each model is, the agents.

Pure: a summary dict (and the time now) in, rich renderables out; no file is
read and no clock is looked at here. `gra status` prints these once,
`gra status --watch` redraws them until the run ends, and `gra run` shows the
funnel and the models under its progress bar, so all three show the same
numbers in the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# A supervisor that has not rewritten summary.json for this long is gone.
SILENT_AFTER_S = 30.0

# The gates an item meets in order, and the summary count of items each one
# removed (summary.json "counts", gra.supervisor.outputs.COUNT_KEYS).
GATES = (
    ("instruction checks", "rejected_instruction_check"),
    ("scores", "rejected_score"),
    ("adjudication", "rejected_adjudication"),
    ("verification", "rejected_verification"),
    ("dedup", "deduplicated"),
)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number >= 0 else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class FunnelRow:
    gate: str
    removed: int | None  # items this gate turned away; None for the first and last rows
    left: int


def funnel(counts: Mapping[str, Any]) -> list[FunnelRow]:
    """Items generated, what each gate removed and what was left after it, then accepted.

    What is left after the last gate and not yet accepted is still in review or failed.
    """
    left = _int(counts.get("generated"))
    rows = [FunnelRow("generated", None, left)]
    for gate, key in GATES:
        removed = _int(counts.get(key))
        left = max(0, left - removed)
        rows.append(FunnelRow(gate, removed, left))
    rows.append(FunnelRow("accepted", None, _int(counts.get("accepted"))))
    return rows


@dataclass(frozen=True)
class ModelRow:
    model: str
    alive: int  # agents alive
    agents: int
    busy_slots: int  # task slots of its live agents busy at the summary's moment
    slots: int  # task slots its live agents offer
    busy_recent: float | None  # busy fraction over the supervisor's last window
    busy_run: float | None  # model seconds over the run's wall time of all its slots
    calls: int
    tokens_per_s: float | None


def model_rows(summary: Mapping[str, Any]) -> list[ModelRow]:
    """One row per model, from its agents, its usage and the supervisor's busy window."""
    agents: dict[str, list[Mapping[str, Any]]] = {}
    for agent in _map(summary.get("agents")).values():
        agent = _map(agent)
        agents.setdefault(str(agent.get("model", "?")), []).append(agent)
    usage = _map(summary.get("models"))
    recent = _map(_map(summary.get("busy")).get("models"))
    wall = _float(summary.get("wall_seconds")) or 0.0
    rows = []
    for model in sorted(set(agents) | set(usage)):
        own = agents.get(model, [])
        live = [a for a in own if a.get("alive")]
        spent = _map(usage.get(model))
        seconds = _float(spent.get("seconds")) or 0.0
        all_slots = sum(max(1, _int(a.get("capacity"))) for a in own)
        completion = _int(spent.get("completion_tokens"))
        rows.append(
            ModelRow(
                model=model,
                alive=len(live),
                agents=len(own),
                busy_slots=sum(_int(a.get("in_flight")) for a in live),
                slots=sum(_int(a.get("capacity")) for a in live),
                busy_recent=_float(recent.get(model)),
                busy_run=seconds / (wall * all_slots) if wall > 0 and all_slots else None,
                calls=_int(spent.get("calls")),
                tokens_per_s=completion / seconds if seconds > 0 else None,
            )
        )
    return rows


def run_state(summary: Mapping[str, Any], now: float) -> str:
    age = now - (_float(summary.get("updated_at")) or 0.0)
    if not summary.get("running"):
        return "stopped"
    if age >= SILENT_AFTER_S:
        return f"silent for {age:.0f}s (supervisor gone? continue with --resume)"
    return "running"


def run_ended(summary: Mapping[str, Any], now: float) -> bool:
    """The run stopped, or its supervisor went silent: nothing more will change."""
    return run_state(summary, now) != "running"


def state_line(summary: Mapping[str, Any], now: float) -> Text:
    counts = _map(summary.get("counts"))
    return Text.from_markup(
        f"[bold]{run_state(summary, now)}[/]  accepted {_int(counts.get('accepted'))}/"
        f"{summary.get('target', '?')}  instances {summary.get('instances_finished', 0)}/"
        f"{summary.get('instances_started', 0)}  tasks in flight "
        f"{summary.get('in_flight_tasks', 0)}, pending {summary.get('pending_tasks', 0)}  "
        f"retries {summary.get('retries', 0)}  agents lost {summary.get('agents_lost', 0)}  "
        f"bus drops {_map(summary.get('bus')).get('dropped_frames', 0)}"
    )


def funnel_table(summary: Mapping[str, Any]) -> RenderableType:
    """The funnel, and under it what no gate decided: adjudicated, failed, in progress."""
    counts = _map(summary.get("counts"))
    table = Table("funnel", "out", "left", box=None, padding=(0, 1))
    table.columns[1].justify = table.columns[2].justify = "right"
    for row in funnel(counts):
        removed = f"-{row.removed}" if row.removed else ""
        style = "bold green" if row.gate == "accepted" else None
        table.add_row(row.gate, removed, str(row.left), style=style)
    aside = Text(
        f" adjudicated {_int(counts.get('adjudicated'))} · failed {_int(counts.get('failed'))}"
        f" · in progress {_int(summary.get('instances_unfinished'))}",
        style="dim",
    )
    return Group(table, aside)


def busy_bar(fraction: float | None, width: int = 10) -> Text:
    if fraction is None:
        return Text("-", style="dim")
    fraction = min(1.0, fraction)
    filled = round(fraction * width)
    colour = "green" if fraction >= 0.7 else "yellow" if fraction >= 0.3 else "red"
    bar = Text("█" * filled, style=colour)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {fraction:4.0%}")
    return bar


def _now_cell(row: ModelRow) -> Text:
    if row.alive == 0:
        return Text("down", style="red")
    if row.busy_slots == 0:
        return Text("idle", style="yellow")
    return Text(f"busy {row.busy_slots}/{row.slots}", style="green")


def models_table(summary: Mapping[str, Any]) -> Table:
    window = _float(_map(summary.get("busy")).get("window_s"))
    recent = f"busy {window:.0f}s" if window else "busy lately"
    table = Table("model", "agents", "now", recent, "run", "tok/s", box=None, padding=(0, 1))
    for column in table.columns[4:]:
        column.justify = "right"
    for row in model_rows(summary):
        table.add_row(
            row.model,
            f"{row.alive}/{row.agents}",
            _now_cell(row),
            busy_bar(row.busy_recent),
            f"{row.busy_run:.0%}" if row.busy_run is not None else "-",
            f"{row.tokens_per_s:.0f}" if row.tokens_per_s is not None else "-",
        )
    return table


def agents_table(summary: Mapping[str, Any]) -> Table:
    table = Table(
        "agent", "model", "node", "health", "tasks", "done", "failed", "restarts", "heard"
    )
    for agent_id, agent in sorted(_map(summary.get("agents")).items()):
        agent = _map(agent)
        health = "[green]alive[/]" if agent.get("alive") else "[red]dead[/]"
        table.add_row(
            str(agent_id),
            str(agent.get("model", "?")),
            _node_cell(agent),
            health,
            f"{_int(agent.get('in_flight'))}/{agent.get('capacity', '?')}",
            str(_int(agent.get("completed"))),
            str(_int(agent.get("failed"))),
            str(_int(agent.get("restarts"))),
            f"{_float(agent.get('seconds_since_heard')) or 0.0:.1f}s ago",
        )
    return table


def _node_cell(agent: Mapping[str, Any]) -> str:
    """Where the agent runs: its host, and the cluster node (first 8 of its id) when placed."""
    host, node = str(agent.get("host") or ""), str(agent.get("node") or "")
    return f"{host} {node[:8]}".strip() if node else host or "-"


def fleet_view(summary: Mapping[str, Any]) -> RenderableType:
    """The funnel beside the models (one above the other on a narrow terminal)."""
    return Columns([funnel_table(summary), models_table(summary)], padding=(0, 4))


def status_view(summary: Mapping[str, Any], now: float) -> RenderableType:
    """What `gra status` shows: the state line, the funnel and models, the agents."""
    return Group(state_line(summary, now), Text(""), fleet_view(summary), agents_table(summary))
