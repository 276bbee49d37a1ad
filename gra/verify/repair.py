"""Mend the slips small models make in the code the fleet writes.

Testers and solvers now write their code as plain text in fenced blocks
(``gra.verify.written_code``); earlier runs' records, which ``gra calibrate
--reverify`` judges again, hold code written inside JSON strings. There small
models often close the JSON object inside the string (``print(x)}``: the
brace meant for the object lands in the code), write a whole function on one
line, leaving out the newlines a JSON string usually escapes (keeping only the
next line's indentation), start with a fence's language tag without its fence
(a first line ``python``), and, in either form, use ``Fraction`` or ``math``
without importing them. Each makes a right derivation crash, so its evidence
is lost. Only the fleet's own evidence is mended this way, never the response
under review: a response whose code does not run is what the verifier must
report.
"""

from __future__ import annotations

import re

from gra.verify.code import extract_python

__all__ = ["fleet_code"]

_STRAY_BRACES = re.compile(r"\}+\s*$")
_IMPORTS = (
    (re.compile(r"\bFraction\s*\("), re.compile(r"\bimport\b[^\n]*\bFraction\b"),
     "from fractions import Fraction"),
    (re.compile(r"\bDecimal\s*\("), re.compile(r"\bimport\b[^\n]*\bDecimal\b"),
     "from decimal import Decimal"),
    (re.compile(r"(?<![\w.])math\.\w"), re.compile(r"^\s*import\s+math\b", re.MULTILINE),
     "import math"),
)  # fmt: skip


def _without_stray_braces(source: str) -> str:
    """Each line's closing braces beyond its opening ones, dropped at its end."""
    lines = []
    for line in source.splitlines():
        excess = line.count("}") - line.count("{")
        match = _STRAY_BRACES.search(line)
        if excess > 0 and match:
            kept = len(match.group().rstrip()) - excess
            line = line[: match.start()] + "}" * max(0, kept)
        lines.append(line)
    return "\n".join(lines)


def _with_imports(source: str) -> str:
    missing = [line for used, imported, line in _IMPORTS
               if used.search(source) and not imported.search(source)]  # fmt: skip
    return "\n".join([*missing, source]) if missing else source


# A run of two or more spaces between code on a line that has no newline at all:
# where the model, inside a JSON string, left out a newline and wrote only the
# next line's indentation.
_LOST_NEWLINE = re.compile(r"(?<=\S)( {2,})(?=\S)")


def _laid_out(text: str) -> str | None:
    """A one-line text whose newlines were lost, laid out again from its indentation;
    None when that is not what happened (it has newlines, or the layout does not
    compile)."""
    if "\n" in text.strip() or not _LOST_NEWLINE.search(text):
        return None
    source = _LOST_NEWLINE.sub(lambda m: "\n" + m.group(1), text.strip())
    return extract_python(source)


_LANGUAGE_TAG = re.compile(r"\A\s*(?:python3?|py)\s*\n", re.IGNORECASE)


def fleet_code(text: str) -> str | None:
    """The Python source in a fleet-written program or solution, mended where a
    JSON brace slipped into it or a standard import is missing; None when even
    the mended text holds no compiling Python."""
    text = _LANGUAGE_TAG.sub("", text)  # a fence's language tag without the fence
    source = extract_python(text)
    mended = _without_stray_braces(text)
    if mended != text:
        # A broken text may still yield a compiling part (the lines before the slip):
        # the mended text wins when it yields more of the code.
        fixed = extract_python(mended)
        if fixed is not None and (source is None or len(fixed) > len(source)):
            source = fixed
    if source is None:
        source = _laid_out(mended)
    return None if source is None else _with_imports(source)
