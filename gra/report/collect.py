"""A run directory read into what the run report shows: pure data, no plotting.

The report must open any run directory a person points it at: one still being
written (a torn last line), one from an older or newer gra (keys missing or
added), one whose config file has moved. So records are read as plain decoded
JSON, and what is not understood (a record, or a summary.json that does not
decode) is skipped and said in ``notes`` rather than raised. Records stream
through once; only aggregates and a capped handful of examples are kept, so a
run of 100,000 items costs no more page than one of 100.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gra.errors import SummaryError
from gra.report.agreement import CHECK_NAMES, SCORE_NAMES, reviewer_agreement
from gra.report.diversity import BottomK, Embed, ItemMap, embedding_text
from gra.report.timeline import Timeline, read_timeline
from gra.rundir import (
    JOURNAL,
    SEED_ANNOTATIONS,
    SUMMARY,
    VERDICTS,
    HealthReport,
    Raw,
    Summary,
    item_files,
    journal_config_path,
    read_raw,
    read_summary,
)

# Where an item can end, in the order an item meets the gates.
# "check": a plugin check step (its stage in the record is the step's own name).
STAGES = (
    "instruction_check", "score", "adjudication", "verification", "check", "dedup", "accepted",
)  # fmt: skip
# The funnel's bars: what is left after each gate.
GATES = (
    "generated",
    "not failed",
    "passed checks",
    "passed scores",
    "passed adjudication",
    "passed verification",
    "passed plugin checks",
    "unique (dedup)",
)
_KNOWN_STAGES = (*STAGES, "failed")
CRITERIA = (*SCORE_NAMES, "score")
SCORE_BINS = 11  # scores are integers 0-10; a review's mean is rounded into them
EXAMPLE_CATEGORIES = ("accepted", "rejected", "adjudicated", "deduplicated", "verified", "failed")
EXAMPLES_PER_CATEGORY = 8
TEXT_CAP = 800  # characters of an instruction or response shown in the table
FEEDBACK_CAP = 300
MAX_DOMAINS = 15  # the rest are summed into "other"


@dataclass
class RoundFunnel:
    """The items of one synthesis round, by the stage where each one ended."""

    round: str
    generated: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    adjudicated: int = 0

    def survivors(self) -> list[tuple[str, int]]:
        """(gate, items left after it); the last is the accepted count."""
        left = self.generated - self.ended["failed_generated"]
        rows = [("generated", self.generated), ("not failed", left)]
        for gate, stage in zip(GATES[2:], STAGES[:-1], strict=True):
            left -= self.ended[stage]
            rows.append((gate, left))
        rows.append(("accepted", self.ended["accepted"]))
        return rows


@dataclass
class ReviewerStats:
    """What one reviewer model gave: score histograms, check pass rates, leniency."""

    model: str
    reviews: int = 0
    histograms: dict[str, list[int]] = field(
        default_factory=lambda: {c: [0] * SCORE_BINS for c in CRITERIA}
    )
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))
    checks_passed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECK_NAMES, 0))
    checks_seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECK_NAMES, 0))
    # From gra/report/agreement.py: its mean minus the committee's on the same items.
    mean_score: float | None = None
    leniency: float | None = None
    accept_rate: float | None = None

    def mean(self, criterion: str) -> float | None:
        n = self.counts.get(criterion, 0)
        return self.sums[criterion] / n if n else None

    def pass_rate(self, check: str) -> float | None:
        n = self.checks_seen.get(check, 0)
        return self.checks_passed[check] / n if n else None


@dataclass
class DomainMix:
    """Domains of what was made against what it was made from and what was asked."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    seeds: Counter[str] = field(default_factory=Counter)
    # [run] domains of the config; None: the seeds' proportions (the default).
    weights: dict[str, float] | None = None


@dataclass(frozen=True)
class UsageRow:
    """What one model spent in one role (summary.json ``models``)."""

    model: str
    role: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float | None:
        return self.completion_tokens / self.seconds if self.seconds > 0 else None


@dataclass(frozen=True)
class AgentRow:
    agent: str
    model: str
    roles: str
    alive: bool
    completed: int
    failed: int
    restarts: int
    capacity: int


@dataclass
class Fleet:
    usage: list[UsageRow] = field(default_factory=list)
    agents: list[AgentRow] = field(default_factory=list)
    wall_seconds: float = 0.0
    retries: int = 0
    agents_lost: int = 0
    late_results: int = 0
    model_health: dict[str, HealthReport] = field(default_factory=dict)

    @property
    def restarts(self) -> int:
        return sum(a.restarts for a in self.agents)

    def totals(self) -> dict[str, float]:
        return {
            "calls": sum(r.calls for r in self.usage),
            "tokens": sum(r.prompt_tokens + r.completion_tokens for r in self.usage),
            "completion_tokens": sum(r.completion_tokens for r in self.usage),
            "seconds": sum(r.seconds for r in self.usage),
        }

    def busy_fraction(self, model: str) -> float | None:
        """Model seconds over the wall time of its task slots: how busy its agents were."""
        slots = sum(max(1, a.capacity) for a in self.agents if a.model == model)
        seconds = sum(r.seconds for r in self.usage if r.model == model)
        if not slots or self.wall_seconds <= 0:
            return None
        return seconds / (self.wall_seconds * slots)


@dataclass(frozen=True)
class ExampleReview:
    model: str
    score: float | None
    checks: str  # "✓✓✗" in CHECK_NAMES order, "" when absent
    feedback: str


@dataclass(frozen=True)
class Example:
    """One item for the table; every string is model output or record data, untrusted."""

    category: str
    id: str
    round: str
    domain: str
    decision: str
    stage: str
    reason: str
    instruction: str
    response: str
    generator: str
    mean: float | None
    reviews: tuple[ExampleReview, ...]
    adjudication: ExampleReview | None
    duplicate_of: str
    verification: str


@dataclass
class RunReport:
    """Everything the page shows, read from one run directory."""

    out_dir: str
    mode: str = "generate"  # generate | review
    running: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    tau: float = 8.0
    funnels: list[RoundFunnel] = field(default_factory=list)
    reviewers: list[ReviewerStats] = field(default_factory=list)
    agreement: dict[str, Any] = field(default_factory=dict)
    domains: DomainMix = field(default_factory=DomainMix)
    fleet: Fleet = field(default_factory=Fleet)
    examples: list[Example] = field(default_factory=list)
    verification: Counter[str] = field(default_factory=Counter)
    item_map: ItemMap | None = None
    map_note: str = ""  # why there is no map, when there is none
    timeline: Timeline | None = None
    records: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(f.ended["accepted"] for f in self.funnels)

    def total_funnel(self) -> RoundFunnel:
        total = RoundFunnel("all")
        for funnel in self.funnels:
            total.generated += funnel.generated
            total.ended.update(funnel.ended)
            total.adjudicated += funnel.adjudicated
        return total


# ---- small readers that never raise -------------------------------------------


def _stage(record: Mapping[str, Any]) -> Any:
    """The record's stage; a plugin check step's own name reads as "check"."""
    stage = record.get("stage")
    checks = record.get("checks")
    named = isinstance(stage, str) and stage not in _KNOWN_STAGES and isinstance(checks, list)
    if named and any(isinstance(c, Mapping) and c.get("name") == stage for c in checks):
        return "check"
    return stage


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else 0


def _text(value: Any, cap: int | None = None) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if cap is not None and len(text) > cap:
        return text[:cap] + f"… [{len(text) - cap} more characters]"
    return text


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _summary(out_dir: Path, notes: list[str]) -> Summary:
    """The run's summary; an empty one, and a note saying why, when it cannot be read."""
    try:
        summary = read_summary(out_dir)
    except SummaryError as exc:
        notes.append(f"{SUMMARY} could not be read: {exc}")
        return Summary()
    if summary is None:
        notes.append(f"{SUMMARY} is missing")
        return Summary()
    return summary


# ---- the pieces ------------------------------------------------------------


def _review_of(raw: Any) -> ExampleReview | None:
    review = _mapping(raw)
    if not isinstance(review.get("model"), str):
        return None
    checks = _mapping(review.get("checks"))
    marks = "".join(
        "✓" if checks.get(n) is True else "✗" if checks.get(n) is False else "?"
        for n in CHECK_NAMES
    )
    return ExampleReview(
        review["model"],
        _number(review.get("score")),
        marks if checks else "",
        _text(review.get("feedback"), FEEDBACK_CAP),
    )


def _verification_of(raw: Any) -> str:
    verification = _mapping(raw)
    if not verification:
        return ""
    parts = [_text(verification.get(k)) for k in ("kind", "verdict", "method")]
    reason = _text(verification.get("reason"), FEEDBACK_CAP)
    return " / ".join(p for p in parts if p) + (f": {reason}" if reason else "")


def _example(category: str, record: Mapping[str, Any]) -> Example:
    reviews = tuple(r for r in map(_review_of, _list(record.get("reviews"))) if r is not None)
    return Example(
        category=category,
        id=_text(record.get("id"), 100),
        round=_text(record.get("round")),
        domain=_text(record.get("domain"), 100),
        decision=_text(record.get("decision"), 40),
        stage=_text(record.get("stage"), 40),
        reason=_text(record.get("reason"), FEEDBACK_CAP),
        instruction=_text(record.get("instruction"), TEXT_CAP),
        response=_text(record.get("response"), TEXT_CAP),
        generator=_text(_mapping(record.get("generator")).get("model"), 100),
        mean=_number(record.get("mean")),
        reviews=reviews,
        adjudication=_review_of(record.get("adjudication")),
        duplicate_of=_text(record.get("duplicate_of"), 100),
        verification=_verification_of(record.get("verification")),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _categories(record: Mapping[str, Any]) -> list[str]:
    """The example categories a record belongs to (one record can fill several)."""
    decision, stage = record.get("decision"), record.get("stage")
    found = []
    if decision == "accepted":
        found.append("accepted")
    elif decision == "failed" or stage == "failed":
        found.append("failed")
    elif stage == "dedup":
        found.append("deduplicated")
    elif decision == "rejected":
        found.append("rejected")
    if isinstance(record.get("adjudication"), Mapping):
        found.append("adjudicated")
    if isinstance(record.get("verification"), Mapping):
        found.append("verified")
    return found


class _Collector:
    """One pass over the records: aggregates, and the first few examples of each kind."""

    def __init__(self, per_category: int) -> None:
        self.funnels: dict[str, RoundFunnel] = {}
        self.reviewers: dict[str, ReviewerStats] = {}
        self.domains = DomainMix()
        self.verification: Counter[str] = Counter()
        self.examples: dict[str, list[Example]] = defaultdict(list)
        self.samples = {"accepted": BottomK(), "rejected": BottomK()}
        self.per_category = per_category
        self.records = 0
        self.skipped = 0

    def add(self, record: Mapping[str, Any]) -> bool:
        """Count ``record``; False (and nothing counted) when it is not a record."""
        decision, stage = record.get("decision"), _stage(record)
        if decision not in ("accepted", "rejected", "failed") or stage not in _KNOWN_STAGES:
            self.skipped += 1
            return False
        self.records += 1
        key = _text(record.get("round")) or "-"
        funnel = self.funnels.setdefault(key, RoundFunnel(key))
        generated = bool(record.get("instruction"))
        failed = decision == "failed" or stage == "failed"
        if generated:
            funnel.generated += 1
            if failed:
                funnel.ended["failed_generated"] += 1
        funnel.ended["failed" if failed else stage] += 1
        if isinstance(record.get("adjudication"), Mapping):
            funnel.adjudicated += 1
        verdict = _mapping(record.get("verification")).get("verdict")
        if isinstance(verdict, str):
            self.verification[verdict] += 1
        if generated and not failed:
            self.samples["accepted" if decision == "accepted" else "rejected"].offer(
                _text(record.get("id")),
                embedding_text(_text(record.get("instruction")), _text(record.get("response"))),
            )
        domain = _text(record.get("domain"), 100) or "(none)"
        if decision == "accepted":
            self.domains.accepted[domain] += 1
        elif not failed:
            self.domains.rejected[domain] += 1
        if not failed:
            for review in _list(record.get("reviews")):
                self._add_review(_mapping(review))
        for category in _categories(record):
            if len(self.examples[category]) < self.per_category:
                self.examples[category].append(_example(category, record))
        return True

    def _add_review(self, review: Mapping[str, Any]) -> None:
        model = review.get("model")
        if not isinstance(model, str):
            return
        stats = self.reviewers.get(model)
        if stats is None:
            stats = self.reviewers[model] = ReviewerStats(model)
        stats.reviews += 1
        scores = _mapping(review.get("scores"))
        values = {name: _number(scores.get(name)) for name in SCORE_NAMES}
        mean = _number(review.get("score"))
        if mean is None and all(v is not None for v in values.values()):
            mean = sum(v for v in values.values() if v is not None) / len(values)
        values["score"] = mean
        for criterion, value in values.items():
            if value is None or not 0 <= value <= SCORE_BINS - 1:
                continue
            stats.histograms[criterion][round(value)] += 1
            stats.sums[criterion] += value
            stats.counts[criterion] += 1
        checks = _mapping(review.get("checks"))
        for name in CHECK_NAMES:
            if isinstance(checks.get(name), bool):
                stats.checks_seen[name] += 1
                stats.checks_passed[name] += checks[name]


def _round_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 30, key)


def _fleet(summary: Summary) -> Fleet:
    fleet = Fleet(
        wall_seconds=max(0.0, summary.wall_seconds),
        retries=max(0, summary.retries),
        agents_lost=max(0, summary.agents_lost),
        late_results=max(0, summary.late_results_ignored),
    )
    for model, numbers in sorted(summary.models.items()):
        for role, usage in sorted(numbers.roles.items()):
            fleet.usage.append(
                UsageRow(
                    _text(model, 100),
                    _text(role, 40),
                    max(0, usage.calls),
                    max(0, usage.prompt_tokens),
                    max(0, usage.completion_tokens),
                    max(0.0, usage.seconds),
                )
            )
    for agent_id, agent in sorted(summary.agents.items()):
        fleet.agents.append(
            AgentRow(
                _text(agent_id, 100),
                _text(agent.model, 100),
                ", ".join(_text(r, 40) for r in agent.roles),
                agent.alive,
                max(0, agent.completed),
                max(0, agent.failed),
                max(0, agent.restarts),
                agent.capacity if agent.capacity > 0 else 1,
            )
        )
    fleet.model_health = {
        _text(model, 100): health for model, health in summary.model_health.items()
    }
    return fleet


def _seed_domains(
    out_dir: Path,
    journal_config: str | None,
    config: Any | None,
    seeds: Sequence[Any] | None,
    notes: list[str],
) -> tuple[Counter[str], dict[str, float] | None, Sequence[Any]]:
    """Seed domains (annotated ones as the fleet relabelled them), configured weights,
    and the seeds themselves (for the map).

    A running job passes its config and seeds; ``gra report`` finds the config
    through the journal's first line, which may no longer exist.
    """
    if config is None and journal_config:
        try:
            from gra.config import load_config

            config = load_config(journal_config)
        except Exception as exc:  # any reason at all: the page goes on without it
            notes.append(f"config {journal_config} not read ({type(exc).__name__}): no seed mix")
    if seeds is None and config is not None and getattr(config, "seeds", None) is not None:
        try:
            from gra.data.seeds import read_seeds

            seeds = read_seeds(
                config.resolve(config.seeds.path), config.seeds, skip_bad_rows=True
            ).items
        except Exception as exc:
            notes.append(f"seeds not read ({type(exc).__name__}): no seed mix")
    weights = None
    if config is not None:
        configured = getattr(getattr(config, "run", None), "domains", None)
        if isinstance(configured, Mapping):
            weights = {str(k): float(v) for k, v in configured.items()}
    relabelled = {}
    for raw in read_raw([out_dir / SEED_ANNOTATIONS]):
        if isinstance(raw.get("seed"), str) and isinstance(raw.get("domain"), str):
            relabelled[raw["seed"]] = raw["domain"]
    domains: Counter[str] = Counter()
    for seed in seeds or ():
        seed_id = getattr(seed, "id", None)
        domain = relabelled.get(seed_id) if isinstance(seed_id, str) else None
        domains[_text(domain or getattr(seed, "domain", ""), 100) or "(none)"] += 1
    return domains, weights, seeds or ()


def _seed_sample(seeds: Sequence[Any]) -> BottomK:
    sample = BottomK()
    for seed in seeds:
        instruction = _text(getattr(seed, "instruction", ""))
        if instruction:
            text = embedding_text(instruction, _text(getattr(seed, "response", "")))
            sample.offer(_text(getattr(seed, "id", "")) or instruction, text)
    return sample


def collect(
    out_dir: Path,
    *,
    config: Any | None = None,
    seeds: Sequence[Any] | None = None,
    per_category: int = EXAMPLES_PER_CATEGORY,
    skip_map: str | None = None,
    embed: Embed | None = None,
) -> RunReport:
    """Read ``out_dir`` (a finished or running `gra run` / `gra review`) into a RunReport.

    ``config`` and ``seeds`` are what the run used, when the caller has them; without
    them they are found through the journal, and left out when they cannot be.
    A sample of the items is embedded with ``embed`` (MiniLM from disk when None)
    for the diversity figures and the map, unless ``skip_map`` says why not.
    """
    out_dir = Path(out_dir)
    report = RunReport(str(out_dir))
    summary = _summary(out_dir, report.notes)
    report.running = summary.running
    report.counts = {_text(k, 60): max(0, v) for k, v in summary.counts.items()}
    report.tau = _number(summary.protocol.get("tau")) or 8.0
    names = item_files("generate")
    if (out_dir / VERDICTS).is_file():
        report.mode = "review"
        names = item_files("review")
    elif not any((out_dir / name).is_file() for name in names):
        report.notes.append(f"no records ({', '.join(names)} or {VERDICTS})")

    collector = _Collector(per_category)

    def counted(records: Iterable[Raw]) -> Iterable[Raw]:
        for record in records:
            if collector.add(record):
                yield record

    report.agreement = reviewer_agreement(
        counted(read_raw(out_dir / name for name in names)), tau=report.tau
    )
    report.records, report.skipped = collector.records, collector.skipped
    if collector.skipped:
        report.notes.append(
            f"{collector.skipped} lines were not records this version understands (no known "
            "decision and stage) and were left out"
        )
    report.funnels = [collector.funnels[k] for k in sorted(collector.funnels, key=_round_order)]
    report.verification = collector.verification
    per_model = _mapping(report.agreement.get("per_model"))
    for model in sorted(collector.reviewers):
        stats = collector.reviewers[model]
        figures = _mapping(per_model.get(model))
        stats.mean_score = _number(figures.get("mean_score"))
        stats.leniency = _number(figures.get("leniency"))
        stats.accept_rate = _number(figures.get("accept_rate"))
        report.reviewers.append(stats)
    report.domains = collector.domains
    samples = dict(collector.samples)
    if report.mode == "generate":
        report.domains.seeds, report.domains.weights, run_seeds = _seed_domains(
            out_dir, journal_config_path(out_dir / JOURNAL), config, seeds, report.notes
        )
        samples["seed"] = _seed_sample(run_seeds)
    if skip_map is None:
        from gra.report.embedding import draw_item_map

        report.item_map, note = draw_item_map(samples, embed)
        report.map_note = note or ""
    else:
        report.map_note = skip_map
    report.fleet = _fleet(summary)
    report.timeline = read_timeline(out_dir, summary)
    report.examples = [e for c in EXAMPLE_CATEGORIES for e in collector.examples.get(c, [])]
    return report


def top_domains(counts: Iterable[Mapping[str, float]], limit: int = MAX_DOMAINS) -> list[str]:
    """The ``limit`` domains with most weight over ``counts``; the rest become "other"."""
    total: Counter[str] = Counter()
    for mapping in counts:
        for domain, value in mapping.items():
            total[domain] += value
    names = [d for d, _ in total.most_common()]
    return names if len(names) <= limit else [*names[: limit - 1], "other"]
