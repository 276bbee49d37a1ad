"""The llama.cpp grammar (GBNF) for a JSON schema, with the string rule gra chooses.

llama-cpp-python turns the schema into GBNF with its copy of llama.cpp's
converter; what a JSON string may hold is that converter's ``char`` rule, and
the rule has differed between versions (llama.cpp's own refuses raw control
characters; llama-cpp-python 0.3.36's accepts them). Whether a model may
write a raw newline or tab inside a string decides how it can lay out code
there, so gra sets the rule itself: ``raw_newlines`` accepts raw newlines,
carriage returns and tabs (what a model writing code in a string reaches
for; ``gra.agents.roles`` restores them when it decodes), and refuses the
other control characters; without it a string is strict JSON.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from gra.errors import GrammarError

_ESCAPE = r'"\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
RAW_NEWLINES_CHAR = rf'[^"\\\x00-\x08\x0B\x0C\x0E-\x1F\x7F] | {_ESCAPE}'
STRICT_CHAR = rf'[^"\\\x00-\x1F\x7F] | {_ESCAPE}'
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)


def with_char_rule(grammar: str, char: str) -> str:
    """``grammar`` with its ``char`` rule (the converter's JSON string character) set
    to ``char``; a grammar without a string has none and is returned unchanged."""
    rules = _CHAR_RULE.findall(grammar)
    if len(rules) > 1:
        raise GrammarError(f"{len(rules)} char rules in the converted grammar, expected one")
    return _CHAR_RULE.sub(lambda _m: f"char ::= {char}", grammar)


@functools.lru_cache(maxsize=64)
def _grammar(schema_json: str, raw_newlines: bool) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    char = RAW_NEWLINES_CHAR if raw_newlines else STRICT_CHAR
    return with_char_rule(json_schema_to_gbnf(schema_json), char)


def json_grammar(schema: dict[str, Any], *, raw_newlines: bool = True) -> str:
    """GBNF accepting the JSON documents ``schema`` describes (see the module doc); its
    properties come in the schema's order, the order the model writes them in."""
    return _grammar(json.dumps(schema), raw_newlines)
