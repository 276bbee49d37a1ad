"""Testers' asserts re-judged by independent solutions (differential testing).

A small model writes good test inputs but often a wrong expected value: it must
work the answer out in its head. Each tester therefore also writes its own
solution from the instruction alone, and every solution runs the same asserts.
Votes are independent derivations, one per tester: for an assert, its author
votes for the expected value it wrote (its own solution, written in the same
call, is the same derivation: it does not vote again, and where it gives
another value the author contradicts itself and abstains), and every other
tester's solution votes for what it returns. A value with at least
``min_votes`` votes, and more than any other value, is the oracle. The response
passes the assert when it gives the oracle's value and fails it when it gives
another; with no oracle the assert is not counted (nobody agrees what it should
give). A reference solution that fails any example the instruction itself
states does not vote. When the solutions' authors are not known (``owners``
not given), every solution votes. A tester whose solution cannot vote still votes
by what its own asserts say the same call gives (a derivation written as a test).

Asserts that are not ``A == B`` vote on the outcome instead: the tester says
"passes", each reference solution says what it did.

An assert the vote settles is a stronger witness than a tester's word: its
failure fails the item on its own (``HarnessRun.settled``), where an unsettled
failure needs agreement across test sets. One case is not counted: the
response raises where the derivations return None, on an input whose outcome
the instruction never names (``none_is_stated`` false). Raising and returning
None are both ways to say "no answer"; the instruction did not pick one.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from gra.verify.code import HarnessRun, TestResult

_PASSES = "<the assert passes>"
_FAILS = "<the assert fails>"
_NO_VALUE = "<no value: the code raised or timed out>"


def _examples_hold(run: HarnessRun) -> bool:
    """The reference imported and passed every stated example it ran."""
    if run.import_status not in ("ok", "exit", "input"):
        return False
    return all(result != "fail" for (g, _), (result, _) in run.results.items() if g == 0)


def _value(run: HarnessRun, key: tuple[int, int], equality: bool) -> str | None:
    """What ``run`` says the assert gives (None: it has no say)."""
    if key not in run.results:
        return None
    result, _ = run.results[key]
    if result not in ("pass", "fail"):
        return None
    if not equality:
        return _PASSES if result == "pass" else _FAILS
    actual = run.values.get(key, (None, None))[0]
    return actual


def _call(test: str) -> str | None:
    """The left side of an ``assert A == B`` test, normalised (None: another form)."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    compare = tree.body[0].test
    if not (
        isinstance(compare, ast.Compare)
        and len(compare.ops) == 1
        and isinstance(compare.ops[0], ast.Eq)
    ):
        return None
    return ast.unparse(compare.left)


def _expected(runs: Sequence[HarnessRun], key: tuple[int, int]) -> str | None:
    """The expected value of an ``==`` assert, as the harness saw it in any run."""
    for run in runs:
        value = run.values.get(key)
        if value is not None and value[1] is not None:
            return value[1]
    return None


def _oracle(votes: Counter[str], min_votes: int) -> str | None:
    ranked = votes.most_common(2)
    if not ranked or ranked[0][1] < min_votes:
        return None
    if len(ranked) == 2 and ranked[1][1] == ranked[0][1]:
        return None
    return ranked[0][0]


def _raised(result: TestResult, detail: str) -> bool:
    """The code raised an exception (a failure with no value that is not a timeout)."""
    return result == "fail" and not detail.startswith(("got ", "timed out"))


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def reconcile(
    response: HarnessRun,
    references: Sequence[HarnessRun],
    *,
    min_votes: int = 2,
    owners: Sequence[int | None] | None = None,
    none_is_stated: bool = True,
    tests: Sequence[Sequence[str]] = (),
) -> HarnessRun:
    """The response's run with every tester's assert (groups 1..n) judged by vote.

    ``owners[i]``: the test group whose author wrote ``references[i]`` (None: not known).
    Stated examples (group 0) are the instruction's own word and stay as they are.
    ``tests``: the texts of every group, examples first. With them and the owners
    known, a tester whose solution does not vote (it fails a stated example, or
    wrote none) still votes by its own asserts: the same call, written in its set
    with an expected value. A tester whose assert and solution give different
    values for a call contradicts itself and abstains on it.
    """
    authors = list(owners) if owners is not None else [None] * len(references)
    if len(authors) != len(references):
        raise ValueError("one owner per reference solution")
    voters = [(r, o) for r, o in zip(references, authors, strict=True) if _examples_hold(r)]
    runs = [response, *(r for r, _ in voters)]
    calls = {
        (g, i): call
        for g, group in enumerate(tests)
        for i, text in enumerate(group)
        if (call := _call(text)) is not None
    }
    # What each tester claims a call gives, by its asserts: {call: {group: value}}.
    claims: dict[str, dict[int, str]] = {}
    if all(a is not None for a in authors):
        for key, call in calls.items():
            value = _expected(runs, key) if key[0] else None
            if value is not None:
                claims.setdefault(call, {}).setdefault(key[0], value)
    voting = {o for _, o in voters if o is not None}
    results: dict[tuple[int, int], tuple[TestResult, str]] = {}
    settled: set[tuple[int, int]] = set()
    for key, (result, detail) in response.results.items():
        if key[0] == 0 or result in ("invalid", "skip"):
            results[key] = (result, detail)
            continue
        call = calls.get(key)
        expected = _expected(runs, key)
        equality = expected is not None
        claim = expected if equality else _PASSES
        said = claims.get(call, {}) if equality and call is not None else {}
        votes: Counter[str] = Counter()
        author_agrees = True
        for reference, owner in voters:
            value = _value(reference, key, equality)
            if value is None:
                continue
            if owner == key[0]:
                author_agrees = value == claim
            elif owner not in said or said[owner] == value:
                votes[value] += 1  # a tester whose assert and solution differ abstains
        for owner, value in said.items():
            if owner != key[0] and owner not in voting:
                votes[value] += 1
        if author_agrees:
            votes[claim] += 1
        oracle = _oracle(votes, min_votes)
        given = _value(response, key, equality) or _NO_VALUE
        if oracle is None:
            tally = ", ".join(f"{_short(v, 60)} x{n}" for v, n in votes.most_common(4))
            results[key] = ("invalid", f"no agreement on what it should give ({tally})")
        elif (
            given == _NO_VALUE
            and oracle == "None"
            and not none_is_stated
            and _raised(result, detail)
        ):
            results[key] = (
                "invalid",
                f"the instruction does not say: the response raises ({_short(detail)}), "
                f"{votes[oracle]} independent derivations return None",
            )
        elif given == oracle:
            settled.add(key)
            results[key] = ("pass", "")
        else:
            settled.add(key)
            agreeing = votes[oracle]
            why = detail if given == _NO_VALUE and detail else f"got {_short(given)}"
            results[key] = (
                "fail",
                f"{why}; {agreeing} independent derivations give {_short(oracle)}",
            )
    return replace(response, results=results, settled=frozenset(settled))
