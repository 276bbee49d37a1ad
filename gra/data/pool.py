"""The pool generation draws its few-shot items from: the seeds, then each
round's accepted items.

Pure data: the supervisor's scheduling core owns it and draws from it; the
round's post-processing (``gra.supervisor.rounds``) reads it to seed the
deduplication and hands back the items that join it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolItem:
    """Anything generation may draw on: a seed or an accepted item."""

    id: str
    instruction: str
    response: str
    domain: str
    keywords: tuple[str, ...] = ()
    summary: str = ""


class Pool:
    """The seeds first, then accepted items in the order their rounds admitted them."""

    def __init__(self, seeds: Iterable[PoolItem]) -> None:
        self.items: list[PoolItem] = list(seeds)
        self.seed_count = len(self.items)
        self._by_domain: dict[str, list[PoolItem]] | None = None

    @property
    def seed_items(self) -> list[PoolItem]:
        """The seeds as the pool holds them (annotated domains, keywords, summaries)."""
        return self.items[: self.seed_count]

    def extend(self, items: Iterable[PoolItem]) -> None:
        self.items += items
        self._by_domain = None

    def annotate_seed(
        self, seed_id: str, domain: str | None, keywords: tuple[str, ...], summary: str
    ) -> None:
        """Give a seed the domain, keywords and summary the fleet wrote."""
        for i, item in enumerate(self.seed_items):
            if item.id == seed_id:
                self.items[i] = PoolItem(
                    item.id,
                    item.instruction,
                    item.response,
                    domain or item.domain,
                    keywords,
                    summary,
                )
                self._by_domain = None
                return

    def by_domain(self, domain: str) -> list[PoolItem]:
        if self._by_domain is None:
            self._by_domain = {}
            for item in self.items:
                self._by_domain.setdefault(item.domain, []).append(item)
        return self._by_domain.get(domain, [])
