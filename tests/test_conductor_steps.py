"""The supervisor's bookkeeping of tasks: the scheduling core alone, driven with
inputs and read through its actions, without processes, sockets or files.

Agents are registered straight into its fleet, and a test sends results in
the order it wants, so races that a live fleet hits only sometimes happen
every time.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import msgspec

from gra.config import load_config
from gra.data.pool import Pool, PoolItem
from gra.data.seeds import load_seeds
from gra.protocols.messages import PROTOCOL_VERSION, Cancel, Hello, Message, Result, Task, Usage
from gra.protocols.roles import (
    Checks,
    GeneratorOutput,
    ReviewOutput,
    Scores,
    UnitTestOutput,
)
from gra.supervisor.actions import Action, Frames, Input, Send
from gra.supervisor.admission import Admission
from gra.supervisor.core import SchedulingCore
from gra.supervisor.sources import Generation
from tests.conftest import SEEDS


class Harness:
    def __init__(self, tmp_path: Path, roles: dict[str, list[str]], extra: str = "") -> None:
        lines = [
            "[run]",
            "target = 1",
            "max_in_flight = 1",
            "domains = {coding = 1}",
            "[seeds]",
            f'path = "{SEEDS}"',
            "[annotate]",
            "enrich = false",
            "seeds = false",
            "[dedup]",
            "enabled = false",
            extra,
        ]
        for model, served in roles.items():
            lines += ["[[agents]]", f'model = "{model}"', "remote = true", f"roles = {served}"]
        path = tmp_path / "fleet.toml"
        path.write_text("\n".join(lines) + "\n")
        config = load_config(path)
        assert config.seeds is not None
        seeds = load_seeds(config.resolve(config.seeds.path), config.seeds)
        pool = Pool(PoolItem(s.id, s.instruction, s.response, s.domain) for s in seeds)
        self.core = SchedulingCore(
            config, Generation(config, pool, 1, 0, 0), Admission.from_config(config, {}, "t")
        )
        # The core reads no clock: the harness's starts at 1000 s and moves only when told.
        self.now = 1000.0
        self.sent: list[tuple[bytes, Message]] = []
        self.actions: list[Action] = []
        pids = itertools.count(1000)
        for model, served in roles.items():
            hello = Hello(f"{model}-0", model, tuple(served), 4, "plugin", next(pids), "here")
            assert hello.version == PROTOCOL_VERSION
            self.core.fleet.register(f"{model}-0".encode(), hello, self.now)
        self.core.fleet_ready = True
        self.answered: set[str] = set()

    def handle(self, *inputs: Input) -> list[Action]:
        actions = self.core.handle(inputs, self.now)
        self.actions += actions
        self.sent += [(a.identity, a.message) for a in actions if isinstance(a, Send)]
        return actions

    def pump(self) -> None:
        self.handle()

    def tasks(self, role: str) -> list[tuple[bytes, Task]]:
        """The tasks of ``role`` sent and not answered yet, oldest first."""
        return [
            (identity, message)
            for identity, message in self.sent
            if isinstance(message, Task)
            and message.role == role
            and message.task_id not in self.answered
        ]

    def cancelled(self) -> set[str]:
        return {m.task_id for _, m in self.sent if isinstance(m, Cancel)}

    def answer(self, sent: tuple[bytes, Task], output: Any) -> None:
        identity, task = sent
        self.answered.add(task.task_id)
        body = msgspec.Raw(msgspec.msgpack.encode(output))
        result = Result(task.task_id, body, Usage())
        self.handle(Frames([(identity, result)], (identity,), self.now))

    @property
    def state(self) -> Any:
        (instance,) = self.core.instances.values()
        return instance.state


def item(n: int) -> GeneratorOutput:
    return GeneratorOutput(
        ("addition", "functions", f"v{n}"),
        f"Write a Python function add_{n}(a, b) that adds two numbers.",
        f"def add_{n}(a, b):\n    return a + b",
    )


def review(score: int) -> ReviewOutput:
    return ReviewOutput(Checks(True, True, True), Scores(*[score] * 6), "ok", "none")


def unit_tests(n: int) -> UnitTestOutput:
    return UnitTestOutput((f"assert add_{n}(2, 3) == 5",), f"def add_{n}(a, b):\n    return a + b")


def test_a_revised_item_never_takes_a_result_of_the_round_before(tmp_path: Path) -> None:
    """A committee rejects while the item's tests are still being written; the
    generator revises. The old round's test writing is cancelled, and its result,
    arriving after the revised item's own tests were asked for, is not recorded
    as a test set of the revised item."""
    harness = Harness(
        tmp_path,
        {
            "g": ["generator"],
            "r1": ["reviewer"],
            "r2": ["reviewer"],
            "t": ["tester"],
            "v": ["verifier"],
        },
        "[protocol]\nmax_rounds = 2\nreviewers = 2\n[verify]\nenabled = true\ntest_sets = 1\n",
    )
    harness.pump()
    (generate,) = harness.tasks("generator")
    harness.answer(generate, item(1))
    (old_tests,) = harness.tasks("tester")
    for sent in harness.tasks("reviewer"):
        harness.answer(sent, review(5))  # mean 5 < tau: revise
    assert harness.state.round == 2

    (generate,) = harness.tasks("generator")
    harness.answer(generate, item(2))
    new_tests = [t for t in harness.tasks("tester") if t[1].task_id != old_tests[1].task_id]
    assert len(new_tests) == 1, "the revised item's tests were not asked for"
    late = harness.core.stats.late_results
    harness.answer(old_tests, unit_tests(1))  # the agent had not seen the cancel yet
    assert harness.state.tests == {}, "round 1's tests were recorded against round 2's item"
    assert harness.core.stats.late_results == late + 1
    assert old_tests[1].task_id in harness.cancelled(), "the moot test writing went on"

    harness.answer(new_tests[0], unit_tests(2))
    (seat,) = harness.state.tests.values()
    assert seat.tests == ("assert add_2(2, 3) == 5",)
    assert harness.tasks("verifier"), "the revised item's tests never reached the verifier"


def test_a_failed_check_revises_only_once_the_whole_committee_has_answered(
    tmp_path: Path,
) -> None:
    """With revision rounds, one reviewer's failed check does not send the item back
    while another's review of it is still coming (it would land on the revised
    item): the generator gets the whole committee's feedback, as the README says."""
    harness = Harness(
        tmp_path,
        {"g": ["generator"], "r1": ["reviewer"], "r2": ["reviewer"]},
        "[protocol]\nmax_rounds = 2\nreviewers = 2\n",
    )
    harness.pump()
    (generate,) = harness.tasks("generator")
    harness.answer(generate, item(1))
    reviews = {identity: sent for identity, sent in harness.tasks("reviewer")}
    failed = ReviewOutput(Checks(True, True, False), Scores(*[9] * 6), "ok", "unclear")
    harness.answer((b"r1-0", reviews[b"r1-0"]), failed)
    assert harness.tasks("generator") == [], "revised before r2's review of item 1 came in"
    harness.answer((b"r2-0", reviews[b"r2-0"]), review(9))
    (generate,) = harness.tasks("generator")
    assert harness.state.round == 2
    assert sorted(harness.state.history[0].reviews) == ["r1", "r2"]
    harness.answer(generate, item(2))
    for sent in harness.tasks("reviewer"):
        harness.answer(sent, review(9))
    assert not harness.core.instances, "the revised item was never decided"
    assert harness.core.accepted == 1  # accepted by round 2's committee
