"""Coding items: the response's code, the instruction's stated examples, the harness
that runs both with the testers' asserts in the sandbox, and the coding verdict.

Everything here is pure (no I/O) except that the harness source is meant to run
inside the sandbox; :mod:`gra.verify.verifier` does the one sandbox call.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gra.protocols.roles import VerificationOutput

__all__ = [
    "HarnessRun",
    "build_harness",
    "extract_python",
    "judge_code",
    "parse_harness_output",
    "stated_examples",
]

# --------------------------------------------------------------------------- extraction

_PY_TAGS = {"python", "py", "python3", "py3", "ipython", "python2", "sage", "pycon", "ipython3"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_SHELL_LINE = re.compile(
    r"^\s*(\$|>\s|#!|pip3?\s|python3?\s|conda\s|cd\s|ls\b|npm\s|sudo\s|apt(-get)?\s)"
)
_CODE_HINT = re.compile(
    r"^\s*(def |async def |class |import |from \S+ import |@\w|return\b|print\(|for .+:|"
    r"while .+:|if .+:|[A-Za-z_][\w.\[\], ]*\s*[-+*/]?=[^=]|assert |try:|with .+:|raise )",
    re.MULTILINE,
)
_REPL = re.compile(r"^\s*(>>>|\.\.\.)( |$)")
# A line that starts unfenced code in prose.
_CODE_START = re.compile(r"^(def |async def |class |import |from \S+ import |@\w)")
_CODE_LINE = re.compile(
    r"^(\s|#|def |async def |class |import |from |@|return\b|if |elif |else\b|for |while |"
    r"try\b|except\b|finally\b|with |raise |assert |pass\b|print\(|[A-Za-z_][\w.\[\], ]*\s*"
    r"[-+*/]?=|[A-Za-z_][\w.]*\()"
)


@dataclass
class _Block:
    code: str
    tag: str  # "python", "repl" or "unknown"


def _compiles(source: str) -> bool:
    try:
        compile(source, "<response>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _looks_like_python(code: str) -> bool:
    """A block is Python when it compiles and has a statement that only code has:
    output listings such as ``[1, 2]`` or ``True`` compile too, but carry no hint."""
    lines = [line for line in code.splitlines() if line.strip()]
    if not lines or any(_SHELL_LINE.match(line) for line in lines[:1]):
        return False
    return bool(_CODE_HINT.search(code)) and _compiles(code)


def _repl_code(code: str) -> str:
    """The code lines of a ``>>>`` transcript (prompts removed, outputs dropped)."""
    out = []
    for line in code.splitlines():
        match = re.match(r"^\s*(>>>|\.\.\.)( |$)(.*)$", line)
        if match:
            out.append(match.group(3))
    return "\n".join(out)


def _is_repl(code: str) -> bool:
    """A ``>>>`` transcript: many prompt lines, and (unlike a function whose
    docstring holds doctests) not Python as it stands."""
    lines = [line for line in code.splitlines() if line.strip()]
    prompts = sum(bool(_REPL.match(line)) for line in lines)
    return bool(lines) and prompts >= max(1, len(lines) // 3) and not _compiles(code)


def _fenced_blocks(text: str) -> list[_Block] | None:
    """Fenced blocks in order, classified; None when the text has no fence."""
    lines = text.splitlines()
    blocks: list[_Block] = []
    found = False
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        found = True
        fence, info = match.group("fence"), match.group("info").strip().lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            # A fence line ends the block even with text after it: models go on with
            # prose on the closing fence's line ("``` This uses ..."), and inside a
            # code block a fence line is never code.
            close = _FENCE.match(lines[i])
            if (
                close
                and close.group("fence")[0] == fence[0]
                and len(close.group("fence")) >= len(fence)
            ):
                break
            body.append(lines[i])
            i += 1
        i += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        tag = info.split()[0].strip("{}.") if info else ""
        if _is_repl(code):
            if tag in _PY_TAGS or not tag:
                blocks.append(_Block(_repl_code(code), "repl"))
        elif tag in _PY_TAGS:
            blocks.append(_Block(code, "python"))
        elif not tag and _looks_like_python(code):
            blocks.append(_Block(code, "unknown"))
    return blocks if found else None


def _indented_blocks(text: str) -> list[_Block]:
    """Markdown indented code blocks (4 spaces or a tab after a blank line)."""
    blocks: list[_Block] = []
    current: list[str] = []
    previous_blank = True
    for line in [*text.splitlines(), ""]:
        indented = line.startswith(("    ", "\t"))
        if (indented and (current or previous_blank)) or (not line.strip() and current):
            current.append(line)
        else:
            if current:
                code = textwrap.dedent("\n".join(current)).strip("\n")
                if _is_repl(code):
                    blocks.append(_Block(_repl_code(code), "repl"))
                elif _looks_like_python(code):
                    blocks.append(_Block(code, "unknown"))
                current = []
        previous_blank = not line.strip()
    return blocks


def _prose_code_runs(text: str) -> list[_Block]:
    """Unfenced code between prose: runs that start at ``def``/``class``/``import``
    and continue while lines still look like code, trimmed until they compile."""
    lines = text.splitlines()
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        if not _CODE_START.match(lines[i]):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _CODE_LINE.match(lines[j])):
            j += 1
        end = j
        while end > i and not _compiles("\n".join(lines[i:end])):
            end -= 1
        if end > i:
            code = "\n".join(lines[i:end]).strip("\n")
            blocks.append(_Block(code, "unknown"))
            i = end
        else:
            i += 1
    return blocks


def _count_defs(source: str) -> int:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return -1
    return sum(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in tree.body
    )


def _combine(codes: list[str]) -> str | None:
    """Joined blocks when they compile; else the better of the blocks that compile
    together (in order, skipping a broken one) and the block defining most functions."""
    codes = [c for c in codes if c.strip()]
    if not codes:
        return None
    joined = "\n\n".join(codes)
    if _compiles(joined):
        return joined
    greedy: list[str] = []
    for code in codes:
        if _compiles("\n\n".join([*greedy, code])):
            greedy.append(code)
    candidates = [c for c in codes if _compiles(c)]
    if greedy:
        candidates.insert(0, "\n\n".join(greedy))
    if not candidates:
        return None
    return max(candidates, key=_count_defs)  # max keeps the first (greedy) on ties


def extract_python(response: str) -> str | None:
    """The response's Python source, compiling, or None when it holds no Python code.

    Fenced blocks (tagged Python, or untagged and Python-looking) are joined in
    order; shell, output and other languages' blocks are dropped; ``>>>``
    transcripts count only when they are the only code. Without fences: the whole
    response when it is code, else indented blocks, else code runs in the prose.
    """
    if not response or not response.strip():
        return None
    fenced = _fenced_blocks(response)
    if fenced is not None:
        blocks = fenced
    elif _looks_like_python(response.strip("\n")):
        return textwrap.dedent(response).strip("\n")
    else:
        blocks = _indented_blocks(response) or _prose_code_runs(response)
    code = [b.code for b in blocks if b.tag != "repl"]
    if not code:
        code = [b.code for b in blocks if b.tag == "repl"]
    source = _combine(code)
    if source is None or not _compiles(source):
        return None
    return source


def _is_stub(body: list[ast.stmt]) -> bool:
    """A body that leaves the work to the answer: a docstring, ``pass``, ``...``,
    ``raise NotImplementedError``, or nothing but those."""
    for statement in body:
        if isinstance(statement, ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring or ...
        if isinstance(statement, ast.Raise) and "NotImplementedError" in ast.unparse(statement):
            continue
        return False
    return True


def given_functions(instruction: str) -> frozenset[str]:
    """The top-level functions the instruction's own code already implements (helpers
    it hands over, as HumanEval's ``is_palindrome`` above ``make_palindrome``)."""
    source = extract_python(instruction)
    if source is None:
        return frozenset()
    tree = ast.parse(source)
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_stub(node.body)
    )


def tests_only_given(test: str, given: frozenset[str]) -> bool:
    """The test calls functions the instruction gives and nothing else of the answer's:
    it checks the instruction's code, not the response's."""
    if not given:
        return False
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    return bool(called & given) and not (called - given - _BUILTIN_NAMES)


# --------------------------------------------------------------------------- stated examples

_BUILTIN_NAMES = set(dir(builtins))
_SIGNATURE = re.compile(r"\bdef\s+([A-Za-z_]\w*)\s*\(([^)]*)\)")
_NAMED_SIGNATURE = re.compile(
    r"(?:function|method|def|implement|write|create|define)\s+(?:called\s+|named\s+)?`?"
    r"([A-Za-z_]\w*)\(([^()]*)\)`?",
    re.IGNORECASE,
)
_ARROW = r"(?:==>|==|->|=>|→|\bshould\s+return\b|\breturns\b|\bshould\s+be\b|\bgives\b)"
_PROSE_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")
_SEPARATOR = re.compile(r"^\s*`?\s*(" + _ARROW + r")\s*:?\s*`?\s*")
_IO_LINE = re.compile(
    r"^\s*(?:[-*]\s*)?(?:\*\*)?(?:example\s*\d*\s*:?\s*)?(?:\*\*)?input(?:\*\*)?\s*:?(?:\*\*)?\s*"
    r"(?P<input>.+?)\s*$",
    re.IGNORECASE,
)
_OUT_LINE = re.compile(
    r"^\s*(?:[-*]\s*)?(?:\*\*)?(?:expected\s+)?output(?:\*\*)?\s*:?(?:\*\*)?\s*(?P<output>.+?)\s*$",
    re.IGNORECASE,
)
_SAME_LINE_IO = re.compile(
    r"input\s*:\s*(?P<input>.+?)\s*[,;]?\s*(?:->|=>|→)?\s*output\s*:\s*(?P<output>.+?)\s*$",
    re.IGNORECASE,
)
_EXAMPLE_ARROW = re.compile(
    r"^\s*(?:[-*]\s*)?(?:e\.g\.|for example|example\s*\d*)\s*[:,]?\s*(?P<input>.+?)\s*"
    r"(?:->|=>|==>|→)\s*(?P<output>.+?)\s*$",
    re.IGNORECASE,
)


# Words after a value that make it no plain result: "returns 4 times the input",
# "returns True if ...".
_QUALIFIED = re.compile(
    r"^`?\s*(?:[-+*/%^]|times\b|more\b|less\b|or\b|plus\b|minus\b|if\b|when\b|unless\b|"
    r"percent\b|only\b|for\s+(?:all|any|every)\b)",
    re.IGNORECASE,
)


def _literal(text: str) -> Any:
    """The Python literal ``text`` denotes; raises ValueError when it is none."""
    stripped = text.strip()
    if stripped in ("true", "false", "null"):
        stripped = {"true": "True", "false": "False", "null": "None"}[stripped]
    if not stripped or len(stripped) > 2000:
        raise ValueError("empty or too long")
    try:
        return ast.literal_eval(stripped)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from exc


def _is_literal(text: str) -> bool:
    try:
        _literal(text)
    except ValueError:
        return False
    return True


def _norm_literal(text: str) -> str:
    """The literal's canonical source (JSON-style true/false/null mapped to Python)."""
    return repr(_literal(text))


def _longest_literal_prefix(text: str) -> str | None:
    """The longest prefix of ``text`` (cut at a word or punctuation boundary) that is
    a Python literal and not a tuple made by a trailing comma."""
    text = text.strip().strip("`")
    cuts = [len(text)] + [i for i, ch in enumerate(text) if ch in " \t,.;:`)"]
    for cut in sorted(set(cuts), reverse=True):
        candidate = text[:cut].rstrip()
        if not candidate or candidate.endswith((",", ".")):
            continue
        if _is_literal(candidate):
            return candidate
    return None


def _balanced_call(text: str, start: int) -> int | None:
    """Index just past the ``)`` closing the ``(`` at ``start`` (strings respected)."""
    depth = 0
    quote = ""
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch == "\n":
            return None
        i += 1
    return None


def _literal_call(call: str) -> bool:
    """``call`` is ``name(args)`` with every argument a literal."""
    try:
        node = ast.parse(call, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return False
    values = [*node.args, *(k.value for k in node.keywords)]
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return False
    for value in values:
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return True


def _params(params: str) -> list[str] | None:
    """Parameter names of a signature's parameter list (``self`` dropped)."""
    try:
        tree = ast.parse(f"def _f({params}): pass")
    except (SyntaxError, ValueError):
        return None
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    names = [a.arg for a in [*func.args.posonlyargs, *func.args.args]]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    if func.args.vararg or func.args.kwonlyargs or func.args.kwarg:
        return None
    return names


def _signature(instruction: str) -> tuple[str, list[str]] | None:
    """The one function the instruction names with its parameters, if exactly one."""
    found: dict[str, list[str]] = {}
    for pattern in (_SIGNATURE, _NAMED_SIGNATURE):
        for match in pattern.finditer(instruction):
            name = match.group(1)
            if name in _BUILTIN_NAMES or name.startswith("__"):
                continue
            params = _params(match.group(2))
            if params is not None:
                found.setdefault(name, params)
    if len(found) != 1:
        return None
    name, params = next(iter(found.items()))
    return name, params


def _doctest_examples(instruction: str) -> list[str]:
    """``>>> call`` / expected-output pairs as asserts; assignments before an example
    are kept as its setup, outputs that are not literals are skipped."""
    lines = instruction.splitlines()
    out: list[str] = []
    setup: list[str] = []
    i = 0
    while i < len(lines):
        match = re.match(r"^\s*>>>\s?(.*)$", lines[i])
        if not match:
            if '"""' in lines[i] or "'''" in lines[i]:
                setup = []
            i += 1
            continue
        source = [match.group(1)]
        i += 1
        while i < len(lines):
            more = re.match(r"^\s*\.\.\.(?: |$)(.*)$", lines[i])
            if not more:
                break
            source.append(more.group(1))
            i += 1
        expected: list[str] = []
        while i < len(lines):
            line = lines[i]
            if (
                not line.strip()
                or re.match(r"^\s*>>>", line)
                or re.match(r'^\s*("""|\'\'\')', line)
            ):
                break
            expected.append(line.strip())
            i += 1
        code = "\n".join(source).strip()
        if not code:
            continue
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError):
            continue
        is_expression = len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
        if not is_expression:
            if not expected:
                setup.append(code)
            continue
        if not expected:
            continue
        value = " ".join(expected)
        if value.startswith("Traceback") or not _is_literal(value):
            continue
        call = tree.body[0].value  # type: ignore[attr-defined]
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in ("print", "pprint")
        ):
            continue
        expression = ast.unparse(call)
        out.append("\n".join([*setup, f"assert {expression} == {_norm_literal(value)}"]))
    return out


def _prose_examples(instruction: str) -> list[str]:
    """``f(x) == y``, ``f(x) -> y``, ``f(x) returns y`` and the like, for calls with
    literal arguments to a name that is no builtin, and a literal on the right."""
    out: list[str] = []
    for line in instruction.splitlines():
        if re.match(r"^\s*(>>>|\.\.\.)", line):
            continue
        for match in _PROSE_CALL.finditer(line):
            name = match.group(1)
            if name in _BUILTIN_NAMES or name in ("assert", "print", "def", "return", "lambda"):
                continue
            end = _balanced_call(line, match.end() - 1)
            if end is None:
                continue
            call = line[match.start() : end]
            separator = _SEPARATOR.match(line[end:])
            if not separator or not _literal_call(call):
                continue
            rest = line[end + separator.end() :].strip().strip("`")
            expected = _longest_literal_prefix(rest)
            if expected is None or _QUALIFIED.match(rest[len(expected) :]):
                continue
            out.append(
                f"assert {ast.unparse(ast.parse(call, mode='eval'))} == {_norm_literal(expected)}"
            )
    return out


def _call_from_input(signature: tuple[str, list[str]], text: str) -> str | None:
    """``name(args)`` for an example's input text, or None when it cannot be mapped
    to the signature's parameters without guessing."""
    name, params = signature
    text = text.strip().rstrip(".").strip("`")
    if not params:
        return None
    named = re.findall(r"([A-Za-z_]\w*)\s*=\s*", text)
    if named:
        # "a = 1, b = [2, 3]": split at the names, map by name onto the signature.
        pieces = re.split(r"(?:^|,)\s*([A-Za-z_]\w*)\s*=(?!=)\s*", text)
        values: dict[str, str] = {}
        for key, value in zip(pieces[1::2], pieces[2::2], strict=False):
            values[key] = value.strip().rstrip(",").strip()
        if set(values) != set(params) or pieces[0].strip():
            return None
        if not all(_is_literal(v) for v in values.values()):
            return None
        return f"{name}({', '.join(_norm_literal(values[p]) for p in params)})"
    if not _is_literal(text):
        return None
    value = _literal(text)
    if len(params) == 1:
        return f"{name}({_norm_literal(text)})"
    if isinstance(value, tuple) and len(value) == len(params) and not text.startswith("("):
        return f"{name}({', '.join(repr(v) for v in value)})"
    return None


def _io_examples(instruction: str) -> list[str]:
    """ "Input: ... Output: ..." and "Example: input -> output" forms, only when the
    instruction names one function whose parameters the input maps onto."""
    signature = _signature(instruction)
    if signature is None:
        return []
    pairs: list[tuple[str, str]] = []
    lines = instruction.splitlines()
    for i, line in enumerate(lines):
        same = _SAME_LINE_IO.search(line)
        if same:
            pairs.append((same.group("input"), same.group("output")))
            continue
        arrow = _EXAMPLE_ARROW.match(line)
        if arrow and not _PROSE_CALL.match(arrow.group("input").strip()):
            pairs.append((arrow.group("input"), arrow.group("output")))
            continue
        given = _IO_LINE.match(line)
        if not given or not re.search(r"input", line, re.IGNORECASE):
            continue
        for following in lines[i + 1 : i + 3]:
            if not following.strip():
                continue
            result = _OUT_LINE.match(following)
            if result:
                pairs.append((given.group("input"), result.group("output")))
            break
    out: list[str] = []
    unordered = bool(re.search(r"\bany order\b", instruction, re.IGNORECASE))
    for given_text, output_text in pairs:
        call = _call_from_input(signature, given_text)
        expected = _longest_literal_prefix(output_text)
        if call is None or expected is None:
            continue
        value = _literal(expected)
        if unordered and isinstance(value, list | tuple):
            out.append(f"assert _gra_same_items({call}, {_norm_literal(expected)})")
        else:
            out.append(f"assert {call} == {_norm_literal(expected)}")
    return out


def stated_examples(instruction: str) -> list[str]:
    """The instruction's own examples as assert statements (deduplicated, in order).

    Sources: doctest transcripts, ``f(x) == y``-style prose, and Input/Output
    examples when a named signature tells how the input maps onto arguments.
    Examples that do not parse are dropped, never guessed; float tolerance is
    the harness's business (it compares ``==`` with ``math.isclose``).
    """
    seen: dict[str, None] = {}
    for example in [
        *_doctest_examples(instruction),
        *_prose_examples(instruction),
        *_io_examples(instruction),
    ]:
        try:
            compile(example, "<example>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        seen.setdefault(example, None)
    return list(seen)


# --------------------------------------------------------------------------- the harness

# Runs inside the sandbox as main.py next to solution.py and tests.json. The first
# stdin line is the nonce that prefixes every report line; the solution then sees an
# empty stdin. Report lines go to a duplicate of the original stdout while fds 1
# and 2 point at /dev/null, so nothing the solution prints can forge or crowd
# them out. Lines: "<nonce> b <group> <index>" before each test (so a test the
# process died in is known), then one JSON object per event.
_HARNESS = r'''
import ast, builtins, io, json, linecache, math, os, signal, sys, time, traceback, types

_T0 = time.monotonic()
_HERE = os.path.dirname(os.path.abspath(__file__))
_NONCE = sys.stdin.readline().strip()
_OUT = os.dup(1)
_NULL = os.open(os.devnull, os.O_RDWR)
os.dup2(_NULL, 0)
os.dup2(_NULL, 1)
os.dup2(_NULL, 2)


def _write(text):
    data = (_NONCE + " " + text + "\n").encode("utf-8", "replace")
    while data:
        data = data[os.write(_OUT, data):]


def _emit(**record):
    _write(json.dumps(record))


def _cut(text, n=240):
    text = str(text)
    return text if len(text) <= n else text[: n - 3] + "..."


def _safe_repr(value, n=200):
    try:
        return _cut(repr(value), n)
    except BaseException as exc:  # a broken __repr__ is the solution's problem
        return "<repr failed: %s>" % type(exc).__name__


class _Tail(io.TextIOBase):
    """The solution's own output, bounded to its tail."""

    def __init__(self, limit):
        self.limit = limit
        self.text = ""
        self.total = 0

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        self.total += len(s)
        self.text = (self.text + s)[-self.limit:]
        return len(s)

    def flush(self):
        pass

    @property
    def encoding(self):
        return "utf-8"


_STDIN_READ = [False]


class _Bytes(io.BytesIO):
    def read(self, *a):
        _STDIN_READ[0] = True
        return super().read(*a)

    def readline(self, *a):
        _STDIN_READ[0] = True
        return super().readline(*a)

    def readlines(self, *a):
        _STDIN_READ[0] = True
        return super().readlines(*a)


class _Stdin(io.StringIO):
    """Empty stdin that remembers being read: code that reads input is not judged."""

    buffer = _Bytes(b"")

    def read(self, *a):
        _STDIN_READ[0] = True
        return super().read(*a)

    def readline(self, *a):
        _STDIN_READ[0] = True
        return super().readline(*a)

    def readlines(self, *a):
        _STDIN_READ[0] = True
        return super().readlines(*a)

    def __next__(self):
        _STDIN_READ[0] = True
        return super().__next__()


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _left():
    return min(
        _CFG["budget_s"] - (time.monotonic() - _T0),
        _CFG["cpu_budget_s"] - time.process_time(),
    )


def _timed(fn, limit):
    """("ok", value) | ("raised", exc) | ("timeout", None) | ("budget", None)."""
    left = _left()
    if left <= 0.05:
        return "budget", None
    seconds = min(limit, left)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return "ok", fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        return ("budget" if seconds < limit else "timeout"), None
    except BaseException as exc:
        return "raised", exc


def _in_solution(exc):
    return any(f.filename == _SOL for f in traceback.extract_tb(exc.__traceback__))


def _describe(exc, n=400):
    """The exception and its innermost frames in the solution or the test."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename in (_SOL, "<test>")
    ]
    where = "; ".join(
        "%s line %s: %s"
        % (
            "solution.py" if f.filename == _SOL else "the test",
            f.lineno,
            _cut((f.line or "").strip(), 80),
        )
        for f in frames[-3:]
    )
    where = " (%s)" % where if where else ""
    try:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:
        message = type(exc).__name__
    return _cut(message + where, n)


class _Mismatch(AssertionError):
    def __init__(self, actual, expected):
        super().__init__()
        self.actual = actual
        self.expected = expected


def _eq(a, b, depth=0):
    """``==``, with floats compared by math.isclose (also inside lists, tuples, dicts)."""
    try:
        if bool(a == b):
            return True
    except Exception:
        pass
    if depth > 50:
        return False
    if hasattr(a, "tolist") and not isinstance(a, (int, float)):
        try:
            return _eq(a.tolist(), b, depth + 1)
        except Exception:
            return False
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            if math.isnan(a) and math.isnan(b):
                return True
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        return False
    if isinstance(a, (list, tuple)) and type(a) is type(b) and len(a) == len(b):
        return all(_eq(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return all(_eq(a[k], b[k], depth + 1) for k in a)
    return False


_SEEN = [None, None]  # the last ``==`` test's actual and expected values, as _key()s


def _key(value, depth=0):
    """A value's comparable text across runs: floats to 9 significant digits, and a
    whole float as the int it equals (0.0 == 0, as the test's ``==`` says)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        rounded = float("%.9g" % value)
        if rounded.is_integer() and abs(rounded) < 1e15:
            return repr(int(rounded))
        return repr(rounded)
    if depth < 20 and isinstance(value, (list, tuple)):
        inner = ",".join(_key(v, depth + 1) for v in value)
        return ("[%s]" if isinstance(value, list) else "(%s)") % inner
    if depth < 20 and isinstance(value, dict):
        try:
            items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        except Exception:
            items = list(value.items())
        return "{%s}" % ",".join(_key(k, depth + 1) + ":" + _key(v, depth + 1) for k, v in items)
    try:
        text = repr(value)
    except Exception:
        return "<unrepresentable %s>" % type(value).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."


def _check_eq(actual, expected):
    _SEEN[0], _SEEN[1] = _key(actual), _key(expected)
    if not _eq(actual, expected):
        raise _Mismatch(actual, expected)


def _same_items(actual, expected):
    """The same elements in any order (the instruction said order does not matter)."""
    try:
        left = sorted(map(repr, actual))
        right = sorted(map(repr, expected))
    except Exception:
        raise _Mismatch(actual, expected)
    if left != right:
        raise _Mismatch(actual, expected)
    return True


class _BadExpected(Exception):
    """The expected side of a test's ``==`` raised outside the solution."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def _expected(thunk):
    try:
        return thunk()
    except Exception as exc:
        if _in_solution(exc):
            raise
        raise _BadExpected(exc)


class _Rewrite(ast.NodeTransformer):
    """``assert A == B`` -> ``_gra_check_eq(A, B)``: tolerant, and it keeps A."""

    def visit_Assert(self, node):
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
        ):
            expected = ast.Call(
                ast.Name("_gra_expected", ast.Load()),
                [ast.Lambda(_NO_ARGS, test.comparators[0])],
                [],
            )
            call = ast.Call(ast.Name("_gra_check_eq", ast.Load()), [test.left, expected], [])
            return ast.copy_location(ast.Expr(call), node)
        return node


_NO_ARGS = ast.arguments(
    posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
)


def _top_level():
    """Public top-level functions and classes of the solution, and the names that
    other top-level definitions use (helpers)."""
    tree = ast.parse(_SOURCE)
    functions, classes, used = [], [], set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not node.name.startswith("_") and node.name != "main" and not (
                node.name.startswith("test")
            ):
                (classes if isinstance(node, ast.ClassDef) else functions).append(node.name)
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and inner.id != node.name:
                    used.add(inner.id)
    return functions, classes, used


def _normal(name):
    return name.replace("_", "").lower()


def _alias(name):
    """What a tester's guessed name stands for in the solution, or None."""
    for key, value in list(_NS.items()):
        if not key.startswith("_") and _normal(key) == _normal(name) and callable(value):
            return value
    functions = [f for f in _FUNCTIONS if callable(_NS.get(f))]
    classes = [c for c in _CLASSES if isinstance(_NS.get(c), type)]
    for cls_name in classes:
        cls = _NS[cls_name]
        for attr in vars(cls):
            if _normal(attr) == _normal(name) and not attr.startswith("_"):
                try:
                    return getattr(cls(), attr)
                except Exception:
                    return None
    if len(functions) > 1:
        functions = [f for f in functions if f not in _USED]
    if len(functions) == 1:
        return _NS[functions[0]]
    if not functions and len(classes) == 1:
        cls = _NS[classes[0]]
        methods = [
            a for a, v in vars(cls).items() if not a.startswith("_") and callable(v)
        ]
        if name[:1].islower() and len(methods) == 1:
            try:
                return getattr(cls(), methods[0])
            except Exception:
                return None
        return cls
    return None


def _unknown_calls(tree):
    """Names the test calls that neither it, the solution nor builtins define."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    calls = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name not in bound and name not in _NS and not hasattr(builtins, name):
                calls.add(name)
    return calls


_ARITY = (" takes ", " missing ", " got an unexpected keyword", " got multiple values")


def _wrong_arity(exc):
    """A TypeError from calling a solution callable with the wrong arguments."""
    if type(exc) is not TypeError:
        return False
    message = str(exc)
    head = message.split("(", 1)[0].strip()
    if not head or "()" not in message or not any(p in message for p in _ARITY):
        return False
    return head.split(".")[0] in _NS


def _foreign_attribute(exc):
    """An AttributeError on an object of the solution's own: the tester guessed an API."""
    if not isinstance(exc, AttributeError):
        return False
    obj = getattr(exc, "obj", None)
    kind = obj if isinstance(obj, type) else type(obj)
    return getattr(kind, "__module__", None) == "solution"


def _test_globals(aliases):
    scope = dict(_NS)
    scope["__name__"] = "__gra_test__"
    scope.setdefault("math", math)  # testers often forget to import it
    scope["_gra_check_eq"] = _check_eq
    scope["_gra_same_items"] = _same_items
    scope["_gra_expected"] = _expected
    scope.update(aliases)
    return scope


def _calls_solution(code, aliases, limit):
    """Reruns a test under a profiler to tell whether it reached the solution."""
    hit = [False]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == _SOL:
            hit[0] = True
            sys.setprofile(None)

    scope = _test_globals(aliases)
    sys.setprofile(profile)
    try:
        _timed(lambda: exec(code, scope), limit)
    finally:
        sys.setprofile(None)
    return hit[0]


def _run_test(text):
    """("pass" | "fail" | "invalid" | "skip", detail)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        return "invalid", "the test does not parse: " + _cut(exc, 120)
    if not any(isinstance(n, (ast.Assert, ast.Raise)) for n in ast.walk(tree)):
        return "invalid", "the test asserts nothing"
    linecache.cache["<test>"] = (len(text), None, text.splitlines(True), "<test>")
    aliases = {}
    for name in _unknown_calls(tree):
        target = _alias(name)
        if target is not None:
            aliases[name] = target
    tree = ast.fix_missing_locations(_Rewrite().visit(tree))
    try:
        code = compile(tree, "<test>", "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as exc:
        return "invalid", "the test does not compile: " + _cut(exc, 120)
    scope = _test_globals(aliases)
    limit = _CFG["test_timeout_s"]
    status, value = _timed(lambda: exec(code, scope), limit)
    if status == "ok":
        return "pass", ""
    if status == "budget":
        return "skip", "no time left"
    if status == "timeout":
        return "fail", "timed out after %gs" % limit
    exc = value
    if isinstance(exc, _Mismatch):
        return "fail", "got " + _safe_repr(exc.actual) + ", expected " + _safe_repr(
            exc.expected, 120
        )
    if isinstance(exc, _BadExpected):
        return "invalid", "the expected value raises: " + _describe(exc.error)
    if _in_solution(exc):
        return "fail", _describe(exc)
    if isinstance(exc, AssertionError):
        return "fail", _describe(exc)
    if isinstance(exc, (NameError, ImportError, SyntaxError)):
        return "invalid", _describe(exc)
    if _wrong_arity(exc) or _foreign_attribute(exc):
        return "invalid", _describe(exc)
    if _calls_solution(code, aliases, limit):
        return "fail", _describe(exc)
    return "invalid", "the test fails before calling the solution: " + _describe(exc)


def _main():
    global _CFG, _SOL, _SOURCE, _NS, _FUNCTIONS, _CLASSES, _USED
    with open(os.path.join(_HERE, "tests.json"), encoding="utf-8") as fh:
        _CFG = json.load(fh)
    _SOL = os.path.join(_HERE, "solution.py")
    with open(_SOL, encoding="utf-8") as fh:
        _SOURCE = fh.read()
    signal.signal(signal.SIGALRM, _on_alarm)
    tail = _Tail(_CFG["output_chars"])
    sys.stdin = _Stdin("")
    sys.stdout = tail
    sys.stderr = tail
    sys.argv = ["solution.py"]
    module = types.ModuleType("solution")
    module.__file__ = _SOL
    sys.modules["solution"] = module
    _NS = module.__dict__
    _write("b import 0")
    try:
        code = compile(_SOURCE, _SOL, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        _emit(k="import", r="error", d=_cut("does not compile: %s" % exc, 400), out="")
        return
    status, value = _timed(lambda: exec(code, _NS), _CFG["import_timeout_s"])
    outcome, detail = "ok", ""
    if status in ("timeout", "budget"):
        outcome, detail = "timeout", "importing the code timed out"
    elif status == "raised":
        exc = value
        detail = _describe(exc)
        top = (getattr(exc, "name", None) or "").split(".")[0]
        if isinstance(exc, SystemExit):
            outcome = "exit"
        elif isinstance(exc, EOFError) or _STDIN_READ[0]:
            outcome = "input"
        elif isinstance(exc, ModuleNotFoundError) and top not in sys.stdlib_module_names:
            outcome = "module"
        elif isinstance(exc, FileNotFoundError):
            outcome = "file"
        else:
            outcome = "error"
    if outcome == "ok" and tail.total > _CFG["flood_chars"]:
        outcome = "flood"
        detail = "it printed %d characters while importing" % tail.total
    _emit(k="import", r=outcome, d=detail, out=tail.text)
    if outcome not in ("ok", "exit", "input"):
        return
    _FUNCTIONS, _CLASSES, _USED = _top_level()
    for group, tests in enumerate(_CFG["groups"]):
        for index, text in enumerate(tests):
            _write("b %d %d" % (group, index))
            _SEEN[0] = _SEEN[1] = None
            result, detail = _run_test(text)
            _emit(k="test", g=group, i=index, r=result, d=detail, v=_SEEN[0], e=_SEEN[1])
    _emit(k="end", out=tail.text)


try:
    _main()
    _emit(k="done")
except BaseException as exc:
    try:
        _emit(k="crash", d=_cut("".join(traceback.format_exception(exc)), 1500))
    except BaseException:
        pass
    os._exit(3)
os._exit(0)
'''


def build_harness(
    solution: str,
    examples: Sequence[str],
    test_sets: Sequence[Sequence[str]],
    *,
    test_timeout_s: float = 2.0,
    budget_s: float = 8.0,
    cpu_budget_s: float = 8.0,
    output_chars: int = 2000,
    flood_chars: int = 1_000_000,
) -> tuple[str, dict[str, str]]:
    """The sandbox ``source`` and ``files`` (solution.py, tests.json) that run the
    stated examples (group 0) and each test set (groups 1..n) against the solution.

    The run's first stdin line must be the nonce that will prefix its report lines.
    ``budget_s``/``cpu_budget_s`` stop it starting tests it could not finish before
    the sandbox's own limits end the process. A solution that prints more than
    ``flood_chars`` while importing fails: no training example floods its output.
    """
    config = {
        "groups": [list(examples), *[list(tests) for tests in test_sets]],
        "test_timeout_s": test_timeout_s,
        "import_timeout_s": max(test_timeout_s, min(2 * test_timeout_s, budget_s / 2)),
        "budget_s": budget_s,
        "cpu_budget_s": cpu_budget_s,
        "output_chars": output_chars,
        "flood_chars": flood_chars,
    }
    return _HARNESS, {"solution.py": solution, "tests.json": json.dumps(config)}


# --------------------------------------------------------------------------- the report

TestResult = Literal["pass", "fail", "invalid", "skip"]


@dataclass
class HarnessRun:
    """What the harness reported (only lines carrying the run's nonce count)."""

    import_status: str | None = None  # ok | exit | input | error | timeout | module | file | flood
    import_detail: str = ""
    output: str = ""
    results: dict[tuple[int, int], tuple[TestResult, str]] = field(default_factory=dict)
    # For ``==`` tests: the value the code gave and the value the test expected (as text
    # comparable across runs), when the comparison was reached.
    values: dict[tuple[int, int], tuple[str | None, str | None]] = field(default_factory=dict)
    # The test that had begun and not finished when the report stopped.
    unfinished: tuple[int, int] | None = None
    # Tests whose outcome independent derivations settled by vote
    # (``gra.verify.differential``): a failure among them needs no other set to agree.
    settled: frozenset[tuple[int, int]] = frozenset()
    in_import: bool = False
    ended: bool = False
    crash: str = ""


def parse_harness_output(stdout: str, nonce: str) -> HarnessRun:
    """The harness's report from the sandbox's stdout; other lines are ignored."""
    run = HarnessRun()
    prefix = nonce + " "
    begun: tuple[int, int] | None = None
    for line in stdout.splitlines():
        if not line.startswith(prefix):
            continue
        body = line[len(prefix) :]
        if body.startswith("b "):
            parts = body.split()
            if parts[1:2] == ["import"]:
                run.in_import = True
            elif len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                begun = (int(parts[1]), int(parts[2]))
            continue
        try:
            record = json.loads(body)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("k")
        if kind == "import":
            run.in_import = False
            run.import_status = str(record.get("r"))
            run.import_detail = str(record.get("d", ""))
            run.output = str(record.get("out", ""))
        elif kind == "test":
            key = (int(record.get("g", -1)), int(record.get("i", -1)))
            result = record.get("r")
            if result in ("pass", "fail", "invalid", "skip"):
                run.results[key] = (result, str(record.get("d", "")))
                actual, expected = record.get("v"), record.get("e")
                if isinstance(actual, str) or isinstance(expected, str):
                    run.values[key] = (
                        actual if isinstance(actual, str) else None,
                        expected if isinstance(expected, str) else None,
                    )
            if begun == key:
                begun = None
        elif kind == "end":
            run.output = str(record.get("out", run.output))
        elif kind == "done":
            run.ended = True
        elif kind == "crash":
            run.crash = str(record.get("d", ""))
    run.unfinished = begun
    return run


# --------------------------------------------------------------------------- the verdict


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 3)] + "..."


def _one_line(text: str, n: int = 160) -> str:
    return _cut(" ".join(text.split()), n)


def _stopped(status: str, reason: str, exit_code: int | None) -> str:
    if status in ("timeout", "limit"):
        return f"the sandbox stopped the run ({status}: {reason})" if reason else status
    return f"the process ended (exit code {exit_code})"


def judge_code(
    run: HarnessRun,
    *,
    status: str,
    reason: str = "",
    exit_code: int | None = None,
    stderr: str = "",
    examples: Sequence[str],
    test_sets: Sequence[Sequence[str]],
    test_agreement: float = 0.5,
    evidence_chars: int = 1500,
) -> VerificationOutput:
    """The coding verdict from the harness's report and the sandbox outcome.

    - the sandbox was unavailable, or the harness never reported -> cannot_verify;
    - the code does not compile, raises at import, or hangs at import -> failed
      (reading input, a module the sandbox lacks or a missing file -> cannot_verify;
      after reading input, the functions defined so far are still tested);
    - any stated example fails -> failed (the instruction's own word);
    - a test set is usable when one of its asserts is not invalid, and fails when a
      usable assert in it fails (assert, exception in the solution, timeout);
      failed when ``sets_failed >= max(1, ceil(test_agreement * sets_usable))``, or
      when a failing test is one whose value independent derivations settled by
      vote (``run.settled``): that witness needs no other set to agree;
    - passed when a usable test ran and nothing above failed it;
    - otherwise cannot_verify: nothing usable ran, or only the stated examples did
      (a wrong solution often passes every example its instruction gives).

    A test the process died in (the sandbox killed it, or the code ended the
    process) counts as failing; tests never started count as not run.
    """

    def out(verdict: str, why: str, evidence: str = "", **counts: int) -> VerificationOutput:
        return VerificationOutput(
            verdict,  # type: ignore[arg-type]
            "tests" if verdict != "cannot_verify" or counts else "none",
            why,
            _cut(evidence, evidence_chars),
            **counts,
        )

    if status == "unavailable":
        return VerificationOutput("cannot_verify", "none", f"sandbox unavailable: {reason}")
    if run.crash:
        return VerificationOutput(
            "cannot_verify", "none", "the harness failed", _cut(run.crash, evidence_chars)
        )
    output_tail = f"\nits output: {_cut(run.output[-400:], 400)}" if run.output.strip() else ""
    if run.import_status is None:
        if run.in_import:
            why = _stopped(status, reason, exit_code)
            return out("failed", f"the code did not finish importing: {why}", output_tail)
        return VerificationOutput(
            "cannot_verify",
            "none",
            f"the harness did not report ({status}{': ' + reason if reason else ''})",
            _cut(stderr[-evidence_chars:], evidence_chars),
        )
    imported = run.import_status
    if imported in ("error", "timeout", "flood"):
        why = {
            "timeout": "importing the code timed out",
            "flood": "the code floods its output",
        }.get(imported, "the code raises")
        return out("failed", why, run.import_detail + output_tail)
    if imported in ("module", "file"):
        why = (
            "the code needs a module the sandbox lacks"
            if imported == "module"
            else ("the code reads a file that is not there")
        )
        return VerificationOutput("cannot_verify", "none", why, run.import_detail)

    results = dict(run.results)
    if run.unfinished is not None and run.unfinished not in results:
        results[run.unfinished] = ("fail", _stopped(status, reason, exit_code))

    groups = [list(examples), *[list(t) for t in test_sets]]

    def text_of(key: tuple[int, int]) -> str:
        g, i = key
        if 0 <= g < len(groups) and 0 <= i < len(groups[g]):
            return groups[g][i]
        return "?"

    def fail_lines(keys: list[tuple[int, int]]) -> str:
        return "\n".join(
            f"{_one_line(text_of(k), 200)}  -> {_one_line(results[k][1], 240)}" for k in keys
        )

    example_keys = [(0, i) for i in range(len(groups[0]))]
    example_ran = [k for k in example_keys if results.get(k, ("skip",))[0] in ("pass", "fail")]
    example_failed = [k for k in example_ran if results[k][0] == "fail"]
    usable_sets = 0
    failed_sets: list[int] = []
    tests_run = 0
    tests_failed: list[tuple[int, int]] = []
    for g in range(1, len(groups)):
        keys = [(g, i) for i in range(len(groups[g]))]
        ran = [k for k in keys if results.get(k, ("skip",))[0] in ("pass", "fail")]
        failing = [k for k in ran if results[k][0] == "fail"]
        tests_run += len(ran)
        tests_failed += failing
        if ran:
            usable_sets += 1
            if failing:
                failed_sets.append(g)
    counts = {
        "examples_run": len(example_ran),
        "examples_failed": len(example_failed),
        "tests_run": tests_run,
        "tests_failed": len(tests_failed),
        "sets_usable": usable_sets,
        "sets_failed": len(failed_sets),
    }
    note = "" if imported == "ok" else f" (at import: {run.import_detail})"
    if example_failed:
        return out(
            "failed",
            f"{len(example_failed)} of {len(example_ran)} stated examples fail{note}",
            fail_lines(example_failed),
            **counts,
        )
    needed = max(1, math.ceil(test_agreement * usable_sets))
    if usable_sets and len(failed_sets) >= needed:
        keys = [k for k in tests_failed if k[0] in failed_sets]
        return out(
            "failed",
            f"{len(failed_sets)} of {usable_sets} test sets fail{note}",
            fail_lines(keys),
            **counts,
        )
    settled_failures = [k for k in tests_failed if k in run.settled]
    if settled_failures:
        return out(
            "failed",
            f"independent derivations agree on the value of {len(settled_failures)} failing "
            f"test{'s' * (len(settled_failures) != 1)} ({len(failed_sets)} of {usable_sets} "
            f"test sets fail){note}",
            fail_lines(settled_failures),
            **counts,
        )
    if example_ran and not tests_run:
        return VerificationOutput(
            "cannot_verify",
            "none",
            f"only the instruction's own examples ran ({len(example_ran)}, all pass); no "
            "tester's assert was usable, and a wrong solution often passes its examples",
            **counts,
        )
    if tests_run:
        dissent = ""
        if failed_sets:
            keys = [k for k in tests_failed if k[0] in failed_sets]
            dissent = "outvoted failures:\n" + fail_lines(keys)
        return out(
            "passed",
            f"{len(example_ran)} stated examples and {tests_run} tests in {usable_sets} "
            f"usable sets ran; {len(failed_sets)} sets fail{note}",
            dissent,
            **counts,
        )
    if imported == "input":
        return VerificationOutput(
            "cannot_verify", "none", "the code reads input", run.import_detail, **counts
        )
    invalid = [k for k, (r, _) in results.items() if r == "invalid"]
    return VerificationOutput(
        "cannot_verify",
        "none",
        "no stated example or usable test ran",
        fail_lines(invalid[:5]) if invalid else "",
        **counts,
    )
