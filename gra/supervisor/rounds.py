"""The paper's outer loop: synthesis rounds over a growing pool.

During round k, items the committee accepts are written to
``round-k/candidates.jsonl`` as they finish. When the round ends they are
post-processed: visited in descending committee mean and deduplicated
against the pool (all-MiniLM-L6-v2, cosine < threshold); survivors go to
``round-k/accepted.jsonl`` and the run's ``accepted.jsonl`` and join the pool,
so round k+1 draws on them; duplicates go to ``rejected.jsonl`` with stage
``dedup`` and the id of the item they duplicate. A ``round_done`` journal
entry marks the round complete; a resumed run redoes an interrupted
post-processing without writing any item twice.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import structlog

from gra.config import Config
from gra.data.pool import Pool, PoolItem
from gra.protocols.records import ItemRecord
from gra.rundir import (
    ACCEPTED,
    CANDIDATES,
    REJECTED,
    RoundCounts,
    cut_torn_tail,
    decode_line,
    read_ids,
    read_jsonl,
    round_dir,
)
from gra.supervisor.journal import Journal, RoundFinished
from gra.supervisor.lines import LineFile
from gra.supervisor.outputs import RecordWriter, RunStats

log = structlog.get_logger("gra.rounds")

_encoder = msgspec.json.Encoder()


class _Ranked(msgspec.Struct):
    mean: float | None = None


class _PoolFields(msgspec.Struct):
    id: str
    instruction: str
    response: str
    domain: str
    keywords: tuple[str, ...] = ()
    summary: str = ""


_ranked_decoder = msgspec.json.Decoder(_Ranked)
_record_decoder = msgspec.json.Decoder(ItemRecord)
_POST_CHUNK = 1024


def _in_rank_order(path: Path) -> Iterator[ItemRecord]:
    """The round's candidates, best committee mean first (ties in file order).

    Only each line's sort key and offset are held for the sort; records are read
    back one at a time, so a round of any size post-processes in little memory.
    """
    if not path.exists():
        return
    cut_torn_tail(path)
    keys: list[float] = []
    offsets: list[int] = []
    offset = 0
    numbers: list[int] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                mean = decode_line(_ranked_decoder, line, path, number).mean
                keys.append(-(mean if mean is not None else -1.0))
                offsets.append(offset)
                numbers.append(number)
            offset += len(line)
        starts = np.array(offsets, dtype=np.int64)
        ends = np.append(starts[1:], offset)
        order = np.argsort(np.array(keys), kind="stable")
        del keys, offsets
        for i in order:
            handle.seek(int(starts[i]))
            line = handle.read(int(ends[i] - starts[i]))
            yield decode_line(_record_decoder, line, path, numbers[i])


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    cut_torn_tail(path)
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _pool_item(record: ItemRecord | _PoolFields) -> PoolItem:
    return PoolItem(
        record.id,
        record.instruction,
        record.response,
        record.domain,
        tuple(record.keywords),
        record.summary,
    )


class SynthesisRounds:
    """The rounds' files: each committee-accepted item as it finishes, and the
    post-processing that turns a finished round's candidates into its accepted
    items. Which round is running is the scheduling core's business: every call
    names its round."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        writer: RecordWriter,
        journal: Journal,
        stats: RunStats,
        pool: Pool,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.total = config.run.rounds
        self._writer = writer
        self._journal = journal
        self._stats = stats
        # Read only, to seed the deduplication; the items that join it are returned.
        self._pool = pool
        self._candidates: LineFile | None = None
        self._candidates_round = 0
        self._dedup: Any = None
        # Candidates decoded (and embedded) at once when a round is post-processed.
        self.post_chunk = _POST_CHUNK

    def _dir(self, k: int) -> Path:
        return round_dir(self.out_dir, k)

    def accepted_items(self, k: int) -> list[PoolItem]:
        """Round ``k``'s accepted items, as they join the pool (a resumed run's pool)."""
        accepted = read_jsonl(self._dir(k) / ACCEPTED, _PoolFields, cut_tail=True)
        return [_pool_item(r) for r in accepted]

    def candidates_written(self, k: int) -> int:
        """How many candidates round ``k`` has written so far (a resumed round's count)."""
        return _count_lines(self._dir(k) / CANDIDATES)

    def add_candidate(self, record: ItemRecord, k: int, *, sync: bool = True) -> None:
        """A committee-accepted item of round ``k``, kept until post-processing."""
        if self._candidates is None or self._candidates_round != k:
            self.close()
            self._dir(k).mkdir(parents=True, exist_ok=True)
            self._candidates = LineFile(self._dir(k) / CANDIDATES)
            self._candidates_round = k
        self._candidates.append(_encoder.encode(record), sync=sync)

    def sync(self) -> None:
        if self._candidates is not None:
            self._candidates.sync()

    def close(self) -> None:
        if self._candidates is not None:
            self._candidates.close()
            self._candidates = None

    async def finish_round(self, k: int) -> tuple[RoundCounts, list[PoolItem]]:
        """Deduplicate round ``k``'s candidates into its accepted items; returns its
        counts and the items that join the pool.

        The file work and the embeddings run in a thread, so the supervisor's
        receive task keeps stamping agents alive meanwhile.
        """
        self.close()
        candidates, admitted, duplicates, joining = await asyncio.to_thread(self._post_process, k)
        self._journal.append(RoundFinished(k, admitted, duplicates), sync=True)
        counts = RoundCounts(candidates, admitted, duplicates)
        self._stats.rounds[str(k)] = counts
        log.info("round_finished", round=k, accepted=admitted, deduplicated=duplicates)
        return counts, joining

    def _post_process(self, k: int) -> tuple[int, int, int, list[PoolItem]]:
        """Dedup round k's candidates and write the outcome; a redo writes nothing twice.

        Returns the numbers of candidates, admitted items and duplicates, and the
        items that join the pool (none after the last round: nothing draws on them).
        """
        written = read_ids(self.out_dir / ACCEPTED) | read_ids(self.out_dir / REJECTED)
        self._dir(k).mkdir(parents=True, exist_ok=True)
        done_here = read_ids(self._dir(k) / ACCEPTED)
        round_file = LineFile(self._dir(k) / ACCEPTED)
        candidates = admitted_count = duplicates = 0
        joining: list[PoolItem] = []
        last = k >= self.total
        ranked = _in_rank_order(self._dir(k) / CANDIDATES)
        try:
            while chunk := list(itertools.islice(ranked, self.post_chunk)):
                candidates += len(chunk)
                admitted, dropped = self._deduplicate(chunk)
                for record in admitted:
                    if record.id not in done_here:
                        round_file.append(_encoder.encode(record), sync=False)
                    if record.id not in written:
                        self._writer.write(record, sync=False)
                        self._stats.count_record(record)
                    if not last:
                        joining.append(_pool_item(record))
                admitted_count += len(admitted)
                for record in dropped:
                    if record.id not in written:
                        self._writer.write(record, sync=False)
                        self._stats.count_record(record)
                duplicates += len(dropped)
        finally:
            round_file.close()  # fsyncs
        self._writer.sync()  # before the journal says the round is done
        return candidates, admitted_count, duplicates, joining

    def _deduplicate(
        self, candidates: list[ItemRecord]
    ) -> tuple[list[ItemRecord], list[ItemRecord]]:
        settings = self.config.dedup
        # Already in rank order (``_in_rank_order``), as DedupPool.admit visits them.
        ordered = candidates
        if not settings.enabled or not ordered:
            return ordered, []
        from gra.data.dedup import Candidate, DedupPool

        if self._dedup is None:
            self._dedup = DedupPool(threshold=settings.threshold, text=settings.text)
            start = 0 if settings.seeds_in_pool else self._pool.seed_count
            self._dedup.add(self._pool.items[start:])
        by_id = {r.id: r for r in ordered}
        decisions = self._dedup.admit(
            [Candidate(r.id, r.instruction, r.response, r.mean or 0.0) for r in ordered]
        )
        admitted, duplicates = [], []
        for decision in decisions:
            record = by_id[decision.id]
            if decision.admitted:
                admitted.append(record)
            else:
                duplicates.append(
                    msgspec.structs.replace(
                        record,
                        decision="rejected",
                        stage="dedup",
                        reason=(
                            f"cosine {decision.similarity:.3f} >= {settings.threshold} "
                            f"to {decision.nearest}"
                        ),
                        duplicate_of=decision.duplicate_of,
                    )
                )
        return admitted, duplicates
