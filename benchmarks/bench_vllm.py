"""gra on one real vLLM server (CPU build), against the strongest client a user
would write by hand and against the server's own ceiling.

The same job is done by every side, in one run, against the same server: N GRA
instances (generate, review by the committee, adjudicate when the rules need
it, annotate accepted items), with gra's prompts, schemas, sampling settings,
protocol state machine and sampling seeds on every side. The sides:

- ``gra``: a real ``gra run`` whose agents use the ``vllm`` backend;
- ``concurrent``: a plain asyncio script of the kind a capable user writes, one
  ``httpx.AsyncClient`` posting to ``/v1/chat/completions``, at the same
  concurrency (``max_in_flight`` instances at once, ``capacity`` requests per
  served name, the committee's reviews in parallel), cancelling the reviews a
  decided item no longer needs as gra does;
- ``ceiling``: the server by itself: every request the concurrent client
  completed (same prompts, same seeds, so the same tokens), sent with no
  protocol in between at a saturating concurrency (every request slot gra's
  fleet has): the most completion tokens/s this server gives this job here;
- ``sequential`` (only with ``--sides``): the old baseline, one request at a
  time.

Each instance is the same on every side: the k-th has gra's id, domain and
few-shot items, and each call the sampling seed gra's agent uses for that seat
and attempt (``gra.protocols.reproducible``); the report counts the items and
outcomes that came out identical, the requests and completion tokens each side
had the server do, and the items decided. Sides alternate (ABC CBA ABC ...) over
``--repeats`` repeats in this one run, so that drifting load on a shared machine
hits every side alike; each ratio is taken within a repeat and the report gives
the median and the range over repeats. Server start-up is left out of every
timing; gra's fleet start is shown apart.

gra needs at least two distinct models (no model may judge its own sample),
so the one converted checkpoint is served under several names (vLLM's
``--served-model-name`` takes several): every "model" here is the same weights.

    python benchmarks/bench_vllm.py                    # the README's row: about an hour on
                                                       # 2 busy cores (3 repeats of 3 sides)
    python benchmarks/bench_vllm.py --instances 3 --repeats 1 --no-write
    python benchmarks/bench_vllm.py --sides gra,concurrent,ceiling,sequential
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.harness import Check, format_table, machine_info, utc_stamp, write_result
from gra.agents.roles import InvalidOutput, get_role
from gra.backends import OpenAIBackend
from gra.backends.base import (
    BackendError,
    ChatMessages,
    Completion,
    OutputShape,
    Sampling,
)
from gra.config import Config, SeedSettings, load_config
from gra.data.seeds import SeedItem, read_seeds
from gra.protocols.builtin_roles import BUILTIN_ROLES
from gra.protocols.peer_review import (
    Adjudicate,
    AdjudicatorDrawn,
    Annotate,
    AnnotatorDrawn,
    DrawAdjudicator,
    DrawAnnotator,
    Failed,
    Generate,
    InstanceEvent,
    InstanceState,
    Outcome,
    ProtocolError,
    Review,
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
from gra.protocols.roles import Example, Inspiration

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEEDS = ROOT / "examples" / "seeds.jsonl"
# gra over the concurrent client (per completion token), gra over the server's
# ceiling, gra over the sequential loop.
TARGET_CLIENT = 0.95
TARGET_CEILING = 0.9
TARGET_SEQUENTIAL = 3.0
SIDES = ("gra", "concurrent", "ceiling", "sequential")
JOB_SIDES = ("gra", "concurrent", "sequential")  # the sides that run the protocol


@dataclass(frozen=True)
class Settings:
    # The README's row: 5 instances, all in flight, 4 requests per served name.
    instances: int = 5
    # Served names of the one checkpoint: 3 gives the quickstart's shape,
    # a generator and a committee of the 2 others.
    models: int = 3
    # Per agent (gra) and per served name (the concurrent client).
    capacity: int = 4
    max_in_flight: int = 5
    few_shot: int = 2
    seed: int = 7
    enrich: bool = True
    sides: tuple[str, ...] = ("gra", "concurrent", "ceiling")
    # The side that leads in odd repeats; the order reverses in even ones, so an
    # even number of repeats gives every side every position equally often.
    first: str = "gra"
    repeats: int = 3
    # Run the job once, untimed, before the timed phases (see run_benchmark).
    prime: bool = True
    # Requests at once in the ceiling phase (None: every request slot of gra's
    # fleet, models x capacity).
    ceiling_concurrency: int | None = None
    # None: gra's defaults. Every side follows the config, so each stays the same job.
    output_retries: int | None = None
    task_retries: int | None = None

    def names(self) -> list[str]:
        return [f"qwen-0.5b-{chr(ord('a') + i)}" for i in range(self.models)]

    @property
    def request_slots(self) -> int:
        return self.models * self.capacity

    @property
    def ceiling_at(self) -> int:
        return self.ceiling_concurrency or self.request_slots


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


# ---- side gra: a real `gra run` -----------------------------------------------------


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


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    cpu0 = _children_cpu_s()
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    # The supervisor's and its agents' CPU (waited for, so counted here): CPU the
    # server did not get on a small machine.
    client_cpu_s = _children_cpu_s() - cpu0
    ended = time.time()
    after = poller.scrape()
    if done.returncode != 0:
        raise RuntimeError(f"gra run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    times = _log_times(out / "logs" / "supervisor.jsonl")
    ready = times["fleet_ready"][0]
    last = max(times["instance_finished"])
    usage = list(summary["models"].values())
    items = gra_items(out)
    return {
        "phase": "gra",
        "items": items,
        "decisions": decision_counts(items),
        "instances": summary["instances_finished"],
        "unfinished": summary["instances_unfinished"],
        "counts": summary["counts"],
        # The run phase: fleet registered to last instance finished.
        "seconds": last - ready,
        "process_seconds": ended - started,
        "fleet_start_seconds": ready - started,
        "client_cpu_s": client_cpu_s,
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


# ---- what every protocol side shares: gra's role calls, retries and seeds ---------


class Completes(Protocol):
    """What a side calls a model through: gra's backend or the plain client."""

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion: ...


@dataclass
class Tally:
    calls: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    ignored_calls: int = 0  # results the protocol no longer needed (instance decided)
    cancelled_calls: int = 0  # requests cancelled unfinished once moot (as gra cancels them)
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
    backend: Completes, state: InstanceState, step: TaskStep, config: Config, tally: Tally
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
                completion = await backend.complete(
                    messages, role.schema_for(step.request), sampling
                )
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
            return BUILTIN_ROLES[step.role].to_event(state, step, output), seconds
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
    backends: Mapping[str, Completes],
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
    backends: Mapping[str, Completes],
    instances: int,
) -> dict[str, Any]:
    """The whole job in one plain loop, one request at a time; returns outcomes,
    per-instance times and tallies."""
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
    return job_result(
        instances, time.perf_counter() - started, outcomes, per_instance, items, tally
    )


def job_result(
    instances: int,
    seconds: float,
    stages: Mapping[str, int],
    per_instance: Sequence[float],
    items: Mapping[str, dict[str, Any]],
    tally: Tally,
) -> dict[str, Any]:
    """What a protocol side reports: outcomes, items, and the calls it made."""
    return {
        "instances": instances,
        "seconds": seconds,
        "stages": dict(stages),
        "decisions": decision_counts(items),
        "instance_seconds": list(per_instance),
        "calls": tally.calls,
        "completion_tokens_client": tally.completion_tokens,
        "prompt_tokens_client": tally.prompt_tokens,
        "ignored_calls": tally.ignored_calls,
        "cancelled_calls": tally.cancelled_calls,
        "moot_seconds": tally.moot_seconds,
        "calls_by_role": tally.calls_by_role,
        "invalid_outputs_by_role": tally.invalid_by_role,
        "invalid_outputs_truncated": tally.truncated,
        "failed_attempts": tally.failed_attempts,
        "invalid_output_samples": tally.invalid_samples,
        "items": dict(items),
    }


def decision_counts(items: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Instances by decision (accepted, rejected: decided; failed: not)."""
    return dict(Counter(item["decision"] for item in items.values()))


# ---- the sequential loop (the old baseline) -----------------------------------------


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


# ---- side concurrent: what a capable user writes with httpx ------------------------


def request_body(
    served: str, messages: ChatMessages, schema: OutputShape, sampling: Sampling
) -> dict[str, Any]:
    """The chat request gra's vLLM backend sends for one call (``OpenAIBackend`` with
    ``vllm=True``): the plain client sends the same bytes, so the server does the same work."""
    body: dict[str, Any] = {
        "model": served,
        "messages": messages,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if schema is not None:  # None: a role that writes free text
        body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    return body


class PlainClient:
    """One served name through one shared ``httpx.AsyncClient``: at most ``capacity``
    requests in flight (a semaphore), the response's text and usage read back.
    ``record`` collects the body of every request that completed (for the ceiling)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        served: str,
        capacity: int,
        record: list[dict[str, Any]] | None = None,
    ) -> None:
        self.http = http
        self.served = served
        self.slots = asyncio.Semaphore(capacity)
        self.record = record

    async def complete(
        self, messages: ChatMessages, schema: OutputShape, sampling: Sampling
    ) -> Completion:
        body = request_body(self.served, messages, schema, sampling)
        async with self.slots:
            started = time.perf_counter()
            try:
                response = await self.http.post("/v1/chat/completions", json=body)
            except httpx.TransportError as exc:
                raise BackendError(f"request failed: {exc!r}") from exc
            elapsed = time.perf_counter() - started
        if response.status_code >= 400:
            raise BackendError(f"HTTP {response.status_code}: {response.text[:500]}")
        payload = response.json()
        choice = payload["choices"][0]
        usage = payload.get("usage") or {}
        if self.record is not None:
            self.record.append(body)
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=elapsed,
            finish_reason=str(choice.get("finish_reason") or ""),
        )


def _task_key(state: InstanceState, step: TaskStep) -> tuple[str, str, int]:
    return (step.role, step.model, state.round)


async def run_instance_concurrently(
    state: InstanceState,
    clients: Mapping[str, Completes],
    config: Config,
    rng: random.Random,
    tally: Tally,
) -> Outcome:
    """Drive one instance to its outcome with every task it asks for at once in flight
    (the committee's reviews in parallel), each result applied as it arrives; a task
    the instance no longer asks for (a review made moot by a failed check or by
    scores that put tau out of reach) is cancelled unfinished, as gra cancels it."""
    names = sorted(clients)
    running: dict[tuple[str, str, int], asyncio.Task[tuple[InstanceEvent, float]]] = {}
    try:
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
            wanted = {
                _task_key(state, step): step
                for step in steps
                if isinstance(step, Generate | Review | Adjudicate | Annotate)
            }
            for key in [k for k in running if k not in wanted]:
                running.pop(key).cancel()
                tally.cancelled_calls += 1
            for key, step in wanted.items():
                if key not in running:
                    running[key] = asyncio.create_task(
                        _run_task(clients[step.model], state, step, config, tally)
                    )
            if not running:
                raise ProtocolError(f"{state.instance_id}: no task to run in {steps}")
            done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for key in [k for k, task in running.items() if task in done]:
                event, seconds = running.pop(key).result()
                if state.outcome is not None:
                    tally.ignored_calls += 1
                    tally.moot_seconds += seconds
                    continue
                try:
                    state.apply(event)
                except ProtocolError:
                    tally.ignored_calls += 1
                    tally.moot_seconds += seconds
    finally:
        for task in running.values():
            task.cancel()
            tally.cancelled_calls += 1
        await asyncio.gather(*running.values(), return_exceptions=True)


async def run_concurrent_job(
    config: Config,
    seeds: Sequence[SeedItem],
    clients: Mapping[str, Completes],
    instances: int,
    max_in_flight: int,
) -> dict[str, Any]:
    """The whole job as a capable user's asyncio script: ``max_in_flight`` instances
    at once, started in order, each driven by ``run_instance_concurrently``."""
    rng = random.Random(config.run.seed)
    tally = Tally()
    names = sorted(clients)
    # Created in order, so each instance's content and seats are the sequential loop's.
    states = [new_instance(i + 1, seeds, names, config, rng) for i in range(instances)]
    outcomes: dict[str, int] = {}
    per_instance: list[float] = []
    items: dict[str, dict[str, Any]] = {}
    slots = asyncio.Semaphore(max_in_flight)

    async def one(state: InstanceState) -> None:
        async with slots:
            t = time.perf_counter()
            outcome = await run_instance_concurrently(state, clients, config, rng, tally)
            per_instance.append(time.perf_counter() - t)
        outcomes[outcome.stage] = outcomes.get(outcome.stage, 0) + 1
        items[state.instance_id] = _item_summary(
            state.item.instruction if state.item else None,
            state.item.response if state.item else None,
            outcome.decision,
            outcome.stage,
        )

    started = time.perf_counter()
    await asyncio.gather(*(one(state) for state in states))
    return job_result(
        instances, time.perf_counter() - started, outcomes, per_instance, items, tally
    )


def plain_http(url: str, connections: int, transport: httpx.AsyncBaseTransport | None = None):  # type: ignore[no-untyped-def]
    """The one HTTP client of the plain script (and of the ceiling's replay)."""
    return httpx.AsyncClient(
        base_url=url,
        timeout=httpx.Timeout(1200.0, connect=10.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        transport=transport,
    )


async def _concurrent(
    config: Config, url: str, settings: Settings, record: list[dict[str, Any]]
) -> dict[str, Any]:
    seeds = read_seeds(SEEDS, config.seeds or SeedSettings(path=str(SEEDS))).items
    async with plain_http(url, settings.request_slots) as http:
        clients = {
            name: PlainClient(http, name, settings.capacity, record) for name in settings.names()
        }
        return await run_concurrent_job(
            config, seeds, clients, settings.instances, settings.max_in_flight
        )


def run_concurrent_phase(
    settings: Settings,
    config: Path,
    url: str,
    poller: MetricsPoller,
    record: list[dict[str, Any]],
) -> dict[str, Any]:
    before = poller.scrape()
    start = time.time()
    cpu0 = time.process_time()
    result = asyncio.run(_concurrent(load_config(config), url, settings, record))
    end = time.time()
    return {
        "phase": "concurrent",
        **result,
        # This process's CPU over the phase (the metrics poller's thread included).
        "client_cpu_s": time.process_time() - cpu0,
        "server": counter_delta(before, poller.scrape()),
        "queue": queue_stats(poller.samples, start, end),
    }


# ---- side ceiling: the server alone, the same requests, nothing in between ----------


async def replay(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Send every body, ``concurrency`` at a time, as fast as the server answers."""
    slots = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(body: dict[str, Any]) -> None:
        nonlocal tokens
        async with slots:
            response = await http.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        tokens += int((response.json().get("usage") or {}).get("completion_tokens", 0))

    async with plain_http(url, concurrency, transport) as http:
        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in bodies))
        seconds = time.perf_counter() - started
    return {
        "requests_sent": len(bodies),
        "concurrency": concurrency,
        "seconds": seconds,
        "completion_tokens_client": tokens,
    }


def run_ceiling_phase(
    settings: Settings, url: str, poller: MetricsPoller, bodies: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    if not bodies:
        raise RuntimeError("the ceiling replays the concurrent side's requests: run that first")
    before = poller.scrape()
    start = time.time()
    result = asyncio.run(replay(url, bodies, settings.ceiling_at))
    end = time.time()
    return {
        "phase": "ceiling",
        **result,
        "server": counter_delta(before, poller.scrape()),
        "queue": queue_stats(poller.samples, start, end),
    }


# ---- the order of the sides ----------------------------------------------------------


def phase_order(sides: Sequence[str], repeats: int, first: str = "gra") -> list[tuple[int, str]]:
    """(repeat, side) in the order they run: forward in odd repeats, reversed in even
    ones (ABC CBA ABC ...), so that a trend in the machine's load favours no side.

    The ceiling replays the concurrent side's requests, so in the forward order it
    comes after that side (last), and the first repeat runs forward.
    """
    unknown = set(sides) - set(SIDES)
    if unknown or len(set(sides)) != len(sides):
        raise ValueError(f"sides must be distinct ones of {SIDES}, got {list(sides)}")
    if "ceiling" in sides and "concurrent" not in sides:
        raise ValueError("the ceiling replays the concurrent side's requests: add concurrent")
    jobs = [s for s in sides if s != "ceiling"]
    if first in jobs:
        jobs.remove(first)
        jobs.insert(0, first)
    forward = jobs + (["ceiling"] if "ceiling" in sides else [])
    order = []
    for repeat in range(1, repeats + 1):
        for side in forward if repeat % 2 else reversed(forward):
            order.append((repeat, side))
    return order


# ---- the comparison ------------------------------------------------------------------


def phase_metrics(phase: Mapping[str, Any]) -> dict[str, Any]:
    """One phase's figures, from the server's counters and the side's own items."""
    seconds = phase["seconds"]
    server = phase["server"]
    metrics: dict[str, Any] = {
        "seconds": seconds,
        "requests": server["requests"],
        "completion_tokens": server["completion_tokens"],
        "completion_tokens_per_s": server["completion_tokens"] / seconds if seconds else math.nan,
        "running_mean": phase["queue"]["running_mean"],
        "client_cpu_s": phase.get("client_cpu_s"),
    }
    if "items" in phase:
        decisions = decision_counts(phase["items"])
        decided = decisions.get("accepted", 0) + decisions.get("rejected", 0)
        metrics |= {
            "instances": len(phase["items"]),
            "decided": decided,
            "accepted": decisions.get("accepted", 0),
            "decided_per_minute": 60 * decided / seconds if seconds else math.nan,
        }
    return metrics


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, least and greatest of per-repeat values (None when there are none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "values": list(values)}
    return {
        "median": statistics.median(finite),
        "min": min(finite),
        "max": max(finite),
        "values": list(values),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def by_repeat(phases: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """{repeat: {side: metrics}}."""
    table: dict[int, dict[str, dict[str, Any]]] = {}
    for phase in phases:
        table.setdefault(phase["repeat"], {})[phase["phase"]] = phase_metrics(phase)
    return table


def ratios(
    phases: Sequence[Mapping[str, Any]], side: str, baseline: str, metric: str
) -> dict[str, Any]:
    """``side`` over ``baseline`` in ``metric``, within each repeat that ran both."""
    values = [
        _ratio(sides[side].get(metric), sides[baseline].get(metric))
        for _, sides in sorted(by_repeat(phases).items())
        if side in sides and baseline in sides
    ]
    return spread(values)  # type: ignore[arg-type]


def side_spread(phases: Sequence[Mapping[str, Any]], side: str, metric: str) -> dict[str, Any]:
    return spread([m[side].get(metric) for _, m in sorted(by_repeat(phases).items()) if side in m])


def phase_agreement(
    phases: Sequence[Mapping[str, Any]], side: str = "sequential"
) -> dict[str, int]:
    """Items and outcomes that match between the gra and ``side`` phases of each repeat."""
    totals = {"instances_in_both": 0, "same_item": 0, "same_outcome": 0}
    for repeat in sorted({p["repeat"] for p in phases}):
        pair = {p["phase"]: p["items"] for p in phases if p["repeat"] == repeat and "items" in p}
        if "gra" in pair and side in pair:
            for key, value in agreement(pair["gra"], pair[side]).items():
                totals[key] += value
    return totals


def work_per_repeat(phases: Sequence[Mapping[str, Any]], side: str) -> list[dict[str, Any]]:
    """The work each repeat's phase had the server do, and the items it decided."""
    return [
        {
            "repeat": repeat,
            "requests": m[side]["requests"],
            "completion_tokens": m[side]["completion_tokens"],
            "decided": m[side].get("decided"),
            "instances": m[side].get("instances"),
        }
        for repeat, m in sorted(by_repeat(phases).items())
        if side in m
    ]


def _fmt(s: Mapping[str, Any], digits: int = 1) -> str:
    if s["median"] is None:
        return "-"
    if len([v for v in s["values"] if v is not None]) == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def _ratio_check(
    phases: Sequence[Mapping[str, Any]],
    side: str,
    baseline: str,
    metric: str,
    label: str,
    target: float | None,
) -> Check:
    r = ratios(phases, side, baseline, metric)
    n = len([v for v in r["values"] if v is not None])
    rng = "" if n < 2 else f"; ratio range {r['min']:.3f}-{r['max']:.3f}"
    return Check(
        f"{label} (median of {n}{rng})",
        _fmt(side_spread(phases, side, metric)),
        _fmt(side_spread(phases, baseline, metric)),
        r["median"],
        f">= {target:g}" if target is not None else "(shown)",
        None if target is None or r["median"] is None else r["median"] >= target,
    )


def _work(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{w['requests']}/{w['completion_tokens']}" for w in rows) or "-"


def _decided(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{w['decided']}/{w['instances']}" for w in rows) or "-"


def build_checks(phases: Sequence[Mapping[str, Any]]) -> list[Check]:
    """The report's rows: like-for-like headlines first (per completion token, per
    decided item, the work each side had the server do), then the others."""
    ran = {p["phase"] for p in phases}
    checks: list[Check] = []
    if {"gra", "concurrent"} <= ran:
        checks.append(
            _ratio_check(
                phases,
                "gra",
                "concurrent",
                "completion_tokens_per_s",
                "gra / concurrent client: completion tokens/s",
                TARGET_CLIENT,
            )
        )
        checks.append(
            _ratio_check(
                phases,
                "gra",
                "concurrent",
                "decided_per_minute",
                "gra / concurrent client: items decided per minute",
                None,
            )
        )
        same = phase_agreement(phases, "concurrent")
        checks.append(
            Check(
                "same job: server requests / completion tokens, per repeat",
                _work(work_per_repeat(phases, "gra")),
                _work(work_per_repeat(phases, "concurrent")),
                None,
                "(shown)",
                None,
            )
        )
        checks.append(
            Check(
                "same job: items decided / instances, per repeat",
                _decided(work_per_repeat(phases, "gra")),
                _decided(work_per_repeat(phases, "concurrent")),
                None,
                "(shown)",
                None,
            )
        )
        checks.append(
            Check(
                "same job: instances with the same item / outcome on both sides",
                f"{same['same_item']} / {same['same_outcome']} of {same['instances_in_both']}",
                f"{same['same_item']} / {same['same_outcome']} of {same['instances_in_both']}",
                None,
                "(shown)",
                None,
            )
        )
    if {"gra", "ceiling"} <= ran:
        checks.append(
            _ratio_check(
                phases,
                "gra",
                "ceiling",
                "completion_tokens_per_s",
                "gra / server ceiling: completion tokens/s",
                TARGET_CEILING,
            )
        )
    if {"concurrent", "ceiling"} <= ran:
        checks.append(
            _ratio_check(
                phases,
                "concurrent",
                "ceiling",
                "completion_tokens_per_s",
                "concurrent client / server ceiling: completion tokens/s",
                None,
            )
        )
        checks.append(
            Check(
                "ceiling: server requests / completion tokens, per repeat (concurrent's)",
                _work(work_per_repeat(phases, "ceiling")),
                _work(work_per_repeat(phases, "concurrent")),
                None,
                "(shown)",
                None,
            )
        )
    if {"gra", "sequential"} <= ran:
        checks.append(
            _ratio_check(
                phases,
                "gra",
                "sequential",
                "completion_tokens_per_s",
                "gra / sequential loop: completion tokens/s",
                TARGET_SEQUENTIAL,
            )
        )
        checks.append(
            _ratio_check(
                phases,
                "gra",
                "sequential",
                "decided_per_minute",
                "gra / sequential loop: items decided per minute",
                None,
            )
        )
    if {"gra", "concurrent"} <= ran:
        checks.append(
            Check(
                "client CPU s per phase (gra: supervisor + agents; concurrent: the script)",
                _fmt(side_spread(phases, "gra", "client_cpu_s")),
                _fmt(side_spread(phases, "concurrent", "client_cpu_s")),
                ratios(phases, "gra", "concurrent", "client_cpu_s")["median"],
                "(shown)",
                None,
            )
        )
    for side in sorted(ran, key=SIDES.index):
        checks.append(
            Check(
                f"{side}: requests running at the server, mean",
                _fmt(side_spread(phases, side, "running_mean")),
                "-",
                None,
                "(shown)",
                None,
            )
        )
    return checks


@contextmanager
def vllm_server(settings: Settings, log_dir: Path) -> Iterator[str]:
    """The one server every side shares; its start-up is timed by none."""
    from tests.vllm_server import running_vllm_server

    first, *aliases = settings.names()
    with running_vllm_server(first, aliases=aliases, log_dir=log_dir) as url:
        yield url


def _warm_up(url: str, name: str) -> None:
    """A few tokens with each role's schema, so that no side pays the server's
    first-use costs (grammar compilation, cold caches)."""
    from gra.protocols.roles import (
        AdjudicateRequest,
        AnnotateRequest,
        GenerateRequest,
        ReviewerFeedback,
        ReviewRequest,
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
    recorded: list[dict[str, Any]] = []  # the concurrent side's completed requests
    with vllm_server(settings, workdir / "vllm") as url:
        server_start_s = time.monotonic() - t0
        say(f"vLLM server up in {server_start_s:.0f}s at {url}, serving {settings.names()}")
        _warm_up(url, settings.names()[0])
        config = write_config(settings, url, workdir)
        with MetricsPoller(url) as poller:
            if settings.prime and "concurrent" in settings.sides:
                # The job once, untimed: vLLM's prefix cache then holds its prompts for
                # every timed phase alike, instead of the first phase alone paying to
                # fill it (measured: twice the prompt tokens evaluated per second).
                primed: list[dict[str, Any]] = []
                prime = run_concurrent_phase(settings, config, url, poller, primed)
                recorded = primed
                say(f"  prime (untimed, in no ratio): {prime['seconds']:.1f}s")
                (workdir / "prime.json").write_text(json.dumps(prime, default=str))
            for repeat, side in phase_order(settings.sides, settings.repeats, settings.first):
                load = os.getloadavg()
                if side == "gra":
                    phase = run_gra_phase(settings, config, workdir / f"gra-run-{repeat}", poller)
                elif side == "concurrent":
                    record: list[dict[str, Any]] = []
                    phase = run_concurrent_phase(settings, config, url, poller, record)
                    recorded = record
                elif side == "ceiling":
                    phase = run_ceiling_phase(settings, url, poller, recorded)
                else:
                    phase = run_sequential_phase(settings, config, url, poller)
                phase["repeat"] = repeat
                phase["load_average_before"] = list(load)
                phase["load_average_after"] = list(os.getloadavg())
                phases.append(phase)
                m = phase_metrics(phase)
                say(
                    f"  repeat {repeat}, {side}: {m['seconds']:.1f}s, {m['requests']} requests, "
                    f"{m['completion_tokens']} completion tokens "
                    f"({m['completion_tokens_per_s']:.1f}/s)"
                    + (f", {m['decided']} of {m['instances']} decided" if "decided" in m else "")
                    + f"; load {load[0]:.1f}"
                )
                # Kept as they come, so that a run cut short leaves its phases.
                (workdir / "phases.json").write_text(json.dumps(phases, default=str))
    info["load_average_after"] = list(os.getloadavg())
    return assemble_report(settings, info, phases, server_start_s, workdir, started)


def assemble_report(
    settings: Settings,
    info: dict[str, Any],
    phases: list[dict[str, Any]],
    server_start_s: float,
    workdir: Path,
    started: float,
) -> dict[str, Any]:
    """The result file's content: every phase, per-repeat figures, ratios, the table."""
    checks = build_checks(phases)
    loads = [p["load_average_before"][0] for p in phases] + [
        p["load_average_after"][0] for p in phases
    ]
    return {
        "benchmark": "vllm",
        "machine": info,
        "utc": utc_stamp(),
        "settings": asdict(settings)
        | {
            "served_names": settings.names(),
            "request_slots": settings.request_slots,
            "ceiling_concurrency": settings.ceiling_at,
        },
        "order": [
            f"{repeat}:{side}"
            for repeat, side in phase_order(settings.sides, settings.repeats, settings.first)
        ],
        "served_as": "one checkpoint (Qwen2.5-Coder-0.5B-Instruct, converted to HF, "
        "float32) under every served name",
        "server_args": list(_server_args()),
        "server_start_s": server_start_s,
        "workdir": str(workdir),
        "phases": phases,
        "metrics_by_repeat": by_repeat(phases),
        "ratios": {
            f"{a}/{b}:{metric}": ratios(phases, a, b, metric)
            for a, b in (
                ("gra", "concurrent"),
                ("gra", "ceiling"),
                ("concurrent", "ceiling"),
                ("gra", "sequential"),
            )
            for metric in ("completion_tokens_per_s", "decided_per_minute", "seconds")
            if {a, b} <= {p["phase"] for p in phases}
            and not (metric != "completion_tokens_per_s" and "ceiling" in (a, b))
        },
        "agreement": {
            side: phase_agreement(phases, side)
            for side in ("concurrent", "sequential")
            if side in settings.sides
        },
        "load_average_range": [min(loads), max(loads)] if loads else None,
        "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
        "table": format_table(checks, "gra (or side)", "baseline"),
        "passed": all(c.passed for c in checks if c.passed is not None),
        "wall_s": time.monotonic() - started,
    }


def _server_args() -> Sequence[str]:
    from tests.vllm_server import DEFAULT_ARGS

    return DEFAULT_ARGS


def print_report(report: dict[str, Any]) -> None:
    phases = report["phases"]
    print(report["table"])
    gra = [p for p in phases if p["phase"] == "gra"]
    if gra:
        print(
            "gra: seconds from fleet ready to last instance; fleet start "
            + ", ".join(f"{p['fleet_start_seconds']:.1f}" for p in gra)
            + "s (in no ratio); late results ignored "
            + str(sum(p["late_results_ignored"] for p in gra))
        )
    for side in ("concurrent", "sequential"):
        runs = [p for p in phases if p["phase"] == side]
        if runs:
            print(
                f"{side}: {sum(p['cancelled_calls'] for p in runs)} requests cancelled once moot, "
                f"{sum(p['ignored_calls'] for p in runs)} completed but no longer needed"
            )
    low, high = report["load_average_range"] or (math.nan, math.nan)
    print(
        f"load average (1 min) over the phases {low:.1f}-{high:.1f}; server start "
        f"{report['server_start_s']:.0f}s (in no timing); whole benchmark "
        f"{report['wall_s']:.0f}s; order {' '.join(report['order'])}; files in {report['workdir']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Settings()
    parser.add_argument("--instances", type=int, default=defaults.instances)
    parser.add_argument(
        "--models", type=int, default=defaults.models, help="served names of the one checkpoint"
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=defaults.capacity,
        help="requests in flight per gra agent and per served name of the concurrent client",
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=defaults.max_in_flight, help="instances at once"
    )
    parser.add_argument(
        "--sides",
        default=",".join(defaults.sides),
        help=f"comma-separated, of {','.join(SIDES)} (sequential: slow)",
    )
    parser.add_argument(
        "--first",
        choices=JOB_SIDES,
        default=defaults.first,
        help="the side that leads in odd repeats (the order reverses in even ones)",
    )
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument(
        "--ceiling-concurrency",
        type=int,
        help="requests at once in the ceiling phase (default: models x capacity)",
    )
    parser.add_argument(
        "--no-prime",
        action="store_true",
        help="no untimed run of the job first (the first timed phase then fills "
        "vLLM's prefix cache alone)",
    )
    parser.add_argument("--few-shot", type=int, default=defaults.few_shot)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-enrich", action="store_true", help="no annotation of accepted items")
    parser.add_argument("--output-retries", type=int, help="[limits] (default: gra's, 2)")
    parser.add_argument("--task-retries", type=int, help="[limits] (default: gra's, 2)")
    parser.add_argument("--workdir", type=Path, help="keep gra's outputs and the server log here")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    args = parser.parse_args()
    if args.models < 2:
        parser.error("--models: gra needs at least 2 distinct models")
    sides = tuple(s.strip() for s in args.sides.split(",") if s.strip())
    try:
        phase_order(sides, 1, args.first)
    except ValueError as exc:
        parser.error(f"--sides: {exc}")

    settings = Settings(
        instances=args.instances,
        models=args.models,
        capacity=args.capacity,
        max_in_flight=args.max_in_flight,
        few_shot=args.few_shot,
        seed=args.seed,
        enrich=not args.no_enrich,
        sides=sides,
        first=args.first,
        repeats=args.repeats,
        ceiling_concurrency=args.ceiling_concurrency,
        prime=not args.no_prime,
        output_retries=args.output_retries,
        task_retries=args.task_retries,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gra-bench-vllm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = settings.names()
    print(
        f"vllm: {', '.join(sides)}; {settings.instances} instances per job side, "
        f"{settings.repeats} repeats, order {' '.join(f'{r}:{s}' for r, s in phase_order(sides, settings.repeats, settings.first))}; "  # noqa: E501
        f"one vLLM CPU server; the SAME checkpoint is served as {len(names)} model names "
        f"({', '.join(names)}) because gra needs distinct models; {len(names)} agents / served "
        f"names x capacity {settings.capacity}, max_in_flight {settings.max_in_flight}; "
        f"ceiling at {settings.ceiling_at} requests at once",
        flush=True,
    )
    # A SIGTERM unwinds like Ctrl-C, so the server's process group is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(settings, workdir, lambda line: print(line, flush=True))
    print_report(report)
    if not args.no_write:
        print(f"\nwrote {write_result(args.results_dir, 'vllm', report)}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
