"""Random role assignment that never waits on a busy model while an equivalent draw is free.

The method draws each instance's generator uniformly and its committee from
the other models. Drawn independently, a busy model gets its share of new
instances anyway and they queue behind it while another model sits idle.
``BalancedDraw`` keeps the draws random and the shares equal, but lets
"who is free now" break the tie:

- a model is *eligible* for a role while it has been drawn for that role
  fewer than ``slack`` times more than the least-drawn model of the pool;
- the generator is drawn uniformly from the eligible models that are free,
  or, if none of them is, uniformly from the eligible ones;
- committee seats are filled one at a time the same way from the other
  reviewer models (free eligible first, then eligible, then the rest);
- the annotator and the adjudicator (single seats with counts of their own)
  are drawn the same way from their candidates.

So at every moment each model's count for a role is within ``slack`` of
every other's (the long-run distribution is exactly uniform), every draw is
random among the models that keep it so, and a free model is never passed
over for a busy one that is not owed a turn. ``slack = 1`` gives random
order with strict turns; a larger slack lets free models run further ahead.

Drawn independently, the counts of a role drift apart like a random walk
(by about the square root of the number of draws): over a long run one
model's queue grows while another's runs dry and its agents idle. Bounding
the counts keeps every model's share of the work level at every moment.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Sequence

from gra.protocols.peer_review import Policy, ProtocolError


class BalancedDraw:
    def __init__(self, slack: int = 2) -> None:
        if slack < 1:
            raise ValueError(f"slack must be >= 1, got {slack}")
        self.slack = slack
        self.generated: Counter[str] = Counter()
        self.reviewed: Counter[str] = Counter()
        self.seats: dict[str, Counter[str]] = {}

    def draw(
        self,
        generators: Sequence[str],
        policy: Policy,
        rng: random.Random,
        *,
        reviewer_models: Sequence[str] | None = None,
        free_generators: Collection[str] = (),
        free_reviewers: Collection[str] = (),
    ) -> tuple[str, tuple[str, ...]]:
        """A generator and its committee; counts are updated only on success."""
        pool = sorted(set(generators))
        reviewers_pool = sorted(set(reviewer_models)) if reviewer_models is not None else pool
        if not pool:
            raise ProtocolError("no model can generate")
        size = policy.committee_size(len(set(pool) | set(reviewers_pool)))
        generator = self._pick(pool, self.generated, set(free_generators), rng)
        others = [m for m in reviewers_pool if m != generator]
        if not others:
            raise ProtocolError(f"no model other than the generator {generator} can review")
        committee = self.committee(others, min(size, len(others)), rng, free_reviewers)
        self.generated[generator] += 1
        return generator, committee

    def committee(
        self,
        models: Sequence[str],
        size: int,
        rng: random.Random,
        free: Collection[str] = (),
    ) -> tuple[str, ...]:
        """``size`` distinct reviewers from ``models`` (review mode calls this directly)."""
        left = sorted(set(models))
        if size > len(left):
            raise ProtocolError(f"a committee of {size} from {len(left)} models")
        chosen: list[str] = []
        free_set = set(free)
        for _ in range(size):
            seat = self._pick(left, self.reviewed, free_set, rng)
            chosen.append(seat)
            left.remove(seat)
        self.reviewed.update(chosen)
        return tuple(chosen)

    def seat(
        self,
        role: str,
        candidates: Collection[str],
        rng: random.Random,
        free: Collection[str] = (),
    ) -> str | None:
        """One model for a single-seat role (annotator, adjudicator); None if no candidate."""
        pool = sorted(set(candidates))
        if not pool:
            return None
        counts = self.seats.setdefault(role, Counter())
        chosen = self._pick(pool, counts, set(free), rng)
        counts[chosen] += 1
        return chosen

    def _pick(
        self, pool: Sequence[str], counts: Counter[str], free: set[str], rng: random.Random
    ) -> str:
        least = min(counts[m] for m in pool)
        eligible = [m for m in pool if counts[m] < least + self.slack]
        free_eligible = [m for m in eligible if m in free]
        return rng.choice(free_eligible or eligible)
