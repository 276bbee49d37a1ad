"""Testers' asserts settled by vote with their own solutions, in the real sandbox."""

from __future__ import annotations

import pytest

from gra.protocols.roles import VerificationOutput, VerifyRequest
from gra.sandbox import SandboxLimits, sandbox_unavailable
from gra.verify import VerifySettings, verify

SETTINGS = VerifySettings(limits=SandboxLimits(wall_s=10.0, cpu_s=10), test_timeout_s=1.0)
TASK = "Write `count_even(xs)` returning how many numbers in the list xs are even."
RIGHT = "```python\ndef count_even(xs):\n    return sum(1 for x in xs if x % 2 == 0)\n```"
# Wrong on zero, which it does not count as even.
WRONG = "```python\ndef count_even(xs):\n    return sum(1 for x in xs if x % 2 == 0 and x)\n```"
REFERENCE = "def count_even(xs):\n    return len([x for x in xs if not x % 2])\n"
OTHER_REFERENCE = (
    "def count_even(xs):\n    n = 0\n    for x in xs:\n        n += x % 2 == 0\n    return n\n"
)
BROKEN_REFERENCE = "def count_even(xs):\n    return len(xs)\n"


@pytest.fixture(autouse=True)
def sandbox() -> None:
    problem = sandbox_unavailable()
    assert problem is None, f"the sandbox is unavailable: {problem}"


async def _verify(
    response: str, *sets: tuple[str, ...], references: tuple[str, ...] = (), task: str = TASK
) -> VerificationOutput:
    request = VerifyRequest("coding", task, response, test_sets=sets, programs=references)
    return await verify(request, SETTINGS)


async def test_a_testers_wrong_expected_value_is_outvoted() -> None:
    slip = ("assert count_even([1, 2, 4]) == 3", "assert count_even([]) == 0")
    alone = await _verify(RIGHT, slip)
    assert alone.verdict == "failed"  # the tester's slip alone fails a right answer
    voted = await _verify(RIGHT, slip, references=(REFERENCE, OTHER_REFERENCE))
    assert voted.verdict == "passed", voted
    assert voted.tests_failed == 0


async def test_a_wrong_response_fails_where_the_derivations_agree() -> None:
    tests = ("assert count_even([0, 1]) == 1", "assert count_even([2]) == 1")
    # Two solutions whose authors are not known: each is a derivation of its own.
    result = await _verify(WRONG, tests, references=(REFERENCE, OTHER_REFERENCE))
    assert result.verdict == "failed"
    assert "got 0; 3 independent derivations give 1" in result.evidence


async def test_one_tester_and_its_own_solution_are_one_derivation() -> None:
    tests = ("assert count_even([0, 1]) == 1", "assert count_even([2]) == 1")
    result = await _verify(WRONG, tests, references=(REFERENCE,))
    assert result.verdict == "cannot_verify", result
    assert result.tests_failed == 0


async def test_an_assert_nobody_agrees_on_is_not_counted() -> None:
    tests = ("assert count_even([0, 3, 6]) == 7",)
    result = await _verify(RIGHT, tests, references=(BROKEN_REFERENCE,))
    # Tester says 7, the reference says 3, the response says 2: no value has two votes.
    assert result.verdict == "cannot_verify", result
    assert result.tests_failed == 0


async def test_a_reference_that_fails_a_stated_example_does_not_vote() -> None:
    task = TASK + "\nFor example count_even([1, 2, 3]) == 1."
    tests = ("assert count_even([5, 6, 8]) == 3",)  # wrong; the broken reference agrees
    result = await _verify(RIGHT, tests, references=(BROKEN_REFERENCE,), task=task)
    # The stated example passes and no test counts: that alone is no verdict.
    assert result.verdict == "cannot_verify", result
    assert result.tests_failed == 0


async def test_asserts_without_equality_vote_on_the_outcome() -> None:
    tests = ("assert count_even([1, 3]) < 1", "assert isinstance(count_even([2]), int)")
    other = ("assert count_even([5]) <= 0",)
    right = await _verify(RIGHT, tests, other, references=(REFERENCE, OTHER_REFERENCE))
    assert right.verdict == "passed"
    assert right.tests_failed == 0
    broken = await _verify(BROKEN_REFERENCE, tests, other, references=(REFERENCE, OTHER_REFERENCE))
    assert broken.verdict == "failed"


# A tester whose expected value is wrong writes a solution that agrees with it: the
# two come from one call, one derivation, and must not outvote the others as two.
SLIPPED_REFERENCE = "def count_even(xs):\n    return sum(1 for x in xs if x % 2 == 0) + (0 in xs)\n"


async def test_a_testers_own_solution_does_not_second_its_own_asserts() -> None:
    slip = ("assert count_even([0, 1]) == 2",)  # wrong: 1; its author's solution says 2 too
    other = ("assert count_even([2, 4]) == 2",)
    # Set i's author wrote reference i: its solution does not vote on its own asserts.
    result = await _verify(RIGHT, slip, other, references=(SLIPPED_REFERENCE, OTHER_REFERENCE))
    assert result.verdict == "passed", result
    assert result.tests_failed == 0


async def test_a_tester_contradicting_itself_abstains_on_its_asserts() -> None:
    # The author's own solution gives 1 (right), its assert says 2: neither counts, and
    # the one other derivation (1) is not two.
    tests = ("assert count_even([0, 1]) == 2",)
    other = ("assert count_even([3]) == 0",)
    result = await _verify(RIGHT, tests, other, references=(REFERENCE, OTHER_REFERENCE))
    assert result.verdict == "passed", result
    assert result.tests_failed == 0


async def test_another_testers_solution_confirms_an_assert() -> None:
    tests = ("assert count_even([0, 1]) == 1",)
    other = ("assert count_even([2]) == 1",)
    result = await _verify(WRONG, tests, other, references=(REFERENCE, OTHER_REFERENCE))
    assert result.verdict == "failed", result
    assert "got 0; 2 independent derivations give 1" in result.evidence


async def test_a_failure_the_derivations_confirm_fails_the_item_from_one_set() -> None:
    # Only the first set reaches zero, the case the wrong response gets wrong; the
    # other two never touch it. Two independent derivations settle that assert, so
    # the failure stands though most sets pass.
    edge = ("assert count_even([0, 1]) == 1",)
    plain = ("assert count_even([2, 3]) == 1",)
    more = ("assert count_even([4, 6, 7]) == 2",)
    result = await _verify(WRONG, edge, plain, more, references=(REFERENCE, OTHER_REFERENCE))
    assert result.verdict == "failed", result
    assert result.sets_failed == 1
    # Three sets, two solutions: whose is whose is not known, so all three vote.
    assert "got 0; 3 independent derivations give 1" in result.evidence


async def test_an_unconfirmed_failure_in_one_set_of_three_does_not_fail_the_item() -> None:
    # Without solutions nothing settles the slip: one set of three is not enough.
    slip = ("assert count_even([2, 4]) == 3",)
    plain = ("assert count_even([2, 3]) == 1",)
    more = ("assert count_even([4, 6, 7]) == 2",)
    result = await _verify(RIGHT, slip, plain, more)
    assert result.verdict == "passed", result
    assert result.sets_failed == 1


HALF = "def half(n):\n    return n // 2\n"
OTHER_HALF = "def half(n):\n    return int(n / 2)\n"


async def test_equal_numbers_are_one_value_whatever_their_type() -> None:
    # 0.0 == 0 in Python: the response that gives 0.0 passes an assert on 0.
    response = "```python\ndef half(n):\n    return n / 2 if n else 0.0\n```"
    tests = ("assert half(0) == 0",)
    task = "Write `half(n)`: half of the even integer n."
    result = await _verify(response, tests, references=(HALF, OTHER_HALF), task=task)
    assert result.verdict == "passed", result
    assert result.tests_failed == 0


FIRST = "```python\ndef first(xs):\n    return xs[0]\n```"
FIRST_OR_NONE = "def first(xs):\n    return xs[0] if xs else None\n"
OTHER_FIRST_OR_NONE = "def first(xs):\n    for x in xs:\n        return x\n"


async def test_raising_where_the_derivations_return_none_is_not_counted() -> None:
    # The instruction says nothing of an empty list: raising and returning None are
    # both ways to say there is no answer.
    task = "Write `first(xs)` returning the first element of the list xs."
    tests = ("assert first([]) == None", "assert first([3, 4]) == 3")
    result = await _verify(FIRST, tests, references=(FIRST_OR_NONE, OTHER_FIRST_OR_NONE), task=task)
    assert result.verdict == "passed", result
    assert result.tests_failed == 0


async def test_raising_where_the_instruction_asks_for_none_fails() -> None:
    task = "Write `first(xs)` returning the first element of the list xs, or None when it is empty."
    tests = ("assert first([]) == None", "assert first([3, 4]) == 3")
    result = await _verify(FIRST, tests, references=(FIRST_OR_NONE, OTHER_FIRST_OR_NONE), task=task)
    assert result.verdict == "failed", result
    assert "IndexError" in result.evidence


# Wrong for lists holding zero: it fails the stated example below, so it never votes.
EXAMPLE_BREAKER = "def count_even(xs):\n    return sum(1 for x in xs if x and x % 2 == 0) + 1\n"


async def test_testers_whose_solutions_cannot_vote_still_agree_by_their_asserts() -> None:
    # Both testers' solutions fail the stated example, so neither votes; both
    # testers wrote the same call and the same expected value: two derivations.
    task = TASK + "\nFor example count_even([1, 2, 3]) == 1."
    first = ("assert count_even([0, 5]) == 1",)
    second = ("assert count_even([0, 5]) == 1", "assert count_even([7]) == 0")
    refs = (EXAMPLE_BREAKER, EXAMPLE_BREAKER)
    result = await _verify(WRONG, first, second, references=refs, task=task)
    assert result.verdict == "failed", result
    assert "2 independent derivations give 1" in result.evidence
    right = await _verify(RIGHT, first, second, references=refs, task=task)
    assert right.verdict == "passed", right
