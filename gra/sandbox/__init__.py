"""Running untrusted, model-generated Python: see gra.sandbox.runner."""

from gra.sandbox.model import SandboxLimits, SandboxResult, SandboxStatus
from gra.sandbox.runner import run_python, run_python_async, sandbox_unavailable

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "SandboxStatus",
    "run_python",
    "run_python_async",
    "sandbox_unavailable",
]
