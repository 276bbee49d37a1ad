"""One `gra run`: from a config file to a finished output directory."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import structlog
from rich.console import RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gra.bus.endpoints import private_ipc_endpoint
from gra.bus.security import SUPERVISOR, create_keys
from gra.config import (
    AgentConfig,
    AgentSettings,
    Config,
    ConfigError,
    SeedSettings,
    require_role,
)
from gra.data.seeds import read_seeds
from gra.errors import SummaryError
from gra.models import resolve
from gra.report import refreshing_report, write_report_quietly
from gra.rundir import JOURNAL, SUMMARY, Summary, decode_summary, log_dir, write_summary
from gra.status_view import fleet_view
from gra.supervisor.conductor import Conductor
from gra.supervisor.conductor import Progress as RunProgress
from gra.supervisor.launcher import AgentSpec, Launcher, LocalLauncher
from gra.supervisor.outdir_lock import OutputDirError, usable_out_dir
from gra.supervisor.resume import ResumePoint, check_target_open, load_resume_point

log = structlog.get_logger("gra.job")


@dataclass(frozen=True)
class JobOptions:
    config_path: Path
    out_dir: Path
    resume: bool = False
    target: int | None = None
    show_progress: bool = True
    skip_bad_rows: bool = False
    # review / refine: judge the pairs in ``input`` instead of generating.
    mode: Literal["generate", "review", "refine"] = "generate"
    input: Path | None = None


def default_out_dir(config: Config, config_path: Path) -> Path:
    if config.run.out:
        return config.resolve(config.run.out)
    return Path("runs") / config_path.stem


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "agent"


LOCAL_AGENT_KEY = "local"


def agent_specs(config: Config) -> list[AgentSpec]:
    """One spec per local agent process; model files are resolved and verified here, once.

    With CURVE on, local agents share one key, ``local``, made on first use; on
    a Ray cluster the launcher hands out a key of its own, and a llama.cpp
    agent's threads default to the CPUs its entry reserves there.
    """
    cluster = config.launcher.kind == "ray"
    if config.bus.curve_keys and not cluster:
        create_keys(config.resolve(config.bus.curve_keys), [LOCAL_AGENT_KEY])
    local = [a for a in config.agents if not a.remote]
    llama_processes = sum(a.replicas for a in local if a.backend == "llamacpp")
    threads = max(1, (os.cpu_count() or 2) // max(1, llama_processes))
    specs = []
    for entry in local:
        if cluster:
            threads = max(1, int(entry.num_cpus or 1))
        settings = _agent_settings(config, entry, threads, curve=not cluster)
        for replica in range(entry.replicas):
            agent_id = _safe_id(f"{entry.model_id}-{replica}")
            specs.append(AgentSpec(msgspec.structs.replace(settings, agent_id=agent_id)))
    return specs


def _agent_settings(
    config: Config, entry: AgentConfig, threads: int, *, curve: bool = True
) -> AgentSettings:
    """``entry`` as its agents receive it; ``connect`` and ``agent_id`` are filled in later."""
    model_path = None
    if entry.backend == "llamacpp":
        model_path = str(resolve(entry.model, Path(config.base_dir)))
        entry = msgspec.structs.replace(entry, n_threads=entry.n_threads or threads)
    keys = config.resolve(config.bus.curve_keys) if config.bus.curve_keys and curve else None
    return AgentSettings(
        connect="",
        agent_id=entry.model_id,
        entry=entry,
        output_retries=config.limits.output_retries,
        model_path=model_path,
        curve_secret=str(keys / "agents" / f"{LOCAL_AGENT_KEY}.key_secret") if keys else None,
        server_key=str(keys / f"{SUPERVISOR}.key") if keys else None,
    )


def prepare_out_dir(out_dir: Path, resume: bool) -> None:
    journal = out_dir / JOURNAL
    if not resume and journal.exists() and journal.stat().st_size > 0:
        raise OutputDirError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    usable_out_dir(out_dir)
    usable_out_dir(log_dir(out_dir))
    probe = out_dir / ".write-test"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(f"{out_dir}: not writable: {exc.strerror}") from exc


async def run_job(config: Config, options: JobOptions) -> Summary:
    if options.target is not None:
        config = msgspec.structs.replace(
            config, run=msgspec.structs.replace(config.run, target=options.target)
        )
    needed = {"generate": "generator", "refine": "refiner"}.get(options.mode)
    if needed:
        require_role(config, options.config_path, needed)
    if options.mode == "generate":
        if config.seeds is None:
            raise ConfigError(f"{options.config_path}: missing [seeds] section (seeds.path)")
        path, settings = config.resolve(config.seeds.path), config.seeds
    else:
        assert options.input is not None
        path, settings = options.input, config.seeds or SeedSettings(path=str(options.input))
    seed_set = read_seeds(
        path, settings, skip_bad_rows=options.skip_bad_rows or settings.skip_bad_rows
    )
    for reason in seed_set.skipped:
        log.warning("seed_row_skipped", reason=reason)
    if seed_set.skipped:
        print(f"gra: skipped {len(seed_set.skipped)} bad rows of {path}", file=sys.stderr)
    seeds = seed_set.items
    if config.launcher.kind == "ray":
        from gra.supervisor.ray_launcher import cluster_bus

        config = cluster_bus(config)
    specs = agent_specs(config)
    if options.mode == "generate" and config.dedup.enabled:
        from gra.data.dedup import check_model

        check_model()  # before anything is written, not after the first round
    prepare_out_dir(options.out_dir, options.resume)
    resume_point = _resume_point(config, options) if options.resume else None
    endpoint = config.bus.endpoint or private_ipc_endpoint()
    expected_remote = sum(a.replicas for a in config.agents if a.remote)
    launcher: Launcher
    if config.launcher.kind == "ray":
        from gra.supervisor.ray_launcher import RayLauncher

        launcher = RayLauncher(config, specs, log_dir(options.out_dir))
    else:
        launcher = LocalLauncher(log_dir(options.out_dir))
    with _progress_display(options.show_progress, options.out_dir) as update:
        conductor = Conductor(
            config,
            seeds,
            options.out_dir,
            endpoint,
            launcher,
            specs,
            config_path=str(options.config_path),
            resume=resume_point,
            expected_remote=expected_remote,
            on_progress=update,
            mode=options.mode,
        )
        async with refreshing_report(options.out_dir):
            summary = await conductor.run()
    summary = msgspec.structs.replace(summary, seed_rows_skipped=len(seed_set.skipped))
    write_summary(options.out_dir, summary)
    # The page a person opens first; a failure to draw it never fails the run.
    write_report_quietly(options.out_dir, config=config, seeds=seeds)
    return summary


def _resume_point(config: Config, options: JobOptions) -> ResumePoint:
    """The run to carry on; ``TargetAlreadyMet`` when its last round needs nothing more."""
    if options.mode != "generate":
        return load_resume_point(options.out_dir)
    point = load_resume_point(options.out_dir, config.run.rounds)
    check_target_open(point, config.run.target, config.run.rounds)
    return point


class _FleetProgress(Progress):
    """The progress bar with the funnel and each model's busy fraction under it."""

    fleet: RenderableType | None = None

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.fleet is not None:
            yield self.fleet


class _progress_display:
    """A rich progress bar of accepted items, or nothing when not wanted.

    Under the bar, the funnel and the models as `gra status` draws them, from
    the summary.json the conductor rewrites every two seconds: re-read when it
    changes, at most once a second.
    """

    def __init__(self, enabled: bool, out_dir: Path) -> None:
        self._summary_path = out_dir / SUMMARY
        self._summary_seen = (0, 0)  # (mtime_ns, size) of the summary drawn
        self._summary_read_at = 0.0
        self._progress = (
            _FleetProgress(
                TextColumn("[bold]accepted"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            if enabled
            else None
        )
        self._task: Any = None

    def __enter__(self) -> Any:
        if self._progress is None:
            return None
        self._progress.start()
        self._task = self._progress.add_task("run", total=None, detail="starting the fleet")
        return self._update

    def _update(self, p: RunProgress) -> None:
        assert self._progress is not None
        self._progress.update(
            self._task,
            completed=p.accepted,
            total=p.target,
            detail=(
                f"instances {p.finished}/{p.started} (max {p.max_instances}) "
                f"agents {p.agents_alive} tasks {p.in_flight_tasks}"
            ),
        )
        now = time.monotonic()
        if now - self._summary_read_at >= 1.0:
            self._summary_read_at = now
            self._draw_summary()

    def _draw_summary(self) -> None:
        """The fleet view of summary.json if it changed; a missing or torn one is skipped."""
        assert self._progress is not None
        try:
            stat = self._summary_path.stat()
            if (stat.st_mtime_ns, stat.st_size) == self._summary_seen:
                return
            summary = decode_summary(self._summary_path.read_bytes(), self._summary_path)
        except (OSError, SummaryError):
            return
        self._summary_seen = (stat.st_mtime_ns, stat.st_size)
        self._progress.fleet = fleet_view(summary)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._draw_summary()  # the conductor's last summary: the final counts
            self._progress.stop()


def run_sync(config: Config, options: JobOptions) -> Summary:
    return asyncio.run(run_job(config, options))
