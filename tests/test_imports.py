"""House rules on imports that a tool checks rather than a memory.

The layer contracts live in pyproject.toml (``[tool.importlinter]``, run by
``lint-imports`` in ``make test`` and ``make lint``); here: what a light module
must not load, and that nothing outside ``gra/`` uses a private name of it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from tests.conftest import ROOT

HEAVY = ("llama_cpp", "httpx", "numpy", "torch", "zmq")


def _loaded_by(statement: str) -> set[str]:
    probe = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_config_and_seeds_load_no_backend() -> None:
    """Reading a config or a seed file must not load a model runtime, an HTTP client
    or numpy: ``gra.config`` once pulled them all in through the llama.cpp backend."""
    assert _loaded_by("import gra.config, gra.data.seeds") == set()


def test_the_backend_interface_loads_no_backend() -> None:
    assert _loaded_by("import gra.backends, gra.backends.base, gra.errors") == set()


def test_the_backends_still_load_by_name() -> None:
    from gra.backends import LlamaCppBackend, NoModelBackend, OpenAIBackend

    assert {LlamaCppBackend.__name__, NoModelBackend.__name__, OpenAIBackend.__name__} == {
        "LlamaCppBackend",
        "NoModelBackend",
        "OpenAIBackend",
    }


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_private_imports", ROOT / "scripts" / "check_private_imports.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nothing_outside_gra_uses_a_private_name(capsys) -> None:
    assert _checker().main([]) == 0, capsys.readouterr().out


def test_the_private_name_check_sees_each_form() -> None:
    # "~" stands for a leading "_", so this file does not trip the check itself.
    source = "\n".join(
        [
            "from gra.supervisor.conductor import ~COMMIT_MIN_INTERVAL_S, Conductor",
            "from gra.supervisor import conductor",
            "import gra.supervisor.~hidden",
            "import gra.supervisor.conductor as cd",
            "a = conductor.~AUTO_IN_FLIGHT_PER_SLOT",
            "b = cd.~COMMIT_MIN_INTERVAL_S",
            "c = gra.supervisor.conductor.~COMMIT_MIN_INTERVAL_S",
            'monkeypatch.setattr("gra.supervisor.conductor.~COMMIT_MIN_INTERVAL_S", 0)',
            "d = Conductor().~pending",  # an object's attribute, not a module's name
            "from gra import __version__",
            "from gra.supervisor.conductor import Conductor as ~Conductor",
        ]
    ).replace("~", "_")
    lines = sorted({line for line, _ in _checker().private_uses(source)})
    assert lines == [1, 3, 5, 6, 7, 8]
