"""Nothing outside ``gra/`` may use a private name of ``gra``.

A leading underscore is the package's way of saying "free to change"; a test,
benchmark, example or script that reaches for one pins it. Flags, in every
``.py`` file under the given directories:

- ``from gra.x import _y`` and ``import gra.x._y`` / ``from gra.x._y import z``;
- ``gra.x._y`` written out, in code or in a string (``monkeypatch.setattr``);
- ``m._y`` where ``m`` names a ``gra`` module (``from gra.x import m``, ``import gra.x as m``).

Dunder names (``__version__``) are public. Usage: ``check_private_imports.py [DIR ...]``;
exit 1 with one ``FILE:LINE: ...`` per use found.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIRS = ("tests", "benchmarks", "examples", "scripts")
_DOTTED = re.compile(r"\bgra(?:\.[A-Za-z_]\w*)*\.(_[A-Za-z]\w*)")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_gra_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _ours(module: str | None) -> bool:
    return module is not None and (module == "gra" or module.startswith("gra."))


def private_uses(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each private ``gra`` name ``source`` uses."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree) if _has_docstring(node)}
    modules: set[str] = set()  # local names bound to gra modules
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _ours(alias.name):
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    yield node.lineno, f"import {alias.name}"
                if alias.asname:
                    modules.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module):
            assert node.module is not None
            if any(_private(part) for part in node.module.split(".")):
                yield node.lineno, f"from {node.module} import ..."
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"
                elif _is_gra_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            if dotted is not None and (dotted.split(".")[0] in modules or _ours(dotted)):
                yield node.lineno, f"{dotted}.{node.attr}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            for match in _DOTTED.finditer(node.value):
                if _private(match.group(1)):
                    yield node.lineno, match.group(0)


def _has_docstring(node: ast.AST) -> bool:
    body = getattr(node, "body", None)
    return (
        isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and bool(body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def main(argv: list[str]) -> int:
    dirs = [Path(d) for d in argv] or [ROOT / d for d in DEFAULT_DIRS]
    found = []
    for directory in dirs:
        paths = [directory] if directory.is_file() else sorted(directory.rglob("*.py"))
        for path in paths:
            for line, what in sorted(set(private_uses(path.read_text()))):
                found.append(f"{path}:{line}: private name of gra: {what}")
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
