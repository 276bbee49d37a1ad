"""gra against a plain sequential loop, on one real vLLM server (CPU build).

The same job is done twice, back to back, against the same server: N GRA
instances (generate, review by the committee, adjudicate when the rules need
it, annotate accepted items), once by a real ``gra run`` whose agents use the
``vllm`` backend, once by a loop that makes the same role calls one at a time,
with gra's own prompts, schemas, sampling settings, protocol state machine and
HTTP client. It is the same job, call for call: the loop's k-th instance has
gra's id, domain and few-shot items, and each call the sampling seed gra's agent
uses for that seat and attempt (``gra.protocols.reproducible``); the report
counts the items that came out identical. Server start-up is left out of both
timings. The point is what gra's concurrency buys from vLLM's continuous
batching; the target is 3x.

gra needs at least two distinct models (no model may judge its own sample),
so the one converted checkpoint is served under several names (vLLM's
``--served-model-name`` takes several): every "model" here is the same weights.

    python benchmarks/bench_vllm.py                    # about 10 minutes on 2 cores
    python benchmarks/bench_vllm.py --instances 24 --max-in-flight 24 --capacity 8
                                                       # the README's row: about 41 minutes
    python benchmarks/bench_vllm.py --instances 3 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from gra.agents.roles import InvalidOutput, get_role
from gra.backends import OpenAIBackend
from gra.backends.base import Backend, BackendError
from gra.bench import Check, format_table, machine_info, utc_stamp, write_result
from gra.config import Config, SeedSettings, load_config
from gra.data.seeds import SeedItem, read_seeds
from gra.protocols.peer_review import (
    Adjudicate,
    Adjudicated,
    AdjudicatorDrawn,
    Annotate,
    AnnotatorDrawn,
    DrawAdjudicator,
    DrawAnnotator,
    Enriched,
    Failed,
    Generate,
    Generated,
    InstanceEvent,
    InstanceState,
    Outcome,
    ProtocolError,
    Review,
    Reviewed,
    TaskStep,
    draw_adjudicator,
    draw_roles,
)
from gra.protocols.reproducible import (
    draw_content,
    generation_instance_id,
    instance_rng,
    output_try_seed,
    step_seed,
)
from gra.protocols.roles import Example, Inspiration, ReviewRequest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEEDS = ROOT / "examples" / "seeds.jsonl"
TARGET = 3.0


@dataclass(frozen=True)
class Settings:
    instances: int = 5  # about 10 minutes in all on 2 cores
    # Served names of the one checkpoint: 3 gives the quickstart's shape,
    # a generator and a committee of the 2 others.
    models: int = 3
    # Per agent; with 3 agents, 9 requests in flight at most (vLLM gave 3.8x at 8).
    capacity: int = 3
    max_in_flight: int = 8
    # Concurrency of the server-alone phase (0: skipped), and its one-at-a-time requests.
    server_alone: int = 0
    server_alone_sequential: int = 6
    few_shot: int = 2
    seed: int = 7
    enrich: bool = True
    order: str = "gra-first"
    repeats: int = 1
    # None: gra's defaults. Both sides follow the config, so each stays the same job.
    output_retries: int | None = None
    task_retries: int | None = None

    def names(self) -> list[str]:
        return [f"qwen-0.5b-{chr(ord('a') + i)}" for i in range(self.models)]


# ---- the vLLM server's own counters ---------------------------------------------

GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")
COUNTERS = (
    "vllm:generation_tokens_total",
    "vllm:prompt_tokens_total",
    "vllm:request_success_total",
)


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each wanted series of a Prometheus text page over its labels.

    The server's counters are the ground truth for both phases: gra's summary
    leaves out results it ignored (reviews of an instance already decided).
    """
    wanted = set(GAUGES) | set(COUNTERS)
    totals = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in wanted:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


@dataclass
class Sample:
    t: float  # time.time(), comparable with gra's log timestamps
    running: float
    waiting: float


@dataclass
class MetricsPoller:
    """Samples the server's queue every ``every_s`` so each phase's real concurrency is known."""

    url: str
    every_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def scrape(self) -> dict[str, float]:
        return parse_metrics(httpx.get(f"{self.url}/metrics", timeout=10.0).text)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.wait(self.every_s):
                try:
                    m = parse_metrics(client.get(f"{self.url}/metrics").text)
                except httpx.HTTPError:
                    continue
                self.samples.append(Sample(time.time(), m[GAUGES[0]], m[GAUGES[1]]))

    def __enter__(self) -> MetricsPoller:
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def queue_stats(samples: Sequence[Sample], start: float, end: float) -> dict[str, float | None]:
    """Mean and peak of requests running (batched) and waiting at the server in [start, end]."""
    inside = [s for s in samples if start <= s.t <= end]
    if not inside:
        return {"running_mean": None, "running_max": None, "waiting_mean": None, "samples": 0}
    return {
        "running_mean": sum(s.running for s in inside) / len(inside),
        "running_max": max(s.running for s in inside),
        "waiting_mean": sum(s.waiting for s in inside) / len(inside),
        "samples": len(inside),
    }


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, int]:
    short = {
        "vllm:generation_tokens_total": "completion_tokens",
        "vllm:prompt_tokens_total": "prompt_tokens",
        "vllm:request_success_total": "requests",
    }
    return {short[k]: round(after[k] - before[k]) for k in COUNTERS}


# ---- phase 1: a real `gra run` ----------------------------------------------------


def write_config(settings: Settings, url: str, directory: Path) -> Path:
    """A `gra run` config: one vllm agent per served name, all on the one server."""
    lines = [
        "# Written by benchmarks/bench_vllm.py: every model is the same checkpoint,",
        "# served under several names.",
        "[run]",
        # target = max_instances: the run ends only when every instance has finished.
        f"target = {settings.instances}",
        f"max_instances = {settings.instances}",
        f"max_in_flight = {settings.max_in_flight}",
        f"few_shot = {settings.few_shot}",
        f"seed = {settings.seed}",
        "[seeds]",
        f"path = {json.dumps(str(SEEDS))}",
        "[dedup]",
        "enabled = false  # local embedding work, no server call: left out of both sides",
        "[annotate]",
        f"enrich = {'true' if settings.enrich else 'false'}",
        "[limits]",
        "task_deadline_s = 1200",
    ]
    if settings.output_retries is not None:
        lines.append(f"output_retries = {settings.output_retries}")
    if settings.task_retries is not None:
        lines.append(f"task_retries = {settings.task_retries}")
    for name in settings.names():
        lines += [
            "[[agents]]",
            f'model = "{name}"',
            'backend = "vllm"',
            f'url = "{url}"',
            f'served_model = "{name}"',
            f"capacity = {settings.capacity}",
        ]
    path = directory / "bench-vllm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _log_times(path: Path) -> dict[str, list[float]]:
    """Wall-clock times of the supervisor events that bound the run phase."""
    times: dict[str, list[float]] = {"fleet_ready": [], "instance_finished": [], "task_failed": []}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") in times:
            times[event["event"]].append(datetime.fromisoformat(event["timestamp"]).timestamp())
    return times


def _by_role(usage: Sequence[dict[str, Any]], key: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for model in usage:
        for role, numbers in model["roles"].items():
            totals[role] = totals.get(role, 0) + int(numbers[key])
    return totals


def run_gra_phase(
    settings: Settings, config: Path, out: Path, poller: MetricsPoller
) -> dict[str, Any]:
    before = poller.scrape()
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    ended = time.time()
    after = poller.scrape()
    if done.returncode != 0:
        raise RuntimeError(f"gra run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    times = _log_times(out / "logs" / "supervisor.jsonl")
    ready = times["fleet_ready"][0]
    last = max(times["instance_finished"])
    usage = list(summary["models"].values())
    return {
        "phase": "gra",
        "items": gra_items(out),
        "instances": summary["instances_finished"],
        "unfinished": summary["instances_unfinished"],
        "counts": summary["counts"],
        # The run phase: fleet registered to last instance finished.
        "seconds": last - ready,
        "process_seconds": ended - started,
        "fleet_start_seconds": ready - started,
        "calls": sum(m["calls"] for m in usage),
        "calls_by_role": _by_role(usage, "calls"),
        "completion_tokens_by_role": _by_role(usage, "completion_tokens"),
        # Attempts an agent gave up on (every output retry invalid), then retried or failed.
        "failed_attempts": len(times["task_failed"]),
        "completion_tokens_client": sum(m["completion_tokens"] for m in usage),
        "server": counter_delta(before, after),
        "queue": queue_stats(poller.samples, ready, last),
        "retries": summary["retries"],
        "late_results_ignored": summary["late_results_ignored"],
        "agents_lost": summary["agents_lost"],
        "out": str(out),
    }


# ---- phase 2: the same job, one request at a time ----------------------------------


@dataclass
class Tally:
    calls: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    ignored_calls: int = 0  # results the protocol no longer needed (instance decided)
    calls_by_role: dict[str, int] = field(default_factory=dict)
    invalid_by_role: dict[str, int] = field(default_factory=dict)
    truncated: int = 0  # invalid outputs that had hit max_tokens
    failed_attempts: int = 0  # every output retry invalid: gra's agent reports a TaskError
    moot_seconds: float = 0.0  # time spent on the ignored calls
    # A few rejected outputs, so a reader can see why a role keeps failing.
    invalid_samples: list[dict[str, Any]] = field(default_factory=list)

    def invalid(self, role: str, reason: str, finish_reason: str, text: str) -> None:
        self.invalid_by_role[role] = self.invalid_by_role.get(role, 0) + 1
        self.truncated += finish_reason == "length"
        if len(self.invalid_samples) < 4:
            self.invalid_samples.append(
                {"role": role, "finish_reason": finish_reason, "reason": reason[:300],
                 "text_head": text[:400], "text_tail": text[-200:]}
            )  # fmt: skip


async def _run_task(
    backend: Backend, state: InstanceState, step: TaskStep, config: Config, tally: Tally
) -> tuple[InstanceEvent, float]:
    """One task as a gra agent and the supervisor treat it: up to 1 + output_retries
    calls per attempt, 1 + task_retries attempts, then the instance fails; each call
    with the sampling seed gra's agent would use for it. Returns the event and the
    seconds its calls took."""
    role = get_role(step.role)
    messages = role.prompt(step.request)
    reason = ""
    seconds = 0.0
    for attempt in range(1, 2 + config.limits.task_retries):
        seed = step_seed(config.run.seed, state, step, attempt)
        for output_try in range(1 + config.limits.output_retries):
            sampling = dataclasses.replace(role.sampling, seed=output_try_seed(seed, output_try))
            started = time.perf_counter()
            try:
                completion = await backend.complete(messages, role.schema, sampling)
            except BackendError as exc:
                reason = f"backend error: {exc}"
                break
            finally:
                seconds += time.perf_counter() - started
            tally.calls += 1
            tally.calls_by_role[step.role] = tally.calls_by_role.get(step.role, 0) + 1
            tally.completion_tokens += completion.completion_tokens
            tally.prompt_tokens += completion.prompt_tokens
            try:
                output = role.parse(step.request, completion.text)
            except InvalidOutput as exc:
                reason = str(exc)
                tally.invalid(step.role, reason, completion.finish_reason, completion.text)
                continue
            match step:
                case Generate():
                    return Generated(step.model, output.item()), seconds
                case Review():
                    return Reviewed(step.model, output), seconds
                case Adjudicate():
                    return Adjudicated(step.model, output), seconds
                case Annotate():
                    return Enriched(step.model, output), seconds
        tally.failed_attempts += 1
    return Failed(f"{step.role} task failed; last: {reason[:300]}"), seconds


def new_instance(
    number: int, seeds: Sequence[SeedItem], names: Sequence[str], config: Config,
    role_rng: random.Random,
) -> InstanceState:  # fmt: skip
    """gra's ``number``-th instance: the same id, domain and few-shot items, drawn from
    the run's seed as gra's supervisor draws them (``gra.protocols.reproducible``).

    Roles come from ``role_rng``: gra draws them among the models free at the time,
    which only a running fleet knows. Every served name is the same checkpoint and
    no prompt names its model, so which name holds a seat changes no output.
    """
    instance_id = generation_instance_id(1, number)
    domain, shots = draw_content(
        instance_rng(config.run.seed, instance_id),
        config.run.domains,
        seeds,
        lambda d: [s for s in seeds if s.domain == d],
        config.run.few_shot,
    )
    generator, committee = draw_roles(names, config.protocol, role_rng)
    inspirations = tuple(Inspiration(s.keywords, s.summary) for s in shots if s.keywords)
    return InstanceState(
        instance_id,
        domain,
        config.protocol,
        generator,
        committee,
        tuple(Example(s.instruction, s.response) for s in shots),
        None,
        inspirations if len(inspirations) == len(shots) else (),
        enrich=config.annotate.enrich,
        labels=config.annotate.labels,
    )


async def run_instance(
    state: InstanceState,
    backends: Mapping[str, Backend],
    config: Config,
    rng: random.Random,
    tally: Tally,
) -> Outcome:
    """Drive one instance to its outcome, one request at a time.

    Every task the protocol asks for at once (the whole committee's reviews)
    is called, as gra dispatches them all. gra cancels a review made moot by
    an earlier failed check or by scores that put tau out of reach; the loop
    completes it (counted in ``ignored_calls``, its time in ``moot_seconds``, so
    the report can also compare against a loop that would have skipped it).
    """
    names = sorted(backends)
    while True:
        steps = state.next_steps()
        match steps[0]:
            case Outcome() as outcome:
                return outcome
            case DrawAdjudicator(excluded=excluded):
                state.apply(AdjudicatorDrawn(draw_adjudicator(names, set(excluded), rng)))
                continue
            case DrawAnnotator():
                state.apply(AnnotatorDrawn(rng.choice(names)))
                continue
        events = [
            await _run_task(backends[step.model], state, step, config, tally)
            for step in steps
            if isinstance(step, Generate | Review | Adjudicate | Annotate)
        ]
        for event, seconds in events:
            if state.outcome is not None:
                tally.ignored_calls += 1
                tally.moot_seconds += seconds
                continue
            try:
                state.apply(event)
            except ProtocolError:
                tally.ignored_calls += 1
                tally.moot_seconds += seconds


def _item_summary(
    instruction: str | None, response: str | None, decision: str, stage: str
) -> dict[str, Any]:
    """What is compared across the phases: the generated item (as a digest) and its fate."""
    item = None
    if instruction is not None and response is not None:
        item = hashlib.sha256(f"{instruction}\x1f{response}".encode()).hexdigest()[:16]
    return {"item": item, "decision": decision, "stage": stage}


def gra_items(out: Path) -> dict[str, dict[str, Any]]:
    """Every finished instance of a gra run, from its output records."""
    items: dict[str, dict[str, Any]] = {}
    for path in sorted(out.rglob("*.jsonl")):
        if path.name not in ("accepted.jsonl", "rejected.jsonl", "candidates.jsonl"):
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                items[record["id"]] = _item_summary(
                    record["instruction"] or None,
                    record["response"] or None,
                    record["decision"],
                    record["stage"],
                )
    return items


def agreement(
    gra: Mapping[str, Mapping[str, Any]], seq: Mapping[str, Mapping[str, Any]]
) -> dict[str, int]:
    """How many instances came out the same in both phases: with the same sampling
    seeds the server should produce the same items; batching may still perturb a
    logit enough to change a sampled token, so this is measured, not assumed."""
    both = sorted(set(gra) & set(seq))
    return {
        "instances_in_both": len(both),
        "same_item": sum(
            gra[i]["item"] is not None and gra[i]["item"] == seq[i]["item"] for i in both
        ),
        "same_outcome": sum(
            (gra[i]["decision"], gra[i]["stage"]) == (seq[i]["decision"], seq[i]["stage"])
            for i in both
        ),
    }


async def run_sequential_job(
    config: Config,
    seeds: Sequence[SeedItem],
    backends: Mapping[str, Backend],
    instances: int,
) -> dict[str, Any]:
    """The whole job in one plain loop; returns outcomes, per-instance times and tallies."""
    rng = random.Random(config.run.seed)
    tally = Tally()
    outcomes: dict[str, int] = {}
    per_instance: list[float] = []
    items: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for i in range(instances):
        t = time.perf_counter()
        state = new_instance(i + 1, seeds, sorted(backends), config, rng)
        outcome = await run_instance(state, backends, config, rng, tally)
        per_instance.append(time.perf_counter() - t)
        outcomes[outcome.stage] = outcomes.get(outcome.stage, 0) + 1
        items[state.instance_id] = _item_summary(
            state.item.instruction if state.item else None,
            state.item.response if state.item else None,
            outcome.decision,
            outcome.stage,
        )
    return {
        "instances": instances,
        "seconds": time.perf_counter() - started,
        "stages": outcomes,
        "instance_seconds": per_instance,
        "calls": tally.calls,
        "completion_tokens_client": tally.completion_tokens,
        "prompt_tokens_client": tally.prompt_tokens,
        "ignored_calls": tally.ignored_calls,
        "moot_seconds": tally.moot_seconds,
        "calls_by_role": tally.calls_by_role,
        "invalid_outputs_by_role": tally.invalid_by_role,
        "invalid_outputs_truncated": tally.truncated,
        "failed_attempts": tally.failed_attempts,
        "invalid_output_samples": tally.invalid_samples,
        "items": items,
    }


async def _sequential(config: Config, url: str, settings: Settings) -> dict[str, Any]:
    seeds = read_seeds(SEEDS, config.seeds or SeedSettings(path=str(SEEDS))).items
    # gra's own client, one per served name as gra's agents have.
    backends = {
        name: OpenAIBackend(name, url, served_model=name, capacity=1, vllm=True)
        for name in settings.names()
    }
    try:
        for backend in backends.values():
            await backend.start()
        return await run_sequential_job(config, seeds, backends, settings.instances)
    finally:
        for backend in backends.values():
            await backend.aclose()


def run_sequential_phase(
    settings: Settings, config: Path, url: str, poller: MetricsPoller
) -> dict[str, Any]:
    before = poller.scrape()
    start = time.time()
    result = asyncio.run(_sequential(load_config(config), url, settings))
    end = time.time()
    after = poller.scrape()
    return {
        "phase": "sequential",
        **result,
        "server": counter_delta(before, after),
        "queue": queue_stats(poller.samples, start, end),
    }


# ---- the server alone: what any client can get from batching ----------------------


async def review_calls(url: str, names: Sequence[str], requests: int, concurrency: int) -> float:
    """Send ``requests`` review calls, ``concurrency`` at a time; returns the seconds taken."""
    seeds = read_seeds(SEEDS, SeedSettings(path=str(SEEDS))).items
    role = get_role("reviewer")
    backends = [
        OpenAIBackend(name, url, served_model=name, capacity=concurrency, vllm=True)
        for name in names
    ]
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        seed = seeds[i % len(seeds)]
        request = ReviewRequest(seed.domain, seed.instruction, seed.response)
        async with slots:
            await backends[i % len(backends)].complete(
                role.prompt(request), role.schema, role.sampling
            )

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        for backend in backends:
            await backend.aclose()
    return time.perf_counter() - started


def run_server_alone_phase(settings: Settings, url: str, poller: MetricsPoller) -> dict[str, Any]:
    """The server's own batching gain on one request mix (gra's review calls on the
    seed items), one at a time and ``server_alone`` at a time: the most any client's
    concurrency can buy on this machine, with no protocol and no stragglers."""
    runs = {}
    for label, requests, concurrency in (
        ("one at a time", settings.server_alone_sequential, 1),
        (f"{settings.server_alone} at a time", 2 * settings.server_alone, settings.server_alone),
    ):
        before = poller.scrape()
        start = time.time()
        seconds = asyncio.run(review_calls(url, settings.names(), requests, concurrency))
        server = counter_delta(before, poller.scrape())
        runs[label] = {
            "requests": requests,
            "concurrency": concurrency,
            "seconds": seconds,
            "server": server,
            "completion_tokens_per_s": server["completion_tokens"] / seconds,
            "queue": queue_stats(poller.samples, start, time.time()),
        }
    return {"phase": "server-alone", "runs": runs}


# ---- the comparison ------------------------------------------------------------


def _total(phases: Sequence[dict[str, Any]], name: str) -> dict[str, float]:
    runs = [p for p in phases if p["phase"] == name]
    instances = sum(p["instances"] for p in runs)
    seconds = sum(p["seconds"] for p in runs)
    tokens = sum(p["server"]["completion_tokens"] for p in runs)
    requests = sum(p["server"]["requests"] for p in runs)
    means = [p["queue"]["running_mean"] for p in runs if p["queue"]["running_mean"] is not None]
    return {
        "instances": instances,
        "seconds": seconds,
        "seconds_per_instance": seconds / instances if instances else float("nan"),
        "instances_per_minute": 60 * instances / seconds if seconds else float("nan"),
        "completion_tokens": tokens,
        "completion_tokens_per_s": tokens / seconds if seconds else float("nan"),
        "requests": requests,
        "requests_per_instance": requests / instances if instances else float("nan"),
        "completion_tokens_per_instance": tokens / instances if instances else float("nan"),
        "running_mean": sum(means) / len(means) if means else float("nan"),
        "process_seconds": sum(p.get("process_seconds", p["seconds"]) for p in runs),
        # Sequential only: time on calls the decided instance no longer needed.
        "moot_seconds": sum(p.get("moot_seconds", 0.0) for p in runs),
    }


def phase_agreement(phases: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Items and outcomes that match between the gra and sequential phase of each repeat."""
    totals = {"instances_in_both": 0, "same_item": 0, "same_outcome": 0}
    for repeat in sorted({p["repeat"] for p in phases}):
        pair = {p["phase"]: p["items"] for p in phases if p["repeat"] == repeat}
        if "gra" in pair and "sequential" in pair:
            for key, value in agreement(pair["gra"], pair["sequential"]).items():
                totals[key] += value
    return totals


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def build_checks(
    gra: Mapping[str, float], seq: Mapping[str, float], same: Mapping[str, int]
) -> list[Check]:
    rate = _ratio(gra["instances_per_minute"], seq["instances_per_minute"])
    tps = _ratio(gra["completion_tokens_per_s"], seq["completion_tokens_per_s"])
    e2e = _ratio(seq["seconds"], gra["process_seconds"])
    lean_seq_s = seq["seconds"] - seq["moot_seconds"]
    lean = _ratio(lean_seq_s, gra["seconds"])
    both = same["instances_in_both"]
    return [
        Check(
            "instances/min (s per instance)",
            f"{gra['instances_per_minute']:.2f} ({gra['seconds_per_instance']:.1f}s)",
            f"{seq['instances_per_minute']:.2f} ({seq['seconds_per_instance']:.1f}s)",
            rate,
            f">= {TARGET:g}",
            None if rate is None else rate >= TARGET,
        ),
        Check(
            "completion tokens/s (server count)",
            f"{gra['completion_tokens_per_s']:.1f}",
            f"{seq['completion_tokens_per_s']:.1f}",
            tps,
            f">= {TARGET:g}",
            None if tps is None else tps >= TARGET,
        ),
        Check(
            "instances/min incl. gra's fleet start and stop",
            f"{60 * gra['instances'] / gra['process_seconds']:.2f}",
            f"{seq['instances_per_minute']:.2f}",
            e2e,
            "(shown)",
            None,
        ),
        Check(
            "instances/min vs a loop that skips moot calls",
            f"{gra['instances_per_minute']:.2f}",
            f"{60 * seq['instances'] / lean_seq_s:.2f}" if lean_seq_s > 0 else "-",
            lean,
            "(shown)",
            None,
        ),
        Check(
            "instances whose item is the same in both phases",
            f"{same['same_item']}/{both}",
            f"{same['same_item']}/{both}",
            None,
            "(shown)",
            None,
        ),
        Check(
            "instances whose outcome is the same in both phases",
            f"{same['same_outcome']}/{both}",
            f"{same['same_outcome']}/{both}",
            None,
            "(shown)",
            None,
        ),
        Check(
            "requests running at the server, mean",
            f"{gra['running_mean']:.1f}",
            f"{seq['running_mean']:.1f}",
            _ratio(gra["running_mean"], seq["running_mean"]),
            "(shown)",
            None,
        ),
        Check(
            "server requests / completion tokens per instance",
            f"{gra['requests_per_instance']:.1f} / {gra['completion_tokens_per_instance']:.0f}",
            f"{seq['requests_per_instance']:.1f} / {seq['completion_tokens_per_instance']:.0f}",
            _ratio(gra["completion_tokens_per_instance"], seq["completion_tokens_per_instance"]),
            "(shown)",
            None,
        ),
    ]


@contextmanager
def vllm_server(settings: Settings, log_dir: Path) -> Iterator[str]:
    """The one server both phases share; its start-up is timed by neither."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests/ holds the server helper
    from tests.vllm_server import running_vllm_server

    first, *aliases = settings.names()
    with running_vllm_server(first, aliases=aliases, log_dir=log_dir) as url:
        yield url


def _warm_up(url: str, name: str) -> None:
    """A few tokens with each role's schema, so that neither phase pays the server's
    first-use costs (grammar compilation, cold caches)."""
    from gra.protocols.roles import (
        AdjudicateRequest,
        AnnotateRequest,
        GenerateRequest,
        ReviewerFeedback,
    )

    question, answer = "What is 2 + 2?", "4."
    requests: dict[str, Any] = {
        "generator": GenerateRequest("math", ()),
        "reviewer": ReviewRequest("math", question, answer),
        "adjudicator": AdjudicateRequest(
            "math", question, answer, (ReviewerFeedback(9.0, "Strengths: right"),)
        ),
        "annotator": AnnotateRequest(question, answer),
    }

    async def go() -> None:
        backend = OpenAIBackend(name, url, served_model=name, capacity=1, vllm=True)
        try:
            for role_name, request in requests.items():
                role = get_role(role_name)
                sampling = dataclasses.replace(role.sampling, max_tokens=8)
                await backend.complete(role.prompt(request), role.schema, sampling)
        finally:
            await backend.aclose()

    asyncio.run(go())


def run_benchmark(settings: Settings, workdir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    info = machine_info()
    phases: list[dict[str, Any]] = []
    started = time.monotonic()
    t0 = time.monotonic()
    with vllm_server(settings, workdir / "vllm") as url:
        server_start_s = time.monotonic() - t0
        say(f"vLLM server up in {server_start_s:.0f}s at {url}, serving {settings.names()}")
        _warm_up(url, settings.names()[0])
        config = write_config(settings, url, workdir)
        with MetricsPoller(url) as poller:
            for repeat in range(settings.repeats):
                order = ["gra", "sequential"]
                if (settings.order == "seq-first") != (repeat % 2 == 1):
                    order.reverse()
                for name in order:
                    load = os.getloadavg()
                    if name == "gra":
                        phase = run_gra_phase(
                            settings, config, workdir / f"gra-run-{repeat + 1}", poller
                        )
                    else:
                        phase = run_sequential_phase(settings, config, url, poller)
                    phase["repeat"] = repeat + 1
                    phase["load_average_before"] = list(load)
                    phase["load_average_after"] = list(os.getloadavg())
                    phases.append(phase)
                    say(
                        f"  {name}: {phase['instances']} instances in {phase['seconds']:.1f}s, "
                        f"{phase['server']['requests']} requests, "
                        f"{phase['server']['completion_tokens']} completion tokens"
                    )
            alone = None
            if settings.server_alone:
                alone = run_server_alone_phase(settings, url, poller)
                for label, run in alone["runs"].items():
                    say(
                        f"  server alone, {label}: {run['requests']} reviews in "
                        f"{run['seconds']:.1f}s, {run['completion_tokens_per_s']:.1f} tokens/s"
                    )
    info["load_average_after"] = list(os.getloadavg())
    gra, seq = _total(phases, "gra"), _total(phases, "sequential")
    same = phase_agreement(phases)
    checks = build_checks(gra, seq, same)
    if alone is not None:
        one, many = alone["runs"].values()
        checks.append(
            Check(
                f"server alone: tokens/s, {many['concurrency']} review calls at a time vs 1",
                f"{many['completion_tokens_per_s']:.1f}",
                f"{one['completion_tokens_per_s']:.1f}",
                _ratio(many["completion_tokens_per_s"], one["completion_tokens_per_s"]),
                "(ceiling)",
                None,
            )
        )
    return {
        "benchmark": "vllm",
        "machine": info,
        "utc": utc_stamp(),
        "settings": asdict(settings) | {"served_names": settings.names()},
        "served_as": "one checkpoint (Qwen2.5-Coder-0.5B-Instruct, converted to HF, "
        "float32) under every served name",
        "server_args": list(_server_args()),
        "server_start_s": server_start_s,
        "workdir": str(workdir),
        "phases": phases,
        "server_alone": alone,
        "totals": {"gra": gra, "sequential": seq},
        "agreement": same,
        "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
        "table": format_table(checks, "gra", "sequential"),
        "passed": all(c.passed for c in checks if c.passed is not None),
        "wall_s": time.monotonic() - started,
    }


def _server_args() -> Sequence[str]:
    from tests.vllm_server import DEFAULT_ARGS

    return DEFAULT_ARGS


def print_report(report: dict[str, Any]) -> None:
    phases = report["phases"]
    gra, seq = report["totals"]["gra"], report["totals"]["sequential"]
    fleet = sum(p["fleet_start_seconds"] for p in phases if p["phase"] == "gra")
    print(report["table"])
    print(
        f"gra: {gra['seconds']:.0f}s from fleet ready to last instance (fleet start "
        f"{fleet:.1f}s, shown in the third row only); outcomes "
        f"{[p['counts'] for p in phases if p['phase'] == 'gra']}; late results ignored "
        f"{sum(p['late_results_ignored'] for p in phases if p['phase'] == 'gra')}"
    )
    print(
        f"sequential: {seq['seconds']:.0f}s; outcomes "
        f"{[p['stages'] for p in phases if p['phase'] == 'sequential']}; "
        f"{sum(p['ignored_calls'] for p in phases if p['phase'] == 'sequential')} calls "
        "whose result the decided instance no longer needed (gra cancels those)"
    )
    print(
        f"load average before {report['machine']['load_average']}, after "
        f"{report['machine']['load_average_after']}; server start {report['server_start_s']:.0f}s "
        f"(in neither timing); whole benchmark {report['wall_s']:.0f}s; files in "
        f"{report['workdir']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Settings()
    parser.add_argument("--instances", type=int, default=defaults.instances)
    parser.add_argument(
        "--models", type=int, default=defaults.models, help="served names of the one checkpoint"
    )
    parser.add_argument("--capacity", type=int, default=defaults.capacity, help="per gra agent")
    parser.add_argument("--max-in-flight", type=int, default=defaults.max_in_flight)
    parser.add_argument(
        "--server-alone",
        type=int,
        default=defaults.server_alone,
        metavar="N",
        help="then measure the server alone: review calls N at a time vs one at a time",
    )
    parser.add_argument("--few-shot", type=int, default=defaults.few_shot)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-enrich", action="store_true", help="no annotation of accepted items")
    parser.add_argument("--order", choices=["gra-first", "seq-first"], default=defaults.order)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of phases, order alternating")
    parser.add_argument("--output-retries", type=int, help="[limits] (default: gra's, 2)")
    parser.add_argument("--task-retries", type=int, help="[limits] (default: gra's, 2)")
    parser.add_argument("--workdir", type=Path, help="keep gra's outputs and the server log here")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    args = parser.parse_args()
    if args.models < 2:
        parser.error("--models: gra needs at least 2 distinct models")

    settings = Settings(
        instances=args.instances,
        models=args.models,
        capacity=args.capacity,
        max_in_flight=args.max_in_flight,
        server_alone=args.server_alone,
        few_shot=args.few_shot,
        seed=args.seed,
        enrich=not args.no_enrich,
        order=args.order,
        repeats=args.repeats,
        output_retries=args.output_retries,
        task_retries=args.task_retries,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gra-bench-vllm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = settings.names()
    print(
        f"vllm: gra vs a sequential loop, {settings.instances} instances each, on one vLLM CPU "
        f"server; the SAME checkpoint is served as {len(names)} model names ({', '.join(names)}) "
        f"because gra needs distinct models; {len(names)} gra agents x capacity "
        f"{settings.capacity}, max_in_flight {settings.max_in_flight}",
        flush=True,
    )
    report = run_benchmark(settings, workdir, lambda line: print(line, flush=True))
    print_report(report)
    if not args.no_write:
        print(f"\nwrote {write_result(args.results_dir, 'vllm', report)}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
