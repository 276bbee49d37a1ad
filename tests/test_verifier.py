"""The verifier end to end: real responses, real tests, real sandbox runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gra.protocols.roles import VerificationOutput, VerifyRequest
from gra.sandbox import SandboxLimits, sandbox_unavailable
from gra.verify import VerifySettings, normalise_domain, verifiable_domain, verify

FAST = VerifySettings(limits=SandboxLimits(wall_s=10.0, cpu_s=10), test_timeout_s=0.5)

DEDUPE = "Write a Python function `dedupe(xs)` that removes duplicates, keeping first occurrences."
GOOD = (
    "```python\ndef dedupe(xs):\n    seen = set()\n    out = []\n"
    "    for x in xs:\n        if x not in seen:\n            seen.add(x)\n"
    "            out.append(x)\n    return out\n```"
)
TESTS_A = ("assert dedupe([1, 2, 1]) == [1, 2]", "assert dedupe([]) == []")
TESTS_B = ("assert dedupe([3, 3, 3]) == [3]", "assert dedupe(['a', 'b', 'a']) == ['a', 'b']")
TESTS_C = ("assert dedupe([2, 1, 2, 1]) == [2, 1]",)


@pytest.fixture(autouse=True)
def sandbox() -> None:
    """Every test here runs code: it fails, never skips, without the sandbox."""
    problem = sandbox_unavailable()
    assert problem is None, f"the sandbox is unavailable: {problem}"


async def _code(
    response: str,
    *sets: tuple[str, ...],
    instruction: str = DEDUPE,
    settings: VerifySettings = FAST,
) -> VerificationOutput:
    return await verify(VerifyRequest("coding", instruction, response, test_sets=sets), settings)


async def test_a_correct_solution_passes() -> None:
    result = await _code(GOOD, TESTS_A, TESTS_B)
    assert (result.verdict, result.method) == ("passed", "tests")
    assert (result.tests_run, result.tests_failed) == (4, 0)
    assert (result.sets_usable, result.sets_failed) == (2, 0)


async def test_a_wrong_edge_case_fails_though_the_stated_examples_pass() -> None:
    instruction = "Write `last(xs)` returning the last element, or None for an empty list.\n"
    instruction += "For example last([1, 2, 3]) == 3."
    response = "```python\ndef last(xs):\n    return xs[len(xs) - 1] if len(xs) > 1 else 0\n```"
    tests = ("assert last([5, 6]) == 6", "assert last([]) is None")
    result = await _code(response, tests, instruction=instruction)
    assert result.verdict == "failed"
    assert (result.examples_run, result.examples_failed) == (1, 0)
    assert (result.tests_run, result.tests_failed) == (2, 1)
    assert "assert last([]) is None" in result.evidence
    single = await _code(response, ("assert last([7]) == 7",), instruction=instruction)
    assert single.verdict == "failed"
    assert "got 0, expected 7" in single.evidence


async def test_a_stated_example_failing_fails_the_item() -> None:
    instruction = "Write `double(x)`. double(2) == 4 and double(0) == 0."
    result = await _code(
        "```python\ndef double(x):\n    return x + 2\n```", instruction=instruction
    )
    assert result.verdict == "failed"
    assert (result.examples_run, result.examples_failed) == (2, 1)
    assert "got 2, expected 0" in result.evidence


async def test_passing_only_the_stated_examples_is_not_a_pass() -> None:
    """A wrong solution often passes every example its instruction gives: with no
    tester's assert usable, passing them is no verdict."""
    instruction = "Write `double(x)`. double(2) == 4."
    wrong = "```python\ndef double(x):\n    return x + 2\n```"
    alone = await _code(wrong, instruction=instruction)
    assert alone.verdict == "cannot_verify"
    assert (alone.examples_run, alone.examples_failed) == (1, 0)
    assert "only the instruction's own example" in alone.reason
    unusable = await _code(wrong, ("assert helper.value == 6",), instruction=instruction)
    assert unusable.verdict == "cannot_verify"
    right = "```python\ndef double(x):\n    return 2 * x\n```"
    tested = await _code(right, ("assert double(3) == 6",), instruction=instruction)
    assert tested.verdict == "passed"


GIVEN_HELPER = (
    "Complete `shout`; `is_loud` is given.\n\n```python\n"
    "def is_loud(text: str) -> bool:\n    return text.isupper()\n\n\n"
    'def shout(text: str) -> str:\n    """The text in capitals, with \'!\' at the end."""\n```'
)


async def test_asserts_on_a_function_the_instruction_gives_are_not_tests_of_the_answer() -> None:
    """The helper is the instruction's own code: asserts that call nothing else say
    nothing about the function asked for, right or wrong."""
    wrong = (
        "```python\ndef is_loud(text: str) -> bool:\n    return text.isupper()\n\n\n"
        "def shout(text: str) -> str:\n    return text.upper()\n```"
    )
    helper_only = ("assert is_loud('HI') == True", "assert is_loud('hi') == False")
    result = await _code(wrong, helper_only, helper_only, instruction=GIVEN_HELPER)
    assert result.verdict == "cannot_verify", result
    assert result.tests_run == 0
    asked = ("assert shout('hi') == 'HI!'", "assert is_loud(shout('a'))")
    judged = await _code(wrong, helper_only, asked, instruction=GIVEN_HELPER)
    assert judged.verdict == "failed", judged
    assert "shout('hi')" in judged.evidence


async def test_code_that_raises_at_import_or_in_a_test_fails() -> None:
    crashing = "```python\ndef dedupe(xs):\n    return list(xs)\n\nprint(dedupe(None))\n```"
    result = await _code(crashing, TESTS_A)
    assert result.verdict == "failed"
    assert "TypeError" in result.evidence
    assert "solution.py line 4: print(dedupe(None)); solution.py line 2" in result.evidence
    broken = "```python\ndef dedupe(xs):\n    return xs[0] / 0\n```"
    result = await _code(broken, TESTS_A)
    assert result.verdict == "failed"
    assert "ZeroDivisionError" in result.evidence


async def test_an_infinite_loop_times_out_and_fails() -> None:
    looping = "```python\ndef dedupe(xs):\n    while True:\n        pass\n```"
    result = await _code(looping, TESTS_A)
    assert result.verdict == "failed"
    assert "timed out after 0.5s" in result.evidence
    at_import = "```python\nwhile True:\n    pass\n```"
    result = await _code(at_import, TESTS_A)
    assert result.verdict == "failed"
    assert "timed out" in result.reason


async def test_no_code_cannot_be_verified() -> None:
    result = await _code("Just use a set and keep the order.", TESTS_A)
    assert (result.verdict, result.method) == ("cannot_verify", "none")
    assert result.reason == "no Python code in the response"


async def test_code_in_several_blocks_runs_as_one_module() -> None:
    response = (
        "First a helper:\n```python\ndef _seen(x, seen):\n    return x in seen\n```\n"
        "Then the function:\n```python\ndef dedupe(xs):\n    seen, out = set(), []\n"
        "    for x in xs:\n        if not _seen(x, seen):\n            seen.add(x)\n"
        "            out.append(x)\n    return out\n```\n"
        "Run it:\n```bash\npython dedupe.py\n```"
    )
    result = await _code(response, TESTS_A, TESTS_B)
    assert result.verdict == "passed"
    assert result.tests_run == 4


async def test_one_wrong_tester_is_outvoted_by_two_correct_sets() -> None:
    wrong_set = ("assert dedupe([1, 2, 1]) == [2, 1]", "assert dedupe([]) == []")
    result = await _code(GOOD, wrong_set, TESTS_B, TESTS_C)
    assert result.verdict == "passed"
    assert (result.sets_usable, result.sets_failed) == (3, 1)
    assert "got [1, 2], expected [2, 1]" in result.evidence
    strict = VerifySettings(limits=FAST.limits, test_timeout_s=0.5, test_agreement=0.3)
    result = await _code(GOOD, wrong_set, TESTS_B, TESTS_C, settings=strict)
    assert (result.verdict, result.sets_failed) == ("failed", 1)


async def test_two_failing_sets_of_three_fail_the_item() -> None:
    buggy = "```python\ndef dedupe(xs):\n    return sorted(set(xs))\n```"
    result = await _code(buggy, TESTS_C, ("assert dedupe([3, 1, 3]) == [3, 1]",), TESTS_B)
    assert (result.verdict, result.sets_usable, result.sets_failed) == ("failed", 3, 2)
    assert "got [1, 2], expected [2, 1]" in result.evidence


async def test_invalid_tests_are_not_counted() -> None:
    invalid = (
        "assert helper_that_does_not_exist.run([1]) == [1]",  # NameError in the test
        "assert dedupe([1], [2], [3]) == [1]",  # wrong arity: the tester guessed
        "assert [1][5] == dedupe([1])",  # raises before the solution is called
        "assert dedupe([1]) == undefined_expected",  # the expected value is broken
        "dedupe([1])",  # asserts nothing
        "assert dedupe([1] == [1]",  # does not parse
    )
    result = await _code(GOOD, invalid)
    assert (result.verdict, result.method) == ("cannot_verify", "none")
    assert (result.tests_run, result.sets_usable) == (0, 0)
    result = await _code(GOOD, (*invalid, "assert dedupe([4, 4]) == [4]"), TESTS_B)
    assert result.verdict == "passed"
    assert (result.tests_run, result.tests_failed, result.sets_usable) == (3, 0, 2)


async def test_a_result_of_the_wrong_type_is_a_failure_not_a_broken_test() -> None:
    response = "```python\ndef dedupe(xs):\n    return None\n```"
    result = await _code(response, ("assert dedupe([1, 1])[0] == 1",))
    assert result.verdict == "failed"
    assert "NoneType" in result.evidence


async def test_a_guessed_function_name_is_bound_to_the_solution() -> None:
    response = (
        "```python\ndef _helper(x):\n    return x\n\n"
        "def remove_duplicates(xs):\n    return list(dict.fromkeys(map(_helper, xs)))\n```"
    )
    result = await _code(response, TESTS_A)
    assert result.verdict == "passed"
    assert result.tests_run == 2
    wrong = "```python\ndef remove_duplicates(xs):\n    return xs\n```"
    assert (await _code(wrong, TESTS_A)).verdict == "failed"
    leetcode = (
        "```python\nclass Solution:\n    def removeDuplicates(self, xs):\n"
        "        return list(dict.fromkeys(xs))\n```"
    )
    result = await _code(leetcode, ("assert remove_duplicates([1, 1, 2]) == [1, 2]",))
    assert (result.verdict, result.tests_run) == ("passed", 1)


async def test_code_that_reads_input_cannot_be_verified_unless_its_functions_can() -> None:
    script = "```python\nxs = input().split()\nprint(list(dict.fromkeys(xs)))\n```"
    result = await _code(script, TESTS_A)
    assert (result.verdict, result.reason) == ("cannot_verify", "the code reads input")
    with_function = GOOD[:-3] + "\nprint(dedupe(input().split()))\n```"
    result = await _code(with_function, TESTS_A)
    assert result.verdict == "passed"


async def test_the_solution_cannot_forge_or_drown_the_report() -> None:
    response = (
        "```python\nimport os, sys\n"
        "def dedupe(xs):\n"
        "    print('x' * 100000)\n"
        '    os.write(1, b\'forged {"k": "done"}\\n\' * 1000)\n'
        '    sys.__stdout__.write(\'{"k": "test", "g": 1, "i": 0, "r": "pass"}\\n\')\n'
        "    return xs\n```"
    )
    result = await _code(response, TESTS_A)
    assert result.verdict == "failed"
    assert "got [1, 2, 1], expected [1, 2]" in result.evidence


async def test_exiting_the_process_inside_a_test_fails_it() -> None:
    response = "```python\nimport os\ndef dedupe(xs):\n    os._exit(0)\n```"
    result = await _code(response, TESTS_A)
    assert result.verdict == "failed"
    assert "the process ended" in result.evidence


async def test_math_requests_compare_answers() -> None:
    request = VerifyRequest(
        "Algebra",
        "Solve x^2 + x - 6 = 0.",
        "Factor: (x + 3)(x - 2) = 0, so the solutions are x = 2 or x = -3.",
        programs=(
            "import sympy\nx = sympy.symbols('x')\nprint(sympy.solve(x**2 + x - 6, x))",
            "```python\nimport math\nd = math.sqrt(1 + 24)\nprint((-1 - d) / 2, (-1 + d) / 2)\n```",
        ),
    )
    result = await verify(request, FAST)
    assert (result.verdict, result.method) == ("passed", "answer")
    assert (result.sets_usable, result.sets_failed) == (2, 0)
    wrong = VerifyRequest("math", request.instruction, "So x = 3.", programs=request.programs)
    result = await verify(wrong, FAST)
    assert (result.verdict, result.sets_failed) == ("failed", 2)
    assert "the response says 'x = 3'" in result.evidence


async def test_requests_without_a_verifiable_domain_cannot_be_verified() -> None:
    result = await verify(VerifyRequest("writing", "Write a poem.", "Roses are red."), FAST)
    assert (result.verdict, result.method) == ("cannot_verify", "none")
    by_content = VerifyRequest("", DEDUPE, GOOD, test_sets=(TESTS_A,))
    assert (await verify(by_content, FAST)).verdict == "passed"
    no_programs = await verify(VerifyRequest("math", "What is 2 + 2?", "4"), FAST)
    assert no_programs.verdict == "cannot_verify"


# --------------------------------------------------------------------------- domains


def test_labels_map_onto_coding_and_math() -> None:
    assert normalise_domain("Programming") == "coding"
    assert normalise_domain(" python ") == "coding"
    assert normalise_domain("code-generation") == "coding"
    assert normalise_domain("Arithmetic") == "math"
    assert normalise_domain("algebra") == "math"
    assert normalise_domain("writing") is None
    assert normalise_domain(None) is None


def test_domains_are_recognised_from_content() -> None:
    assert verifiable_domain("anything", GOOD, "code") == "coding"
    assert verifiable_domain("Sort a list.", GOOD, None) == "coding"
    asks = "Write a Python function that sorts a list."
    assert verifiable_domain(asks, "Use sorted.", None) == "coding"
    apples = "Tom has 12 apples and gives away 5. How many apples does he have left?"
    assert verifiable_domain(apples, "12 - 5 = 7. The answer is 7.", None) == "math"
    assert verifiable_domain("Solve 2x + 3 = 11.", "So x = 4.", "general") == "math"
    assert verifiable_domain("Write a poem about the sea.", "Waves roll in.", None) is None
    history = "In 1990, what happened in Berlin?"
    assert verifiable_domain(history, "The wall came down in 1989.", None) is None


def test_a_label_alone_does_not_make_an_item_checkable() -> None:
    """Testers and solvers are not asked about what execution cannot check: a coding
    item whose response defines no Python (SQL, prose) or a math item with no final
    answer is not verified, whatever its label (seen: a SQL item labelled coding sent
    Python testers after asserts they could not write, until the model was benched)."""
    sql = "Write a SQL query returning the top 5 employees by salary."
    assert (
        verifiable_domain(sql, "SELECT * FROM employees ORDER BY salary DESC LIMIT 5;", "coding")
        is None
    )
    assert verifiable_domain("anything", "no code", "code") is None
    assert verifiable_domain("Explain lists and tuples.", "Lists are mutable.", "coding") is None
    isolate = "What equation isolates x in a linear equation?"
    assert verifiable_domain(isolate, "It can be solved step by step.", "math") is None
    assert verifiable_domain("Solve 2x + 3 = 11.", "So x = 4.", "math") == "math"


def test_word_problems_without_a_textbook_word_are_math() -> None:
    """Quantity questions (how old, how long, what it costs, add up) are math too."""
    problems = {
        "A father is three times as old as his son. In 4 years he will be twice as old "
        "as the son. How old is the father now?": "The father is 12 years old now.",
        "It takes 9 people 4 days to lay a path. How long would it take 2 people, all "
        "working at the same rate?": "Final answer: 18 days",
        "A jacket is priced at $180. It is reduced by 40%, and at the till a further 5% is "
        "taken off the reduced price. What does it cost in the end?": "**Answer:** $102.60",
        "Add up every term of the sequence 5, 12, 19, ..., 89.": "The sum is 611.",
        "A car uses 6 litres of fuel per 100 km. How far does it go on 45 litres?": (
            "45 / 6 * 100 = 750. It goes 750 km."
        ),
    }
    for instruction, response in problems.items():
        assert verifiable_domain(instruction, response, None) == "math", instruction
    not_math = {
        "In 1990 and 2000, who led Germany?": "Helmut Kohl, then Gerhard Schröder.",
        "How long should a cover letter be?": "About one page.",
        "Name 3 rivers in Europe.": "The Danube, the Rhine and the Seine.",
    }
    for instruction, response in not_math.items():
        assert verifiable_domain(instruction, response, None) is None, instruction


_HOSTILE = {
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    ),
    "memory hog": "hog = []\nwhile True:\n    hog.append(bytearray(64 * 1024 * 1024))\n",
    "file outside": "open({target!r}, 'w').write('owned')\n",
    "delete outside": "import os\nos.remove({victim!r})\n",
    "socket": (
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
    ),
    "read a secret": "print(open({secret!r}).read())\n",
    "megabytes": "import sys\nsys.stdout.write('x' * 50_000_000)\n",
}


@pytest.mark.parametrize("attack", sorted(_HOSTILE))
async def test_hostile_responses_are_contained_and_judged(attack: str, tmp_path: Path) -> None:
    """Each attack, as the response's module body before a correct dedupe: contained,
    judged failed or cannot_verify with a reason, and the host untouched."""
    import os
    import socket

    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    secret = tmp_path / "secret.key"
    secret.write_text("CURVE-SECRET")
    secret.chmod(0o600)
    target = tmp_path / "owned.txt"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    body = _HOSTILE[attack].format(
        target=str(target), victim=str(victim), secret=str(secret), port=listener.getsockname()[1]
    )
    response = "```python\n" + body + GOOD.split("```python\n")[1]
    try:
        result = await _code(response, TESTS_A)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert result.verdict in ("failed", "cannot_verify"), result
    assert result.reason
    assert victim.read_text() == "keep me" and not target.exists()
    assert "CURVE-SECRET" not in result.evidence + result.reason
    assert len(result.evidence) <= FAST.evidence_chars + 200
    assert os.path.exists(secret)


async def test_the_fleets_code_is_mended_before_it_runs() -> None:
    """A JSON brace left in a solver's program or a tester's solution, or a missing
    Fraction import, no longer costs the evidence."""
    slipped = ("print(6 * 7)}", "print(Fraction(84, 2))")
    request = VerifyRequest("math", "What is 6 times 7?", "The answer is 41.", programs=slipped)
    result = await verify(request, FAST)
    assert (result.verdict, result.sets_usable) == ("failed", 2), result
    tests = (("assert dedupe([1, 1]) == [1]",), ("assert dedupe([2, 2, 3]) == [2, 3]",))
    solutions = (
        "def dedupe(xs):\n    return list(dict.fromkeys(xs))}",
        "def dedupe(xs):\n    out = []\n    for x in xs:\n        if x not in out:\n"
        "            out.append(x)\n    return out}",
    )
    wrong = "```python\ndef dedupe(xs):\n    return sorted(set(xs), reverse=True)\n```"
    coding = VerifyRequest("coding", DEDUPE, wrong, test_sets=tests, programs=solutions)
    result = await verify(coding, FAST)
    assert result.verdict == "failed", result
    assert "2 independent derivations" in result.evidence


async def test_a_false_step_in_a_worked_answer_fails_it_whatever_the_solvers_say() -> None:
    response = "Total work: 9 * 4 = 38 worker-days. With 2 workers: 38 / 2 = 19 days."
    programs = ("print(9 * 4 / 2)", "print(19)")  # a solver even agrees with the answer
    request = VerifyRequest(
        "math", "9 people take 4 days; how long for 2?", response, programs=programs
    )
    result = await verify(request, FAST)
    assert (result.verdict, result.method) == ("failed", "arithmetic"), result
    assert "9 * 4 = 38, but the left side is 36" in result.evidence
    right = "Total work: 9 * 4 = 36 worker-days. With 2 workers: 36 / 2 = 18 days."
    again = await verify(VerifyRequest("math", request.instruction, right, programs=programs), FAST)
    assert (again.verdict, again.method) == ("passed", "answer"), again
