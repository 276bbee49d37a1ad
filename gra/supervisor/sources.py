"""Where a run's instances come from, and where each finished one goes.

A run has one source: generation (new items over synthesis rounds), review
(existing pairs judged) or refinement (existing pairs rewritten, then
judged); seeds without annotations are annotated first, by their own source.
The scheduling core asks a source for the next instance when there is room,
and hands it each finished instance; a source says what to write (actions),
never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gra.config import Config
from gra.data.pool import Pool
from gra.data.seeds import SeedItem
from gra.protocols.peer_review import InstanceState, ProtocolError
from gra.protocols.records import build_record, build_verdict
from gra.protocols.reproducible import draw_content, generation_instance_id, instance_rng
from gra.protocols.roles import Example, GeneratedItem, Inspiration
from gra.supervisor.actions import (
    Action,
    AddCandidate,
    WriteRecord,
    WriteSeedAnnotation,
    WriteVerdict,
)
from gra.supervisor.journal import InstanceStarted
from gra.supervisor.outputs import RunStats
from gra.supervisor.seed_annotations import SeedAnnotation

if TYPE_CHECKING:
    from gra.supervisor.core import SchedulingCore


@dataclass
class Finished:
    """A finished instance as its source sees it."""

    state: InstanceState
    synthesis_round: int
    seed_ids: list[str]


class InstanceSource(Protocol):
    # Whether finished items are annotated (domain, keywords, summary).
    enrich: bool
    # Whether the run goes in synthesis rounds, each post-processed when it ends
    # (``Generation``); otherwise the run ends when its one round does.
    rounds: bool
    target: int
    max_instances: int
    started_in_round: int

    def accepted(self) -> int:
        """Accepted so far toward the target."""
        ...

    def start(self, core: SchedulingCore, number: int) -> InstanceStarted | None:
        """The ``number``-th instance of the run, or None when it cannot start now."""
        ...

    def finish(self, done: Finished, stats: RunStats) -> list[Action]: ...


class Generation:
    """New items: a generator writes from few-shot items drawn from the pool, and
    what the committee accepts becomes a candidate of the synthesis round."""

    rounds = True

    def __init__(
        self, config: Config, pool: Pool, round_now: int, candidates: int, started_in_round: int
    ) -> None:
        self.config = config
        self.pool = pool
        self.enrich = config.annotate.enrich
        self.target = config.run.target
        self.max_instances = config.run.max_instances or 10 * config.run.target
        self.total_rounds = config.run.rounds
        self.round = round_now
        # Committee-accepted items of this round, and instances started in it.
        self.candidates = candidates
        self.started_in_round = started_in_round

    @property
    def finished_all_rounds(self) -> bool:
        return self.round > self.total_rounds

    @property
    def last_round(self) -> bool:
        return self.round >= self.total_rounds

    def accepted(self) -> int:
        return self.candidates

    def round_post_processed(self) -> None:
        """The round's candidates are decided (admitted or deduplicated); after the
        last round nothing more starts, otherwise the next round begins."""
        self.candidates = 0
        if not self.last_round:
            self.round += 1
            self.started_in_round = 0

    def start(self, core: SchedulingCore, number: int) -> InstanceStarted | None:
        generators = sorted(core.models("generator"))
        reviewers = sorted(core.models("reviewer"))
        if not generators or len(set(generators) | set(reviewers)) < 2:
            return None
        try:
            generator, committee = core.draw_roles(generators, reviewers, "generator")
        except ProtocolError:
            return None
        self.started_in_round += 1
        instance_id = generation_instance_id(self.round, number)
        domain, shots = draw_content(
            instance_rng(self.config.run.seed, instance_id),
            self.config.run.domains,
            self.pool.seed_items,
            self.pool.by_domain,
            self.config.run.few_shot,
        )
        inspirations = tuple(Inspiration(s.keywords, s.summary) for s in shots if s.keywords)
        return InstanceStarted(
            instance_id,
            self.round,
            domain,
            generator,
            committee,
            tuple(s.id for s in shots),
            tuple(Example(s.instruction, s.response) for s in shots),
            inspirations=inspirations if len(inspirations) == len(shots) else (),
        )

    def finish(self, done: Finished, stats: RunStats) -> list[Action]:
        record = build_record(
            done.state, synthesis_round=done.synthesis_round, seed_ids=done.seed_ids
        )
        if record.decision == "accepted":
            # Counted once the round's post-processing admits it (or finds a duplicate).
            self.candidates += 1
            return [AddCandidate(record, self.round)]
        stats.count_record(record)
        return [WriteRecord(record)]


class Pairs:
    """Existing pairs, in file order: judged by a committee (``refine``: rewritten by
    a refiner first); each gets a verdict."""

    enrich = False
    rounds = False

    def __init__(
        self, pairs: list[SeedItem], stats: RunStats, *, refine: bool, started: int = 0
    ) -> None:
        self.pairs = pairs
        self.started_in_round = started
        # The role that rewrites each pair first; None: the committee alone judges it.
        self._maker = "refiner" if refine else None
        self.target = len(pairs)
        self.max_instances = len(pairs)
        self._stats = stats

    def accepted(self) -> int:
        return self._stats.counts["accepted"]

    def start(self, core: SchedulingCore, number: int) -> InstanceStarted | None:
        if number > len(self.pairs):
            return None
        reviewers = sorted(core.models("reviewer"))
        generator = None
        try:
            if self._maker is not None:
                refiners = sorted(core.models(self._maker))
                if not refiners:
                    return None
                generator, committee = core.draw_roles(refiners, reviewers, self._maker)
            else:
                committee = core.draw_committee(reviewers)
        except ProtocolError:
            return None
        item = self.pairs[number - 1]
        self.started_in_round += 1
        return InstanceStarted(
            f"rv-{number:06d}",
            0,
            item.domain,
            generator,
            committee,
            (item.id,),
            (),
            GeneratedItem(item.instruction, item.response),
        )

    def finish(self, done: Finished, stats: RunStats) -> list[Action]:
        verdict = build_verdict(done.state, item_id=done.seed_ids[0])
        stats.count_record(verdict)
        return [WriteVerdict(verdict)]


class SeedAnnotations:
    """Seeds without keywords or a summary, each annotated by a random model before
    generation starts (generation draws its inspirations from them)."""

    def __init__(
        self,
        seeds: list[SeedItem],
        pool: Pool,
        default_domain: str,
        done: list[SeedAnnotation],
        *,
        enabled: bool,
    ) -> None:
        """``done``: the annotations an earlier run of this output directory wrote."""
        self.running: set[str] = set()
        self._pool = pool
        self._by_id = {s.id: s for s in seeds}
        self._default_domain = default_domain
        for entry in done:
            self.apply(entry)
        annotated = {entry.seed for entry in done}
        self.waiting = [
            s
            for s in (seeds if enabled else [])
            if (not s.keywords or not s.summary) and s.id not in annotated
        ]

    @property
    def busy(self) -> bool:
        """Seeds wait for annotation or are being annotated: generation waits."""
        return bool(self.waiting or self.running)

    def start(self, core: SchedulingCore) -> InstanceStarted | None:
        if not core.models("annotator"):
            return None
        seed = self.waiting.pop(0)
        started = InstanceStarted(
            f"sa-{seed.id}",
            0,
            seed.domain,
            None,
            (),
            (seed.id,),
            (),
            GeneratedItem(seed.instruction, seed.response),
            kind="seed_annotation",
        )
        self.running.add(started.instance)
        return started

    def again(self, seed_id: str) -> None:
        """A resumed run annotates a seed whose annotation was under way."""
        seed = self._by_id.get(seed_id)
        if seed is not None and seed not in self.waiting:
            self.waiting.append(seed)

    def finish(self, state: InstanceState, seed_id: str) -> list[Action]:
        self.running.discard(state.instance_id)
        annotation = state.annotation
        if annotation is None:
            return []
        entry = SeedAnnotation(
            seed_id,
            annotation.domain.strip().lower(),
            annotation.keywords,
            annotation.summary,
            state.annotator or "",
        )
        self.apply(entry)
        return [WriteSeedAnnotation(entry)]

    def apply(self, entry: SeedAnnotation) -> None:
        """Give the pool's seed what the fleet wrote; its own domain wins, the
        annotator's label fills a missing one."""
        seed = self._by_id.get(entry.seed)
        if seed is None:
            return
        domain = entry.domain if seed.domain == self._default_domain else None
        self._pool.annotate_seed(entry.seed, domain, entry.keywords, entry.summary)
