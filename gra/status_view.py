"""A run's summary.json drawn for a terminal: the state line, the funnel, how busy
each model is, the agents.

Pure: a Summary (and the time now) in, rich renderables out; no file is
read and no clock is looked at here. `gra status` prints these once,
`gra status --watch` redraws them until the run ends, and `gra run` shows the
funnel and the models under its progress bar, so all three show the same
numbers in the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gra.rundir import AgentState, Summary

# A supervisor that has not rewritten summary.json for this long is gone.
SILENT_AFTER_S = 30.0

# The gates an item meets in order, and the summary count of items each one
# removed (summary.json "counts", gra.rundir.COUNT_KEYS).
GATES = (
    ("instruction checks", "rejected_instruction_check"),
    ("scores", "rejected_score"),
    ("adjudication", "rejected_adjudication"),
    ("verification", "rejected_verification"),
    ("dedup", "deduplicated"),
)


def _share(value: float) -> float | None:
    """A fraction or a rate that can be drawn: finite and not negative."""
    return value if value == value and value >= 0 else None


@dataclass(frozen=True)
class FunnelRow:
    gate: str
    removed: int | None  # items this gate turned away; None for the first and last rows
    left: int


def funnel(counts: Mapping[str, int]) -> list[FunnelRow]:
    """Items generated, what each gate removed and what was left after it, then accepted.

    What is left after the last gate and not yet accepted is still in review or failed.
    """
    left = max(0, counts.get("generated", 0))
    rows = [FunnelRow("generated", None, left)]
    for gate, key in GATES:
        removed = max(0, counts.get(key, 0))
        left = max(0, left - removed)
        rows.append(FunnelRow(gate, removed, left))
    rows.append(FunnelRow("accepted", None, max(0, counts.get("accepted", 0))))
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


def model_rows(summary: Summary) -> list[ModelRow]:
    """One row per model, from its agents, its usage and the supervisor's busy window."""
    agents: dict[str, list[AgentState]] = {}
    for agent in summary.agents.values():
        agents.setdefault(agent.model, []).append(agent)
    wall = max(0.0, summary.wall_seconds)
    rows = []
    for model in sorted(set(agents) | set(summary.models)):
        own = agents.get(model, [])
        live = [a for a in own if a.alive]
        spent = summary.models.get(model)
        seconds = max(0.0, spent.seconds) if spent else 0.0
        all_slots = sum(max(1, a.capacity) for a in own)
        completion = max(0, spent.completion_tokens) if spent else 0
        recent = summary.busy.models.get(model)
        rows.append(
            ModelRow(
                model=model,
                alive=len(live),
                agents=len(own),
                busy_slots=sum(max(0, a.in_flight) for a in live),
                slots=sum(max(0, a.capacity) for a in live),
                busy_recent=_share(recent) if recent is not None else None,
                busy_run=seconds / (wall * all_slots) if wall > 0 and all_slots else None,
                calls=max(0, spent.calls) if spent else 0,
                tokens_per_s=completion / seconds if seconds > 0 else None,
            )
        )
    return rows


def run_state(summary: Summary, now: float) -> str:
    age = now - summary.updated_at
    if not summary.running:
        return "stopped"
    if age >= SILENT_AFTER_S:
        return f"silent for {age:.0f}s (supervisor gone? continue with --resume)"
    return "running"


def run_ended(summary: Summary, now: float) -> bool:
    """The run stopped, or its supervisor went silent: nothing more will change."""
    return run_state(summary, now) != "running"


def state_line(summary: Summary, now: float) -> Text:
    target = "?" if summary.target is None else summary.target
    return Text.from_markup(
        f"[bold]{run_state(summary, now)}[/]  accepted {summary.count('accepted')}/"
        f"{target}  instances {summary.instances_finished}/"
        f"{summary.instances_started}  tasks in flight "
        f"{summary.in_flight_tasks}, pending {summary.pending_tasks}  "
        f"retries {summary.retries}  agents lost {summary.agents_lost}  "
        f"bus drops {summary.bus.dropped_frames}"
    )


def funnel_table(summary: Summary) -> RenderableType:
    """The funnel, and under it what no gate decided: adjudicated, failed, in progress."""
    table = Table("funnel", "out", "left", box=None, padding=(0, 1))
    table.columns[1].justify = table.columns[2].justify = "right"
    for row in funnel(summary.counts):
        removed = f"-{row.removed}" if row.removed else ""
        style = "bold green" if row.gate == "accepted" else None
        table.add_row(row.gate, removed, str(row.left), style=style)
    aside = Text(
        f" adjudicated {summary.count('adjudicated')} · failed {summary.count('failed')}"
        f" · in progress {summary.instances_unfinished}",
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


def models_table(summary: Summary) -> Table:
    window = summary.busy.window_s
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


def agents_table(summary: Summary) -> Table:
    table = Table(
        "agent", "model", "node", "health", "tasks", "done", "failed", "restarts", "heard"
    )
    for agent_id, agent in sorted(summary.agents.items()):
        health = "[green]alive[/]" if agent.alive else "[red]dead[/]"
        table.add_row(
            agent_id,
            agent.model,
            _node_cell(agent),
            health,
            f"{agent.in_flight}/{agent.capacity}",
            str(agent.completed),
            str(agent.failed),
            str(agent.restarts),
            f"{agent.seconds_since_heard:.1f}s ago",
        )
    return table


def _node_cell(agent: AgentState) -> str:
    """Where the agent runs: its host, and the cluster node (first 8 of its id) when placed."""
    host, node = agent.host, agent.node
    return f"{host} {node[:8]}".strip() if node else host or "-"


def fleet_view(summary: Summary) -> RenderableType:
    """The funnel beside the models (one above the other on a narrow terminal)."""
    return Columns([funnel_table(summary), models_table(summary)], padding=(0, 4))


def status_view(summary: Summary, now: float) -> RenderableType:
    """What `gra status` shows: the state line, the funnel and models, the agents."""
    return Group(state_line(summary, now), Text(""), fleet_view(summary), agents_table(summary))
