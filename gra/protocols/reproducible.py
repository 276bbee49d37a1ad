"""Draws that depend only on the run's seed and an instance's id, never on timing.

Which model takes which role is drawn at dispatch time and depends on which
models are free (see ``assignment``), so it cannot be reproduced from the seed
alone. What an instance is made of (its domain and few-shot items) and how each
of its calls samples can: both are derived here from ``[run] seed`` and the
instance id. Two runs with the same seed, seeds file and pool therefore ask
the same questions with the same sampling seeds, whatever order the fleet
answers in, and a plain loop that makes the same calls gets the same outputs
from a backend that honours per-request seeds (llama.cpp, vLLM).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from gra.protocols.peer_review import InstanceState, Review, TaskStep, step_seat

Item = TypeVar("Item")


class HasDomain(Protocol):
    @property
    def domain(self) -> str: ...


# 31 bits: a valid seed for signed and unsigned 32-bit seed types alike (llama.cpp: uint32).
_SEED_BITS = 31


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts).encode()
    value = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
    return value & ((1 << _SEED_BITS) - 1)


def generation_instance_id(synthesis_round: int, number: int) -> str:
    """The id of the ``number``-th generation instance started in a run."""
    return f"r{synthesis_round}-{number:06d}"


def instance_rng(run_seed: int, instance_id: str) -> random.Random:
    """The generator of one instance's content draws."""
    return random.Random(_digest("instance", run_seed, instance_id))


def draw_content(
    rng: random.Random,
    domain_weights: Mapping[str, float] | None,
    seeds: Sequence[HasDomain],
    by_domain: Callable[[str], Sequence[Item]],
    few_shot: int,
) -> tuple[str, list[Item]]:
    """An instance's domain and its few-shot items.

    The domain follows ``domain_weights`` when set, else the proportions of
    ``seeds`` (in file order, with the domains the fleet gave unlabelled
    ones); the shots are drawn without replacement from that domain's pool.
    """
    if domain_weights:
        names = sorted(domain_weights)
        domain = rng.choices(names, weights=[domain_weights[n] for n in names])[0]
    else:
        domain = rng.choice(seeds).domain
    pool = by_domain(domain)
    return domain, rng.sample(pool, min(few_shot, len(pool)))


def task_seed(
    run_seed: int, instance_id: str, review_round: int, role: str, seat: int, attempt: int
) -> int:
    """The sampling seed of one task attempt.

    ``seat`` is the step's place in its role (a reviewer's index on the
    committee, 0 for single-seat roles), not the model: a seat handed to
    another model keeps its seed, and the same seat samples the same way in
    any run with the same seed. Each retry of a task gets a new seed, so a
    retry is not a replay of the output that failed.
    """
    return _digest("task", run_seed, instance_id, review_round, role, seat, attempt)


def output_try_seed(seed: int, output_try: int) -> int:
    """The seed of an agent's ``output_try``-th call (from 0) for a task seeded ``seed``.

    The first call uses the task's seed as it is; each further try after an
    invalid output samples anew.
    """
    return seed if output_try == 0 else _digest("try", seed, output_try)


def step_seed(run_seed: int, state: InstanceState, step: TaskStep, attempt: int) -> int:
    """``task_seed`` of a step the instance asks for now, its seat read off the committee."""
    seat = state.reviewers.index(step.model) if isinstance(step, Review) else step_seat(step)
    return task_seed(run_seed, state.instance_id, state.round, step.role, seat, attempt)
