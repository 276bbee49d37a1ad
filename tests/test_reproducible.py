"""Reproducible runs: content and sampling seeds come from the run's seed, not from timing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from gra.agents.roles import REVIEWER
from gra.agents.runtime import AgentRuntime
from gra.backends.base import ChatMessages, Completion, JsonSchema, Sampling
from gra.bus import Router
from gra.protocols.messages import (
    FRAME_DECODER,
    FRAME_ENCODER,
    Hello,
    Result,
    Shutdown,
    Task,
    Welcome,
)
from gra.protocols.peer_review import Generate, Generated, InstanceState, Policy, Replaced, Review
from gra.protocols.reproducible import (
    draw_content,
    generation_instance_id,
    instance_rng,
    output_try_seed,
    step_seed,
    task_seed,
)
from gra.protocols.roles import GeneratedItem, GenerateRequest, ReviewRequest
from tests.conftest import next_frame, run_gra, scripted_config
from tests.doubles import ScriptedBackend


class Seed:
    def __init__(self, name: str, domain: str) -> None:
        self.name, self.domain = name, domain


SEEDS = [Seed(f"c{i}", "coding") for i in range(6)] + [Seed(f"m{i}", "math") for i in range(2)]


def by_domain(domain: str) -> list[Seed]:
    return [s for s in SEEDS if s.domain == domain]


def draw(run_seed: int, number: int) -> tuple[str, list[str]]:
    rng = instance_rng(run_seed, generation_instance_id(1, number))
    domain, shots = draw_content(rng, None, SEEDS, by_domain, 2)
    return domain, [s.name for s in shots]


def test_an_instance_draws_the_same_content_whatever_was_drawn_before() -> None:
    forward = [draw(7, n) for n in range(1, 201)]
    backward = [draw(7, n) for n in reversed(range(1, 201))][::-1]
    assert forward == backward
    assert len(set(map(str, forward))) > 20  # not one draw for every instance
    assert forward != [draw(8, n) for n in range(1, 201)]


def test_domains_follow_the_seed_proportions_and_the_configured_weights() -> None:
    domains = Counter(draw(3, n)[0] for n in range(1, 4001))
    assert 0.70 < domains["coding"] / 4000 < 0.80  # 6 of 8 seeds
    weighted = Counter(
        draw_content(instance_rng(3, f"x{n}"), {"math": 3.0, "coding": 1.0}, SEEDS, by_domain, 1)[0]
        for n in range(4000)
    )
    assert 0.70 < weighted["math"] / 4000 < 0.80
    # Shots come from the drawn domain, without repeats, capped by the pool.
    for n in range(1, 200):
        domain, shots = draw(5, n)
        assert len(shots) == 2 and len(set(shots)) == 2
        assert all(s.startswith(domain[0]) for s in shots)
    assert len(draw_content(instance_rng(1, "y"), {"math": 1.0}, SEEDS, by_domain, 9)[1]) == 2


def test_task_seeds_differ_by_every_part_and_fit_every_backend() -> None:
    base = task_seed(7, "r1-000001", 1, "reviewer", 0, 1)
    variants = [
        task_seed(8, "r1-000001", 1, "reviewer", 0, 1),
        task_seed(7, "r1-000002", 1, "reviewer", 0, 1),
        task_seed(7, "r1-000001", 2, "reviewer", 0, 1),
        task_seed(7, "r1-000001", 1, "generator", 0, 1),
        task_seed(7, "r1-000001", 1, "reviewer", 1, 1),
        task_seed(7, "r1-000001", 1, "reviewer", 0, 2),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    seeds = [task_seed(0, f"r1-{n:06d}", 1, "generator", 0, 1) for n in range(5000)]
    assert all(0 <= s < 2**31 for s in seeds)
    assert len(set(seeds)) > 4990


def test_output_retries_sample_anew_but_the_first_try_keeps_the_task_seed() -> None:
    seed = task_seed(1, "r1-000003", 1, "generator", 0, 1)
    tries = [output_try_seed(seed, k) for k in range(4)]
    assert tries[0] == seed
    assert len(set(tries)) == 4


def test_seeds_do_not_depend_on_the_interpreter_hash_salt() -> None:
    """Another process (another PYTHONHASHSEED) must compute the same seeds and draws."""
    code = (
        "from gra.protocols.reproducible import task_seed, instance_rng;"
        "print(task_seed(7, 'r1-000001', 1, 'reviewer', 2, 1), instance_rng(7, 'r1-9').random())"
    )
    outputs = set()
    for salt in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": salt},
        )
        outputs.add(done.stdout.strip())
    here = f"{task_seed(7, 'r1-000001', 1, 'reviewer', 2, 1)} {instance_rng(7, 'r1-9').random()}"
    assert outputs == {here}


def _records(out: Path) -> dict[str, tuple[object, ...]]:
    """Each finished instance: its content, item, decision and stage (not its reviews:
    an early reject keeps only the reviews that had arrived, which timing decides)."""
    found: dict[str, tuple[object, ...]] = {}
    for name in ("rejected.jsonl", "round-1/candidates.jsonl"):
        path = out / name
        for line in path.read_text().splitlines() if path.exists() else []:
            r = json.loads(line)
            found[r["id"]] = (
                r["domain"], r["seed_ids"], r["instruction"], r["response"], r["decision"],
                r["stage"],
            )  # fmt: skip
    return found


def test_two_runs_with_the_same_seed_write_the_same_items_whatever_the_timing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real agent processes over real sockets, backed by a double whose answers depend
    only on the prompt and the sampling seed: different speeds, concurrency and role
    draws must still give every instance id the same content, item and decision."""
    monkeypatch.setenv("GRA_DOUBLE_SEEDED", "1")
    runs = []
    for name, delay, in_flight, seed in (
        ("fast", "0.005", 8, 11),
        ("slow", "0.03", 2, 11),
        ("other", "0.005", 8, 12),
    ):
        monkeypatch.setenv("GRA_DOUBLE_DELAY_S", delay)
        directory = tmp_path / name
        directory.mkdir()
        config = scripted_config(
            directory,
            ["a", "b", "c"],
            target=12,
            max_instances=12,
            max_in_flight=in_flight,
            capacity=2,
            seed=seed,
        )
        run_gra("run", str(config), "--out", str(directory / "out"), "--no-progress")
        runs.append(_records(directory / "out"))
    fast, slow, other = runs
    assert len(fast) == 12
    assert fast == slow
    stages = Counter(record[-1] for record in fast.values())
    assert len(stages) > 1, stages  # the seeded scores decide differently
    differ = [i for i in fast if fast[i][2] != other.get(i, (None,) * 3)[2]]
    assert len(differ) == 12


class SeedRecordingBackend(ScriptedBackend):
    """Records each call's sampling seed; its first ``invalid`` answers are not JSON."""

    def __init__(self, invalid: int) -> None:
        super().__init__("double")
        self.delay_s = 0.0
        self.invalid = invalid
        self.seeds: list[int | None] = []

    async def complete(
        self, messages: ChatMessages, schema: JsonSchema, sampling: Sampling
    ) -> Completion:
        self.seeds.append(sampling.seed)
        if len(self.seeds) <= self.invalid:
            return Completion("not json", 1, 1, 0.0, "stop")
        return await super().complete(messages, schema, sampling)


@pytest.mark.parametrize("seed", [123456789, None])
async def test_an_agent_samples_each_output_try_with_its_own_seed(
    router: Router, seed: int | None
) -> None:
    """Over a real ROUTER: the task's seed for the first call, a new one per retry."""
    backend = SeedRecordingBackend(invalid=2)
    runtime = AgentRuntime(
        "seeded-0", backend, {"reviewer": REVIEWER}, router.bound, heartbeat_interval_s=0.2
    )
    agent = asyncio.create_task(runtime.run())
    identity, _ = await next_frame(router, Hello)
    assert await router.send(identity, Welcome(heartbeat_interval_s=0.2, heartbeat_misses=50))
    body = msgspec.msgpack.encode(ReviewRequest("math", "What is 2 + 2?", "4."))
    task = Task("r1-000001.t1", "r1-000001", "reviewer", 1, 30.0, msgspec.Raw(body), seed)
    assert await router.send(identity, task)
    _, result = await next_frame(router, Result)
    assert result.usage.calls == 3
    if seed is None:
        assert backend.seeds == [None, None, None]
    else:
        assert backend.seeds == [seed, output_try_seed(seed, 1), output_try_seed(seed, 2)]
    assert await router.send(identity, Shutdown(drain=True, reason="test over"))
    await asyncio.wait_for(agent, 10)


def test_a_task_frame_with_a_seed_out_of_range_is_refused() -> None:
    frame = Task("t", "i", "reviewer", 1, 1.0, msgspec.Raw(b"\x80"), 1 << 32)
    with pytest.raises(msgspec.ValidationError, match="seed"):
        FRAME_DECODER.decode(FRAME_ENCODER.encode(frame))
    largest = msgspec.structs.replace(frame, seed=(1 << 32) - 1)
    assert FRAME_DECODER.decode(FRAME_ENCODER.encode(largest)) == largest


def test_a_reviewer_seed_belongs_to_its_seat_and_stays_with_it_after_a_hand_over() -> None:
    state = InstanceState("r1-000004", "math", Policy(), "g", ("a", "b"), ())
    state.apply(Generated("g", GeneratedItem("What is 2 + 2?", "4.")))
    generate_seed = step_seed(3, state, Generate("g", GenerateRequest("math", ())), 1)
    reviews = {s.model: s for s in state.next_steps() if isinstance(s, Review)}
    before = {m: step_seed(3, state, step, 1) for m, step in reviews.items()}
    assert before["a"] == task_seed(3, "r1-000004", 1, "reviewer", 0, 1)
    assert before["b"] == task_seed(3, "r1-000004", 1, "reviewer", 1, 1)
    assert len({generate_seed, *before.values()}) == 3
    state.apply(Replaced("b", "c"))
    (step_c,) = [s for s in state.next_steps() if isinstance(s, Review) and s.model == "c"]
    assert step_seed(3, state, step_c, 1) == before["b"]
    assert step_seed(3, state, step_c, 2) != before["b"]
