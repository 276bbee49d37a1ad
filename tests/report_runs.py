"""Run directories for the report tests, and a headless Chromium to open the page in.

``synthetic_run`` writes what a long run leaves (records, summary, journal) straight
from ``ItemRecord`` objects, with known properties: one lenient and one strict
reviewer, every stage reached, and optionally one hostile record whose every
string is markup. ``synthetic_logs`` writes the timings of a llama.cpp fleet whose busy shares are
known. ``scripted_run`` runs the real `gra run` on the scripted
double. ``open_in_chromium`` loads a file in Debian's chromium (`make chromium`)
with every background service off and every host name unresolvable, and returns
what the page did: its DOM after scripts ran, its console lines, and the network
requests it (not the browser) started.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from gra.protocols.records import (
    AdjudicationRecord,
    GeneratorInfo,
    ItemRecord,
    ReviewRecord,
    VerificationRecord,
)
from gra.protocols.roles import Checks, Scores
from tests.conftest import scripted_config

MODELS = ("lenient-7b", "strict-3b", "plain-1b", "plain-2b")
BIAS = {"lenient-7b": 1.5, "strict-3b": -1.5, "plain-1b": 0.0, "plain-2b": 0.0}
DOMAINS = ("coding", "math", "qa", "reasoning", "creative-writing")
HOSTILE = "<script>document.body.dataset.pwned='1'</script>"
HOSTILE_RESPONSE = "<img src=x onerror=\"document.body.dataset.pwned='2'\">"
HOSTILE_MODEL = "<b>evil</b> $x^2$ & co"


def _scores(value: int) -> Scores:
    return Scores(value, value, value, value, value, value)


def _review(model: str, quality: float, rng: random.Random, *, fail_check: bool) -> ReviewRecord:
    score = max(0, min(10, round(quality + BIAS.get(model, 0.0) + rng.gauss(0, 0.7))))
    checks = Checks(not fail_check, True, True)
    return ReviewRecord(model, checks, _scores(score), float(score), f"feedback of {model}")


def synthetic_records(n: int, *, hostile: bool = False, seed: int = 0) -> list[ItemRecord]:
    """``n`` finished items over three rounds, reaching every stage; deterministic."""
    rng = random.Random(seed)
    records = []
    for index in range(n):
        domain = DOMAINS[index % len(DOMAINS)]
        generator = MODELS[index % len(MODELS)]
        reviewers = [m for m in MODELS if m != generator][:3]
        quality = rng.uniform(4, 10)
        fail_check = rng.random() < 0.05
        reviews = [_review(m, quality, rng, fail_check=fail_check) for m in reviewers]
        scores = [r.score for r in reviews]
        mean = sum(scores) / len(scores)
        std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
        adjudication = verification = None
        duplicate_of = None
        if rng.random() < 0.01:
            decision, stage = "failed", "failed"
        elif fail_check:
            decision, stage = "rejected", "instruction_check"
        elif std > 1.5:
            score = max(0, min(10, round(quality)))
            adjudication = AdjudicationRecord(generator, _scores(score), float(score), "adj")
            decision, stage = (
                ("accepted", "accepted") if score >= 8 else ("rejected", "adjudication")
            )
        elif mean < 8:
            decision, stage = "rejected", "score"
        else:
            decision, stage = "accepted", "accepted"
        if decision == "accepted" and domain in ("coding", "math"):
            passed = rng.random() < 0.8
            verification = VerificationRecord(
                domain, "passed" if passed else "failed", "tests", "ran", "", "sandbox", []
            )
            if not passed:
                decision, stage = "rejected", "verification"
        if decision == "accepted" and rng.random() < 0.05:
            decision, stage, duplicate_of = "rejected", "dedup", f"r1-{index - 1:06d}"
        records.append(
            ItemRecord(
                id=f"r{1 + index * 3 // n}-{index:06d}",
                round=1 + index * 3 // n,
                domain=domain,
                keywords=["k"],
                summary="",
                instruction=f"Instruction number {index} about {domain}. " * 3,
                response=f"Response number {index}. " * 10,
                seed_ids=["seed-01"],
                generator=GeneratorInfo(generator),
                reviews=reviews,
                mean=round(mean, 4),
                std=round(std, 4),
                adjudication=adjudication,
                decision=decision,
                stage=stage,
                reason=f"{stage} ({decision})",
                duplicate_of=duplicate_of,
                verification=verification,
            )
        )
    if hostile and records:
        first = records[0]
        evil = ReviewRecord(HOSTILE_MODEL, Checks(True, True, True), _scores(9), 9.0, HOSTILE)
        records[0] = msgspec.structs.replace(
            first,
            instruction=HOSTILE,
            response=HOSTILE_RESPONSE,
            domain="<i>dom</i>",
            decision="accepted",
            stage="accepted",
            reviews=[*first.reviews[:2], evil],
            reason="</td></tr></table>" + HOSTILE,
        )
    return records


# Each model's agent (two task slots) is busy this share of the run, in its logs.
BUSY = {"lenient-7b": 0.2, "strict-3b": 0.4, "plain-1b": 0.6, "plain-2b": 0.8}
START = 1_800_000_000.0


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def synthetic_logs(out: Path, records: list[ItemRecord], wall_s: float) -> None:
    """logs/ as a fleet leaves them: the supervisor's ``instance_finished`` lines evenly
    over ``wall_s``, and per model one ``task_done`` per item (generator and reviewer
    by turns), their lengths making its two slots busy ``BUSY[model]`` of the time."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    step = wall_s / max(1, len(records))
    with (logs / "supervisor.jsonl").open("w") as handle:
        for index, record in enumerate(records):
            line = {
                "event": "instance_finished",
                "instance_id": record.id,
                "decision": record.decision,
                "stage": record.stage,
                "level": "info",
                "timestamp": _iso(START + step * (index + 1)),
            }
            handle.write(json.dumps(line) + "\n")
    for model, share in BUSY.items():
        with (logs / f"agent-{model}-0.jsonl").open("w") as handle:
            for index in range(len(records)):
                started = START + step * index
                seconds = 2 * share * step
                line = {
                    "seconds": seconds,
                    "started_at": started,
                    "prompt_tokens": 300,
                    "completion_tokens": 100,
                    "calls": 1,
                    "ok": True,
                    "event": "task_done",
                    "role": ("generator", "reviewer")[index % 2],
                    "model": model,
                    "level": "debug",
                    "timestamp": _iso(started + seconds),
                }
                handle.write(json.dumps(line) + "\n")


def synthetic_run(out: Path, n: int, *, hostile: bool = False) -> list[ItemRecord]:
    """A finished run directory of ``n`` records, as `gra run` would leave it."""
    out.mkdir(parents=True, exist_ok=True)
    config = scripted_config(out, list(MODELS))
    text = config.read_text().replace(
        "[run]\n", "[run]\ndomains = {coding = 2, math = 1, qa = 1}\n"
    )
    config.write_text(text)
    records = synthetic_records(n, hostile=hostile)
    encoder = msgspec.json.Encoder()
    with (
        (out / "accepted.jsonl").open("wb") as accepted,
        (out / "rejected.jsonl").open("wb") as rej,
    ):
        for record in records:
            (accepted if record.decision == "accepted" else rej).write(
                encoder.encode(record) + b"\n"
            )
    journal = {"t": "run", "config_path": str(config), "seed": 0, "at": time.time()}
    (out / "journal.jsonl").write_text(json.dumps(journal) + "\n")
    (out / "seed_annotations.jsonl").write_text("")
    stages = Counter(r.stage for r in records)
    roles = {"generator": n // len(MODELS), "reviewer": 3 * n // len(MODELS), "annotator": 2}
    models = {
        model: {
            "calls": sum(roles.values()),
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "seconds": 0.0,
            "roles": {
                role: {
                    "calls": calls,
                    "prompt_tokens": 300 * calls,
                    "completion_tokens": 100 * calls,
                    "seconds": round(calls * (2.0 + i), 3),
                }
                for role, calls in roles.items()
            },
        }
        for i, model in enumerate(MODELS)
    }
    summary = {
        "counts": {
            "generated": n,
            "rejected_instruction_check": stages["instruction_check"],
            "rejected_score": stages["score"],
            "adjudicated": sum(r.adjudication is not None for r in records),
            "rejected_adjudication": stages["adjudication"],
            "rejected_verification": stages["verification"],
            "deduplicated": stages["dedup"],
            "failed": stages["failed"],
            "accepted": stages["accepted"],
        },
        "wall_seconds": 3600.0,
        "models": models,
        "retries": 7,
        "agents_lost": 1,
        "late_results_ignored": 0,
        "protocol": {"tau": 8.0, "delta": 1.5},
        "agents": {
            f"{m}-0": {
                "model": m,
                "roles": ["generator", "reviewer"],
                "alive": True,
                "completed": 10,
                "failed": 0,
                "capacity": 2,
                "restarts": i,
            }
            for i, m in enumerate(MODELS)
        },
        "model_health": {
            "strict-3b": {"failed": 3, "succeeded": 90, "trips": 1, "last_failure": "x"}
        },
        "running": False,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    synthetic_logs(out, records, summary["wall_seconds"])
    return records


def scripted_run(directory: Path, *, target: int = 10, rounds: int = 2) -> Path:
    """A real `gra run` on the scripted double: four models that disagree, so some
    items are rejected and some adjudicated. Returns the run's output directory."""
    config = scripted_config(
        directory,
        ["alpha", "beta", "gamma", "delta"],
        target=target,
        max_instances=4 * target,
        rounds=rounds,
        extra="[protocol]\nreviewers = 2\n",
    )
    out = directory / "out"
    env = {
        **os.environ,
        "GRA_DOUBLE_DELAY_S": "0.01",
        "GRA_DOUBLE_SCORES": json.dumps({"alpha": 10, "beta": 6, "gamma": 9, "delta": 8}),
    }
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


# ---- the browser ---------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class PageLoad:
    dom: str
    console: list[str]
    page_requests: list[str]  # URLs the page itself asked for (not the browser's services)
    screenshot: Path | None


def open_in_chromium(
    url: str, work: Path, *, screenshot: Path | None = None, size: tuple[int, int] = (1200, 2000)
) -> PageLoad:
    """Load ``url`` once: its DOM after scripts, console lines, the page's network requests.

    The network log holds the browser's own requests too (update checks, account
    lookups, whatever a build does despite the flags); a page's requests are told
    apart by their initiator, which the browser's own requests lack.
    """
    binary = chromium()
    assert binary is not None, "chromium is not installed: `make chromium`"
    work.mkdir(parents=True, exist_ok=True)
    net_log = work / "net-log.json"
    command = [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={work / 'profile'}",
        f"--log-net-log={net_log}",
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=3000",
        "--dump-dom",
    ]
    if screenshot is not None:
        command.append(f"--screenshot={screenshot}")
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return PageLoad(done.stdout, console, _page_requests(net_log), screenshot)


def _page_requests(net_log: Path) -> list[str]:
    log = json.loads(net_log.read_text())
    types = {value: name for name, value in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if types.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        if params.get("initiator") != "not an origin":
            urls.append(params["url"])
    return urls
