"""The generator's output checks: what a small model returns instead of a new item."""

from __future__ import annotations

import json

import pytest

from gra.agents.roles import InvalidOutput, get_role
from gra.protocols.peer_review import Generate, InstanceState, Policy, VerifyPolicy
from gra.protocols.roles import GenerateRequest, Inspiration
from tests.conftest import ROOT

REQUEST = GenerateRequest(
    "math",
    (),
    inspirations=(
        Inspiration(("linear equations", "solving", "isolating x"), "Solve 2x + 3 = 7."),
        Inspiration(("percentages", "discount", "price"), "A 20% discount on $50."),
    ),
)


def _generated(instruction: str) -> str:
    return json.dumps(
        {"keywords": ["a", "b", "c"], "instruction": instruction, "response": "It is 40."}
    )


def test_an_instruction_that_restates_the_generators_task_is_refused() -> None:
    # Seen in a real run of the default fleet: the prompt came back as the instruction.
    echo = (
        "Write a new keyword triple combining ideas from these items. Please provide a new "
        "keyword that combines concepts related to linear equations, solving, and percentages."
    )
    with pytest.raises(
        InvalidOutput,
        match=r"repeats its own task: 'write a new keyword triple \.\.\. ideas from these items",
    ):
        get_role("generator").parse(REQUEST, _generated(echo))


def test_an_instruction_sharing_a_few_words_with_the_task_is_kept() -> None:
    # "a new keyword triple" (4 words) and "self-contained" are fine in a real task.
    fine = (
        "A shop gives a 20% discount on a $50 shirt and then adds 10% sales tax to the "
        "discounted price. Write a new keyword triple for this problem and find the final price."
    )
    output = get_role("generator").parse(REQUEST, _generated(fine))
    assert output.instruction == fine


@pytest.mark.parametrize(
    "name",
    ["examples/seeds.jsonl", "benchmarks/labelled/coding.jsonl", "benchmarks/labelled/math.jsonl"],
)
def test_no_real_instruction_of_the_shipped_sets_reads_as_an_echo(name: str) -> None:
    generator = get_role("generator")
    plain = GenerateRequest("coding", ())
    lines = (ROOT / name).read_text().splitlines()
    for instruction in (json.loads(line)["instruction"] for line in lines):
        for request in (REQUEST, plain):
            generator.parse(request, _generated(instruction))


def test_a_run_that_checks_by_execution_asks_for_a_checkable_item() -> None:
    """With verification on for its domain, the generator is told what execution can
    check (a function with its signature; one exact answer); otherwise it is not."""
    verify = VerifyPolicy(enabled=True, domains=("coding", "math"))
    checkable = (("coding", "ONE Python function"), ("math", "every number that answer depends on"))
    for domain, words in checkable:
        state = InstanceState("i1", domain, Policy(reviewers=2), "g", ("r1", "r2"), verify=verify)
        (step,) = state.next_steps()
        assert isinstance(step, Generate) and step.request.checkable
        assert words in get_role("generator").prompt(step.request)[0]["content"]
    for domain, policy in (("qa", verify), ("coding", None)):
        state = InstanceState("i1", domain, Policy(reviewers=2), "g", ("r1", "r2"), verify=policy)
        (step,) = state.next_steps()
        assert isinstance(step, Generate) and not step.request.checkable
        assert "checked by" not in get_role("generator").prompt(step.request)[0]["content"]
