"""What the fleet wrote for each seed, kept in ``seed_annotations.jsonl`` so a
resumed run need not annotate a seed twice."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gra.rundir import SEED_ANNOTATIONS, read_jsonl


class SeedAnnotation(msgspec.Struct, frozen=True):
    """One seed's annotation: its domain label, keyword triple and summary."""

    seed: str
    domain: str
    keywords: tuple[str, ...]
    summary: str
    annotator: str


def read_seed_annotations(out_dir: Path) -> list[SeedAnnotation]:
    """The annotations written so far (a torn last line cut, a corrupt one named)."""
    return list(read_jsonl(out_dir / SEED_ANNOTATIONS, SeedAnnotation, cut_tail=True))
