"""The real Conductor over simulated remote agents, against the theoretical bound.

The simulated agents (``doubles.py``, many per process) speak the real wire
protocol and answer after a fixed service time, so the bound no scheduler can
beat follows from the settings (``SchedulerSettings.bounds``), and the run is
judged against it. The supervisor is watched through its journal observer hook
(``SchedulerObserver``), never patched; its memory is sampled as instances
finish and judged flat from 10% in.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.doubles import NullLauncher
from benchmarks.harness import (
    Check,
    format_table,
    machine_info,
    memory_parts,
    reap,
    rss_bytes,
    spawn_double,
    utc_stamp,
)
from gra.bus.endpoints import private_ipc_endpoint
from gra.rundir import Summary
from gra.supervisor.journal import Entry, InstanceFinished, InstanceStarted

if TYPE_CHECKING:
    from gra.supervisor.conductor import Conductor


@dataclass(frozen=True)
class SchedulerSettings:
    """One scheduler run: the simulated fleet, its service time, the job's size;
    everything the bound is computed from."""

    name: str = "main"
    instances: int = 3_000
    models: int = 4
    agents_per_model: int = 8
    capacity: int = 4
    service_s: float = 0.1
    reviewers: int = 3
    # gra's default: every accepted item is annotated (keywords, summary) by a random model.
    enrich: bool = True
    # Instances in progress, as a multiple of what the capacity can keep busy
    # with no queueing (stages x capacity / tasks per instance); above 1 keeps a backlog.
    in_flight_factor: float = 2.0
    max_in_flight: int | None = None
    # Processes hosting the simulated agents (default: one per 500 agents).
    processes: int | None = None
    # Sample the supervisor's RSS every this many finished instances.
    rss_every: int | None = None
    heartbeat_s: float = 1.0
    item_bytes: int = 600
    # Diagnose memory growth between 10% and 90% of the instances: a census of
    # the supervisor's objects by type and of the conductor's containers by length,
    # taken at both points (a pause of a fraction of a second each); with
    # ``trace_frames`` > 0, also tracemalloc from the first point (slows the
    # supervisor, enough to lose agents of a large fleet on a busy machine).
    trace_memory: bool = False
    trace_frames: int = 0
    # Stop the run (as if the target were reached) after this long; rates stay valid.
    # Checked whenever the conductor journals or waits, so an overloaded one overshoots.
    time_limit_s: float | None = None

    @property
    def agents(self) -> int:
        return self.models * self.agents_per_model

    @property
    def host_processes(self) -> int:
        return self.processes or max(1, math.ceil(self.agents / 500))

    @property
    def rss_interval(self) -> int:
        return self.rss_every or max(1, self.instances // 50)

    @property
    def committee(self) -> int:
        return max(1, min(self.reviewers, self.models - 1))

    @property
    def tasks_per_instance(self) -> int:
        return 1 + self.committee + int(self.enrich)

    @property
    def stages(self) -> int:
        """Service times one instance takes at least: generate, review, (annotate)."""
        return 2 + int(self.enrich)

    @property
    def total_capacity(self) -> int:
        return self.agents * self.capacity

    @property
    def in_flight(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(
            1,
            math.ceil(
                self.in_flight_factor * self.stages * self.total_capacity / self.tasks_per_instance
            ),
        )

    def bounds(self) -> dict[str, float]:
        """Items/s no scheduler can beat: capacity-bound, and bound by instances in flight.

        Every instance is one generate, then ``committee`` parallel reviews, then
        (with ``enrich``) one annotation, each taking ``service_s``; every review
        scores 9, so nothing is adjudicated or rejected. All models serve all
        roles with equal capacity, so uniform draws spread the load evenly and the
        whole capacity is usable.
        """
        capacity = self.total_capacity / (self.service_s * self.tasks_per_instance)
        in_flight = self.in_flight / (self.stages * self.service_s)
        return {"capacity": capacity, "in_flight": in_flight, "bound": min(capacity, in_flight)}


QUICK_SCHEDULER = (
    SchedulerSettings(instances=3_000, time_limit_s=30),
    SchedulerSettings(
        name="many_agents",
        # Long enough for many instance lifetimes: instances finish in waves at
        # first, and a short window over them over- or under-states the rate.
        instances=2_000,
        agents_per_model=50,
        capacity=1,
        service_s=0.5,
        time_limit_s=20,
    ),
)
FULL_SCHEDULER = (
    SchedulerSettings(instances=100_000, time_limit_s=1_800),
    SchedulerSettings(
        name="many_agents",
        # 150 s: the drain after the last generation (2 service times, when agents
        # run out of work) is ~1% of the whole run, and libzmq's per-peer chunks
        # are mostly allocated by 10% in.
        instances=30_000,
        agents_per_model=250,
        capacity=1,
        service_s=1.0,
        time_limit_s=400,
    ),
)

_SEED_DOMAINS = ("coding", "math", "writing", "science")


def _write_job(settings: SchedulerSettings, directory: Path) -> Path:
    seeds = directory / "seeds.jsonl"
    with seeds.open("w") as handle:
        for i in range(16):
            row = {
                "id": f"seed-{i:02d}",
                "domain": _SEED_DOMAINS[i % len(_SEED_DOMAINS)],
                "instruction": f"Write a function that returns the {i}-th square number.",
                "response": f"def square_{i}(n):\n    return n * n",
                # Annotated already, so the run goes straight to generation.
                "keywords": ["squares", "functions", f"n{i}"],
                "summary": "Square a number.",
            }
            handle.write(json.dumps(row) + "\n")
    lines = [
        "[run]",
        f"target = {settings.instances}",
        f"max_instances = {settings.instances}",
        f"max_in_flight = {settings.in_flight}",
        "seed = 0",
        "[seeds]",
        'path = "seeds.jsonl"',
        "[protocol]",
        f"reviewers = {settings.reviewers}",
        "[limits]",
        "startup_timeout_s = 120",
        "[bus]",
        f"heartbeat_interval_s = {settings.heartbeat_s}",
        "heartbeat_misses = 5",
        "[dedup]",
        "enabled = false",
        "[annotate]",
        f"enrich = {'true' if settings.enrich else 'false'}",
    ]
    for m in range(settings.models):
        lines += ["[[agents]]", f'model = "sim-{m}"', "remote = true"]
        lines += [f"replicas = {settings.agents_per_model}"]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class SchedulerObserver:
    """Times instance starts and finishes exactly, as the conductor journals them.

    It watches through the conductor's observer hook (``Conductor.add_observer``:
    called with each journal entry right after it is written), so the conductor
    runs as it does in ``gra run``. It keeps O(1) state per entry, plus one
    memory sample every ``every`` finished instances: anything that grew per
    instance would itself show up in the supervisor's RSS.
    """

    def __init__(
        self,
        conductor: Conductor,
        t0: float,
        every: int,
        limit_s: float | None = None,
        snapshot_at: Sequence[int] = (),
        trace_frames: int = 0,
    ) -> None:
        self.t0 = t0
        self.every = every
        # The time limit is checked here too: the watcher task starves while the
        # conductor's main loop has a backlog, but every result it handles is journaled.
        self._deadline = t0 + limit_s if limit_s else math.inf
        self._stop = conductor.request_stop
        self.time_limit_hit = False
        self.first_start: float | None = None
        self.last_finish: float | None = None
        self.finished = 0
        self.curve: list[dict[str, float]] = [{"finished": 0, "t": 0.0, **memory_parts()}]
        # Memory censuses taken when these many instances have finished.
        self._conductor = conductor
        self._snapshot_at = set(snapshot_at)
        self._trace_frames = trace_frames
        self.snapshots: list[dict[str, Any]] = []
        conductor.add_observer(self.on_entry)

    def on_entry(self, entry: Entry) -> None:
        """One journal entry, just written by the conductor."""
        if not self.time_limit_hit and time.monotonic() > self._deadline:
            self.time_limit_hit = True
            self._stop()
        kind = type(entry)
        if kind is InstanceFinished:
            self.finished += 1
            self.last_finish = now = time.monotonic() - self.t0
            if self.finished % self.every == 0:
                self.curve.append({"finished": self.finished, "t": now, **memory_parts()})
            if self.finished in self._snapshot_at:
                self.snapshots.append(
                    memory_census(self._conductor, self.finished, self._trace_frames)
                )
        elif kind is InstanceStarted and self.first_start is None:
            self.first_start = time.monotonic() - self.t0

    def steady_rate(self) -> float:
        """Instances/s between 10% and 90% of those finished: no ramp-up, no tail."""
        n = self.finished
        lo = next((c for c in self.curve if c["finished"] >= 0.1 * n), None)
        hi = next((c for c in reversed(self.curve) if c["finished"] <= 0.9 * n), None)
        if lo is None or hi is None or hi["t"] <= lo["t"]:
            return 0.0
        return (hi["finished"] - lo["finished"]) / (hi["t"] - lo["t"])


async def _watch(conductor: Conductor, peaks: dict[str, int], limit_s: float | None) -> None:
    """Peaks of the conductor's queues; past ``limit_s`` the run is stopped (resumable)."""
    deadline = time.monotonic() + limit_s if limit_s else math.inf
    while True:
        peaks["pending_tasks"] = max(peaks["pending_tasks"], len(conductor.core.pending))
        peaks["in_flight_tasks"] = max(peaks["in_flight_tasks"], len(conductor.core.inflight))
        if time.monotonic() > deadline and not peaks["time_limit_hit"]:
            peaks["time_limit_hit"] = 1
            conductor.request_stop()
        await asyncio.sleep(0.05)


def build_conductor(settings: SchedulerSettings, directory: Path) -> Conductor:
    """The measured supervisor: gra's real Conductor on a job written into
    ``directory`` (outputs in ``directory/out``) whose agents are all remote."""
    from gra.config import load_config
    from gra.data.seeds import load_seeds
    from gra.supervisor.conductor import Conductor

    (directory / "out").mkdir(parents=True)
    config_path = _write_job(settings, directory)
    config = load_config(config_path)
    assert config.seeds is not None
    seeds = load_seeds(config.resolve(config.seeds.path), config.seeds)
    return Conductor(
        config,
        seeds,
        directory / "out",
        private_ipc_endpoint("bench-supervisor"),
        NullLauncher(),
        [],
        config_path=str(config_path),
        expected_remote=settings.agents,
    )


def start_sim_hosts(
    settings: SchedulerSettings, endpoint: str, directory: Path
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """The simulated fleet joining ``endpoint``, spread over ``host_processes``
    processes; each writes what it served to its report file when it stops."""
    agents = [
        [f"sim-{m}-{i:04d}", f"sim-{m}"]
        for i in range(settings.agents_per_model)
        for m in range(settings.models)
    ]
    n_processes = settings.host_processes
    reports = [directory / f"sim-{p}.json" for p in range(n_processes)]
    hosts = [
        spawn_double(
            "sim-agents",
            {
                "endpoint": endpoint,
                "agents": agents[p::n_processes],
                "capacity": settings.capacity,
                "service_s": settings.service_s,
                "heartbeat_s": settings.heartbeat_s,
                "item_bytes": settings.item_bytes,
                "report": str(reports[p]),
            },
            directory / f"sim-{p}.stderr",
        )
        for p in range(n_processes)
    ]
    return hosts, reports


async def _scheduler_run(settings: SchedulerSettings, workdir: Path) -> dict[str, Any]:
    directory = workdir / settings.name
    conductor = build_conductor(settings, directory)
    rss_start = rss_bytes()
    t0 = time.monotonic()
    snapshot_at: tuple[int, ...] = ()
    if settings.trace_memory:
        snapshot_at = (max(1, settings.instances // 10), max(2, settings.instances * 9 // 10))
    observer = SchedulerObserver(
        conductor,
        t0,
        settings.rss_interval,
        settings.time_limit_s,
        snapshot_at,
        settings.trace_frames,
    )
    hosts, reports = start_sim_hosts(settings, conductor.endpoint, directory)
    peaks = {"pending_tasks": 0, "in_flight_tasks": 0, "inbox": 0, "time_limit_hit": 0}
    watcher = asyncio.create_task(_watch(conductor, peaks, settings.time_limit_s))
    cpu0 = time.process_time()
    try:
        summary = await conductor.run()
    finally:
        peaks["inbox"] = conductor.inbox_peak
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        cpu = time.process_time() - cpu0
        t_end = time.monotonic() - t0
        reap(hosts, 10.0)
        if settings.trace_memory:
            import tracemalloc

            tracemalloc.stop()  # a no-op if it never started
    sims = [json.loads(p.read_text()) for p in reports if p.exists()]
    # Committee-accepted items of an unfinished round (a time-limited run) are candidates.
    accepted = summary.count("accepted") + conductor.core.source.accepted()
    report = scheduler_report(
        settings,
        summary,
        observer,
        peaks,
        {
            "returned_s": t_end,
            "supervisor_cpu_s": cpu,
            "rss_start": rss_start,
            "accepted": accepted,
        },
        sims,
    )
    if settings.trace_memory:
        report["memory_growth"] = memory_growth(observer.snapshots)
    return report


def _container_sizes(root: Any, prefix: str, depth: int, out: dict[str, int]) -> None:
    """len() of every container attribute of ``root``, and of their attributes' down
    to ``depth`` levels: which structure holds a per-instance entry shows by name."""
    try:
        attributes = vars(root)
    except TypeError:
        attributes = {
            slot: getattr(root, slot)
            for cls in type(root).__mro__
            for slot in getattr(cls, "__slots__", ())
            if isinstance(slot, str) and hasattr(root, slot)
        }
    for name, value in attributes.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict | list | set | frozenset | tuple | asyncio.Queue):
            out[key] = value.qsize() if isinstance(value, asyncio.Queue) else len(value)
            if isinstance(value, dict) and value and depth > 0:
                # One entry's containers too (e.g. per-agent or per-model lists).
                sample = next(iter(value.values()))
                if not isinstance(sample, int | float | str | bytes):
                    inner: dict[str, int] = {}
                    _container_sizes(sample, "", 0, inner)
                    for k in inner:
                        out[f"{key}[*].{k}"] = sum(
                            len(c) if hasattr(c, "__len__") else 0
                            for c in (getattr(e, k, None) for e in list(value.values())[:100_000])
                            if c is not None
                        )
        elif depth > 0 and hasattr(value, "__dict__") and not isinstance(value, type):
            _container_sizes(value, f"{key}.", depth - 1, out)


def memory_census(conductor: Any, finished: int, trace_frames: int = 0) -> dict[str, Any]:
    """The supervisor's memory at one point: RSS, live objects by type (gc), the
    conductor's containers by length, and a tracemalloc snapshot when asked."""
    import gc

    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    sizes: dict[str, int] = {}
    _container_sizes(conductor, "", 2, sizes)
    # The run's state lives in the scheduling core the conductor drives.
    _container_sizes(conductor.core, "core.", 2, sizes)
    snapshot = None
    if trace_frames > 0:
        import tracemalloc

        # Tracing starts at the first point: what is still held at the last is
        # what the run kept, and the fleet's start is not slowed.
        if not tracemalloc.is_tracing():
            tracemalloc.start(trace_frames)
        snapshot = tracemalloc.take_snapshot()
    return {
        "finished": finished,
        "rss": rss_bytes(),
        "types": types,
        "sizes": sizes,
        "tracemalloc": snapshot,
    }


def memory_growth(censuses: Sequence[dict[str, Any]], top: int = 15) -> dict[str, Any]:
    """What grew between the first and the last census, per instance finished in
    between: object counts by type, the conductor's containers by length, and
    (when traced) Python bytes by allocating line; set against the RSS growth over
    the same instances, whose remainder is native (libzmq, the allocator)."""
    if len(censuses) < 2:
        return {"censuses": len(censuses), "types": [], "containers": []}
    first, last = censuses[0], censuses[-1]
    instances = max(1, last["finished"] - first["finished"])
    types = [
        {"type": name, "count_diff": diff, "per_instance": round(diff / instances, 4)}
        for name, diff in sorted(
            ((n, last["types"].get(n, 0) - first["types"].get(n, 0)) for n in last["types"]),
            key=lambda item: -abs(item[1]),
        )[:top]
        if diff
    ]
    containers = [
        {
            "container": name,
            "length_first": first["sizes"].get(name, 0),
            "length_last": length,
            "per_instance": round((length - first["sizes"].get(name, 0)) / instances, 4),
        }
        for name, length in sorted(
            last["sizes"].items(),
            key=lambda item: -abs(item[1] - first["sizes"].get(item[0], 0)),
        )[:top]
        if length != first["sizes"].get(name, 0)
    ]
    result: dict[str, Any] = {
        "between_finished": [first["finished"], last["finished"]],
        "rss_bytes_grown": last["rss"] - first["rss"],
        "rss_bytes_per_instance": round((last["rss"] - first["rss"]) / instances, 2),
        "types": types,
        "containers": containers,
    }
    if first["tracemalloc"] is not None and last["tracemalloc"] is not None:
        stats = last["tracemalloc"].compare_to(first["tracemalloc"], "lineno")
        grown = sum(stat.size_diff for stat in stats)
        result["python_bytes_per_instance"] = round(grown / instances, 2)
        result["by_line"] = [
            {
                "allocated_at": f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}",
                "size_diff": stat.size_diff,
                "count_diff": stat.count_diff,
                "bytes_per_instance": round(stat.size_diff / instances, 2),
            }
            for stat in sorted(stats, key=lambda stat: stat.size_diff, reverse=True)[:top]
        ]
    return result


def scheduler_report(
    settings: SchedulerSettings,
    summary: Summary,
    observer: SchedulerObserver,
    peaks: dict[str, int],
    run: dict[str, float],
    sims: list[dict[str, float]],
) -> dict[str, Any]:
    """One run's figures from what the observer timed, the conductor's summary and
    the simulated hosts' reports: rates against the bounds, memory, counts."""
    n = observer.finished
    steady = observer.steady_rate()
    bounds = settings.bounds()
    curve = observer.curve
    # Flatness is judged from 10% of the run (after warm-up) to its last instance.
    base = next((c for c in curve[1:] if c["finished"] >= 0.1 * n), None)
    last = curve[-1]
    growth = (last["rss"] - base["rss"]) / base["rss"] if base and last is not base else None
    tail = [c for c in curve if base and c["finished"] >= base["finished"]]
    slope = _slope([c["finished"] for c in tail], [c["rss"] for c in tail])
    # Each part of the memory, from 10% in to the end, per instance finished.
    span = last["finished"] - base["finished"] if base else 0
    parts_growth = {
        key: round((last[key] - base[key]) / span, 2)
        for key in last
        if base and span > 0 and key in base and key not in ("finished", "t")
    }
    latency = settings.stages * settings.service_s
    whole_bound = n / (n / bounds["bound"] + latency) if n else bounds["bound"]
    first, done = observer.first_start, observer.last_finish
    busy = done - first if first is not None and done is not None else 0.0
    return {
        "name": settings.name,
        "settings": asdict(settings)
        | {
            "agents": settings.agents,
            "host_processes": settings.host_processes,
            "max_in_flight": settings.in_flight,
            "tasks_per_instance": settings.tasks_per_instance,
            "stages": settings.stages,
            "total_capacity": settings.total_capacity,
        },
        "bounds_items_per_s": {k: round(v, 2) for k, v in bounds.items()},
        "achieved_items_per_s": round(steady, 2),
        "achieved_over_bound": round(steady / bounds["bound"], 4),
        # The whole run: first instance started to last finished (ramp and tail in).
        "overall_items_per_s": round(n / busy, 2) if busy > 0 else 0.0,
        "overall_over_bound": round(n / busy / bounds["bound"], 4) if busy > 0 else 0.0,
        # What no scheduler beats over a whole run of n instances: none finishes
        # before one instance's latency (its stages) has passed, then the bound.
        "whole_run_bound": round(whole_bound, 2),
        "overall_over_whole_run_bound": round(n / busy / whole_bound, 4) if busy > 0 else 0.0,
        "fleet_ready_s": None if first is None else round(first, 3),
        "instances_done_s": None if done is None else round(done, 3),
        "run_returned_s": round(run["returned_s"], 3),
        # Post-processing of the round (dedup is off: writing the accepted files) and shutdown.
        "end_of_round_s": None if done is None else round(run["returned_s"] - done, 3),
        "supervisor_cpu_s": round(run["supervisor_cpu_s"], 2),
        "supervisor_cpu_share": round(run["supervisor_cpu_s"] / run["returned_s"], 3),
        "sim_hosts_cpu_s": round(sum(s.get("cpu_s", 0.0) for s in sims), 2),
        "time_limit_hit": bool(peaks["time_limit_hit"]) or observer.time_limit_hit,
        "max_inbox": peaks["inbox"],
        "max_pending_tasks": peaks["pending_tasks"],
        "max_in_flight_tasks": peaks["in_flight_tasks"],
        "rss_start": run["rss_start"],
        "rss_after_run": rss_bytes(),
        "rss_every": observer.every,
        "rss_at_warmup": base["rss"] if growth is not None and base else None,
        # The sample flatness is judged from (10% in), every part of it.
        "memory_at_warmup": base if growth is not None and base else None,
        "rss_growth_after_warmup": None if growth is None else round(growth, 4),
        "rss_bytes_per_instance": None if math.isnan(slope) else round(slope, 3),
        # rss, py_blocks (a count), malloc_in_use, malloc_free: last minus 10% in.
        "memory_growth_per_instance": parts_growth,
        "rss_curve": [c | {"t": round(c["t"], 3)} for c in curve],
        "counts": summary.counts,
        "accepted": int(run["accepted"]),
        "instances_finished": observer.finished,
        "instances_unfinished": summary.instances_unfinished,
        "retries": summary.retries,
        "agents_lost": summary.agents_lost,
        "late_results_ignored": summary.late_results_ignored,
        "bus_dropped_frames": summary.bus.dropped_frames,
        "sim_agents": {
            "served": sum(int(s["served"]) for s in sims),
            "refused": sum(int(s["refused"]) for s in sims),
        },
    }


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope; a leak shows as bytes per instance."""
    if len(xs) < 2:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan


def scheduler_checks(runs: list[dict[str, Any]]) -> list[Check]:
    """The judged rows (whole-run rate, every instance accepted, flat memory) and the
    rates shown beside them, for every run."""
    checks = []
    for run in runs:
        s = run["settings"]
        bound = run["bounds_items_per_s"]["bound"]
        whole = run["overall_over_whole_run_bound"]
        latency = s["stages"] * s["service_s"]
        checks.append(
            Check(
                f"{run['name']}: items/s, whole run ({s['agents']} agents x {s['capacity']}, "
                f"{s['service_s']}s; bound incl. one instance's {latency:g}s latency)",
                f"{run['overall_items_per_s']:,.1f}",
                f"{run['whole_run_bound']:,.1f}",
                whole,
                ">= 0.95",
                whole >= 0.95,
            )
        )
        checks.append(
            Check(
                f"{run['name']}: items/s, whole run vs the steady bound",
                f"{run['overall_items_per_s']:,.1f}",
                f"{bound:,.1f}",
                run["overall_over_bound"],
                "(shown)",
                None,
            )
        )
        checks.append(
            Check(
                f"{run['name']}: items/s, 10%-90% of instances finished",
                f"{run['achieved_items_per_s']:,.1f}",
                f"{bound:,.1f}",
                run["achieved_over_bound"],
                "(shown)",
                None,
            )
        )
        accepted, finished = run["accepted"], run["instances_finished"]
        clean = accepted == finished > 0 and not run["retries"] and not run["agents_lost"]
        checks.append(
            Check(
                f"{run['name']}: accepted / finished"
                + (" (time limit)" if run["time_limit_hit"] else ""),
                str(accepted)
                + (
                    f" ({run['agents_lost']} agents lost, {run['retries']} retries)"
                    if run["agents_lost"] or run["retries"]
                    else ""
                ),
                str(finished),
                accepted / finished if finished else None,
                "all, no retries",
                clean,
            )
        )
        checks += memory_checks(run)
    return checks


# libzmq gives each pipe its messages in chunks of 256 (``message_pipe_granularity``)
# 64-byte ``zmq_msg_t``s, allocated as traffic crosses a chunk's end, and keeps one
# spare chunk: a peer's two pipes (in, out) settle at 4 chunks, 64 KiB, after about
# 512 messages each way (minutes, in a large fleet), then stay there. Measured:
# 61 KiB per peer in a 1,000-agent run that reached it (README, "Speed").
LIBZMQ_PEER_BYTES = 2 * 2 * 256 * 64


def memory_checks(run: dict[str, Any]) -> list[Check]:
    """Flatness from 10% in to the last instance, judged in every run: the blocks
    Python's allocator holds (every object gra keeps) strictly, the RSS with
    libzmq's per-peer allowance, which a run may reach before it ends."""
    start = run["memory_at_warmup"]
    if start is None:
        return []
    base, last = start["rss"], run["rss_curve"][-1]
    checks = []
    if "py_blocks" in last and "py_blocks" in start:
        blocks = last["py_blocks"] / start["py_blocks"]
        checks.append(
            Check(
                f"{run['name']}: Python heap blocks (gra's objects), last instance vs 10% in",
                f"{last['py_blocks']:,}",
                f"{start['py_blocks']:,}",
                blocks,
                "flat: <= 1.05",
                blocks <= 1.05,
            )
        )
    peers = run["settings"]["agents"]
    allowance = LIBZMQ_PEER_BYTES * peers
    grown = last["rss"] - base
    checks.append(
        Check(
            f"{run['name']}: RSS MiB, last instance vs 10% in",
            f"{last['rss'] / 2**20:.1f}",
            f"{base / 2**20:.1f}",
            last["rss"] / base,
            f"<= 1.05 + libzmq {allowance / 2**20:.1f} MiB ({peers} peers x 64 KiB)",
            grown <= 0.05 * base + allowance,
        )
    )
    return checks


def format_rss_curve(run: dict[str, Any], width: int = 40) -> str:
    """The RSS samples as text bars, so that a leak is visible at a glance."""
    curve = run["rss_curve"]
    if not curve:
        return ""
    top = max(c["rss"] for c in curve)
    low = min(c["rss"] for c in curve)
    if len(curve) < 2:
        return f"supervisor RSS, run {run['name']!r}: no instance finished, no curve"
    lines = [
        f"supervisor RSS, run {run['name']!r} (a sample every {run['rss_every']:,} instances):"
    ]
    step = max(1, len(curve) // 25)
    for c in curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else []):
        bar = "#" * max(1, round(width * (c["rss"] - low * 0.98) / max(1, top - low * 0.98)))
        lines.append(f"  {c['finished']:>8,}  {c['t']:>7.1f}s  {c['rss'] / 2**20:7.1f} MiB  {bar}")
    return "\n".join(lines)


async def _scheduler_benchmark(
    runs: Sequence[SchedulerSettings], workdir: Path
) -> list[dict[str, Any]]:
    from gra.logs import configure

    # As `gra run` does: every event to a JSON file, warnings to the console.
    configure(json_path=workdir / "supervisor.jsonl", level="warning", role="supervisor")
    results = []
    for settings in runs:
        results.append(await _scheduler_run(settings, workdir))
        await asyncio.sleep(0.5)  # let the previous fleet's processes go
    return results


def run_scheduler_benchmark(
    runs: Sequence[SchedulerSettings] = QUICK_SCHEDULER,
    *,
    workdir: Path | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """The real Conductor over simulated remote agents, against the theoretical bound."""
    started = time.monotonic()
    info = machine_info()
    base = workdir or Path(tempfile.mkdtemp(prefix="gra-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(_scheduler_benchmark(runs, base))
    finally:
        if not keep and workdir is None:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    info["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    checks = scheduler_checks(results)
    return {
        "benchmark": "scheduler",
        "machine": info,
        "utc": utc_stamp(),
        "workdir": str(base) if keep or workdir else None,
        "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
        "table": format_table(checks, "measured", "bound"),
        "passed": all(c.passed for c in checks if c.passed is not None),
        "runs": results,
        "wall_s": time.monotonic() - started,
    }


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def print_scheduler_report(report: dict[str, Any]) -> None:
    """The table, then per run what a reader needs to trust it: settings, bounds,
    timings, peaks and the RSS curve."""
    print(report["table"])
    for run in report["runs"]:
        s, b = run["settings"], run["bounds_items_per_s"]
        print(
            f"\n{run['name']}: {s['instances']:,} instances; {s['agents']} agents "
            f"({s['models']} models) in {s['host_processes']} process(es), capacity "
            f"{s['capacity']} each, service {s['service_s']}s, {s['tasks_per_instance']} tasks "
            f"per instance, max_in_flight {s['max_in_flight']}\n"
            f"  bound {b['bound']:,.1f}/s (capacity {b['capacity']:,.1f}, in flight "
            f"{b['in_flight']:,.1f}); whole run {run['overall_items_per_s']:,.1f}/s, "
            f"10%-90% {run['achieved_items_per_s']:,.1f}/s\n"
            f"  fleet ready {_secs(run['fleet_ready_s'])}, last instance "
            f"{_secs(run['instances_done_s'])}, end of round + shutdown "
            f"{_secs(run['end_of_round_s'])}; supervisor CPU "
            f"{run['supervisor_cpu_s']}s ({100 * run['supervisor_cpu_share']:.0f}% of wall), "
            f"simulated agents {run['sim_hosts_cpu_s']}s\n"
            f"  peaks: inbox {run['max_inbox']} inputs, pending tasks {run['max_pending_tasks']}, "
            f"in-flight tasks {run['max_in_flight_tasks']}"
            + ("; stopped at the time limit" if run["time_limit_hit"] else "")
            + "\n  RSS "
            + (
                f"{run['rss_bytes_per_instance']:+.1f} B/instance after warm-up, "
                if run["rss_bytes_per_instance"] is not None
                else ""
            )
            + f"{run['rss_after_run'] / 2**20:.1f} MiB after the run"
            + (
                "; from 10% in, per instance: "
                + ", ".join(f"{k} {v:+,.1f}" for k, v in run["memory_growth_per_instance"].items())
                if run["memory_growth_per_instance"]
                else ""
            )
        )
        print(format_rss_curve(run))
        growth = run.get("memory_growth")
        if growth and growth.get("between_finished"):
            n0, n1 = growth["between_finished"]
            print(
                f"  memory from {n0:,} to {n1:,} instances finished: RSS "
                f"{growth['rss_bytes_per_instance']:+,.1f} B/instance"
                + (
                    f", Python heap {growth['python_bytes_per_instance']:+,.1f} B/instance"
                    if "python_bytes_per_instance" in growth
                    else ""
                )
            )
            for row in growth["containers"][:6]:
                print(
                    f"    {row['container']}: {row['length_first']:,} -> {row['length_last']:,}"
                    f" ({row['per_instance']:+.3f}/instance)"
                )
            for row in growth["types"][:6]:
                print(f"    {row['type']} objects: {row['count_diff']:+,}")
            for row in growth.get("by_line", [])[:6]:
                print(f"    {row['bytes_per_instance']:+9,.1f} B/instance  {row['allocated_at']}")


__all__ = [
    "FULL_SCHEDULER",
    "LIBZMQ_PEER_BYTES",
    "QUICK_SCHEDULER",
    "SchedulerObserver",
    "SchedulerSettings",
    "build_conductor",
    "memory_checks",
    "print_scheduler_report",
    "run_scheduler_benchmark",
    "scheduler_checks",
    "scheduler_report",
    "start_sim_hosts",
]
