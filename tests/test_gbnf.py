"""The JSON grammar gra builds for llama.cpp: its string rule is gra's choice.

Fast tests read the grammar's text; the slow ones ask llama.cpp's own grammar
engine (a model's vocabulary, loaded without weights) what it accepts.
"""

from __future__ import annotations

import ctypes
import json

import pytest

from gra.agents.schema import model_schema
from gra.backends.gbnf import (
    RAW_NEWLINES_CHAR,
    STRICT_CHAR,
    GrammarError,
    json_grammar,
    with_char_rule,
)
from gra.protocols.roles import SolverOutput, UnitTestOutput
from tests.conftest import one_qwen_completion

# Code inside JSON strings: what the generator's responses hold.
TESTS_SCHEMA = model_schema(UnitTestOutput)
PROGRAM_SCHEMA = model_schema(SolverOutput)


def test_the_string_rule_is_replaced_and_nothing_else() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    converted = json_schema_to_gbnf(json.dumps(TESTS_SCHEMA)).splitlines()
    ours = json_grammar(TESTS_SCHEMA).splitlines()
    assert [line for line in ours if line not in converted] == [f"char ::= {RAW_NEWLINES_CHAR}"]
    assert len(ours) == len(converted)
    # Properties stay in the schema's order: the model writes the tests first.
    root = next(line for line in ours if line.startswith("root ::="))
    assert root.index("tests-kv") < root.index("solution-kv")


def test_strict_strings_are_asked_for_by_name() -> None:
    strict = json_grammar(PROGRAM_SCHEMA, raw_newlines=False)
    assert f"char ::= {STRICT_CHAR}" in strict.splitlines()
    assert json_grammar(PROGRAM_SCHEMA) != strict


def test_a_grammar_without_strings_is_left_alone() -> None:
    grammar = 'root ::= "{" space "}" space\nspace ::= " "?'
    assert with_char_rule(grammar, STRICT_CHAR) == grammar


def test_two_string_rules_are_refused_with_a_reason() -> None:
    grammar = "root ::= char\nchar ::= [a]\nchar ::= [b]"
    with pytest.raises(GrammarError, match="2 char rules"):
        with_char_rule(grammar, STRICT_CHAR)


@pytest.fixture(scope="module")
def vocabulary():  # type: ignore[no-untyped-def]
    from llama_cpp import Llama

    from gra.models import resolve

    llama = Llama(model_path=str(resolve("qwen2.5-coder-0.5b")), vocab_only=True, verbose=False)
    yield llama
    llama.close()


def accepts(llama: object, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar engine lets ``text`` be written, token by token."""
    import llama_cpp
    import numpy as np
    from llama_cpp import LlamaGrammar, _internals

    sampler = _internals.LlamaSampler()
    sampler.add_grammar(llama._model, LlamaGrammar.from_string(grammar, verbose=False))  # type: ignore[attr-defined]
    kind = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
    for token in llama.tokenize(text.encode(), add_bos=False, special=False):  # type: ignore[attr-defined]
        candidate = np.zeros(1, dtype=kind)
        candidate["id"] = token
        array = llama_cpp.llama_token_data_array(
            data=candidate.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=1,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(sampler.sampler, ctypes.byref(array))
        if not np.isfinite(candidate["logit"][0]):
            return False
        llama_cpp.llama_sampler_accept(sampler.sampler, token)
    return True


PROGRAM = "import math\nfor i in range(3):\n\tprint(math.sqrt(i))"


@pytest.mark.slow
def test_raw_newlines_and_tabs_are_accepted_inside_strings(vocabulary: object) -> None:
    text = '{"program": "' + PROGRAM + '"}'
    assert accepts(vocabulary, json_grammar(PROGRAM_SCHEMA), text)
    assert not accepts(vocabulary, json_grammar(PROGRAM_SCHEMA, raw_newlines=False), text)


@pytest.mark.slow
def test_escaped_newlines_stay_accepted_and_other_controls_refused(vocabulary: object) -> None:
    escaped = '{"program": "' + json.dumps(PROGRAM)[1:-1] + '"}'
    for raw_newlines in (True, False):
        assert accepts(vocabulary, json_grammar(PROGRAM_SCHEMA, raw_newlines=raw_newlines), escaped)
    assert not accepts(vocabulary, json_grammar(PROGRAM_SCHEMA), '{"program": "a\x07b"}')


@pytest.mark.slow
async def test_a_real_json_call_writes_a_program_on_several_lines() -> None:
    # Qwen 0.5B: gemma-3-270m, smaller, is a base model that writes no program here.
    from gra.agents.roles import Role
    from gra.backends.base import Sampling
    from gra.protocols.roles import SolverRequest

    def prompt(request: SolverRequest) -> list[dict[str, str]]:
        system = (
            "You solve math problems by writing a short Python program that prints the "
            "answer. Reply as JSON with one key: program (the Python source)."
        )
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": request.instruction},
        ]

    solver = Role("solver", SolverRequest, SolverOutput, prompt, Sampling(320, 0.5))
    request = SolverRequest(
        "math", "A town's population went up from 240 to 264. What was the percentage increase?"
    )
    sampling = Sampling(320, 0.5, seed=0)
    completion = await one_qwen_completion(solver.prompt(request), solver.schema, sampling)
    # The model wrote raw newlines inside the JSON string, and they are restored.
    value = completion.text.split('"program"', 1)[1]
    assert "\n" in value, completion.text
    program = solver.parse(request, completion.text).program
    assert len(program.strip().splitlines()) > 1, program
