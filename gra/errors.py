"""Every error gra raises on purpose, in one tree; `gra` catches its root.

Our exception hierarchy::

    GraError                     the root: one line for the user, never a traceback
    ├── UserError                something the user can fix (a file, a flag, a directory): exit 2
    │   ├── ConfigError          a config file: names the file and the key
    │   ├── SeedError            a seed file: names the file and the line
    │   ├── ModelError           a model file that cannot be assembled, found or verified
    │   ├── EmbeddingError       the deduplication model is missing or not the one it claims
    │   ├── KeyFileError         a CURVE keys directory or key file unsafe to use
    │   ├── OutputDirError       an output directory that cannot hold this run
    │   │   └── OutputDirInUse   another live process holds its lock
    │   ├── OutputError          an output directory that takes no more writes (disk full)
    │   ├── CorruptRecordError   a whole line of an output file that does not decode
    │   ├── JournalError         a journal entry that does not decode
    │   ├── ResumeError          a `--resume` with nothing to resume from
    │   │   └── TargetAlreadyMet nothing left to do (`gra run` exits 0 on it)
    │   ├── ExportError          a run directory that cannot be exported, or a clobber
    │   ├── StatusError          a directory with no readable run summary
    │   └── SummaryError         a summary.json that cannot be read: names the file
    ├── RunError                 a run that cannot go on (no fleet, a disk gone): exit 2
    │   └── FleetFailed          the fleet did not come up, or a local model is unusable
    ├── ProtocolError            an event the peer-review protocol forbids: a bug, exit 1
    ├── BackendError             a model call that failed (the agent records it per task)
    │   ├── BackendUnavailable   the server or model cannot be reached or loaded
    │   │   └── ModelUnusable    the model itself cannot be used: retrying will not help
    │   │       └── ServerStartError  the vLLM server an agent starts for itself did not come up
    │   ├── BackendCancelled     the call was aborted (deadline, shutdown)
    │   └── GrammarError         a schema whose converted grammar gra cannot adjust
    └── InvalidOutput            model output that decoded but makes no sense for its role

User and run errors reach the user as one line; the others are handled where
they happen (a failed task is data) and reach the CLI only through a bug.
Each class stays importable from the module that raises it
(``gra.config.ConfigError``, ``gra.backends.BackendError`` ...). This module
imports nothing of ours, so every layer, the protocol included, may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

__all__ = [
    "BackendCancelled",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "CorruptRecordError",
    "EmbeddingError",
    "ExportError",
    "FleetFailed",
    "GraError",
    "GrammarError",
    "InvalidOutput",
    "JournalError",
    "KeyFileError",
    "ModelError",
    "ModelUnusable",
    "OutputDirError",
    "OutputDirInUse",
    "OutputError",
    "ProtocolError",
    "ResumeError",
    "RunError",
    "SeedError",
    "ServerStartError",
    "StatusError",
    "SummaryError",
    "TargetAlreadyMet",
    "UserError",
]


class GraError(Exception):
    """The root. ``exit_code`` is what `gra` exits with when one reaches it."""

    exit_code: ClassVar[int] = 1


# ---- user errors -----------------------------------------------------------------


class UserError(GraError):
    """Something the user can fix; the message names the file, key or flag."""

    exit_code: ClassVar[int] = 2


class ConfigError(UserError):
    """A user error in a config file: the message names the file and the key."""


class SeedError(UserError):
    """A seed file that cannot be used; the message names the file and line."""


class ModelError(UserError):
    """A model cannot be assembled, found or verified."""


class EmbeddingError(UserError):
    """The embedding model is missing or is not the model it claims to be."""


class KeyFileError(UserError):
    """A keys directory or key file that cannot be used safely."""


class OutputDirError(UserError):
    """The output directory cannot be used for this run; the message says why."""


class OutputDirInUse(OutputDirError):
    """Another live process holds the directory's lock."""


class OutputError(UserError):
    """The output directory cannot take more writes; the message says why."""


class CorruptRecordError(UserError):
    """A whole line of an output file that does not decode: ``FILE:LINE: ...``.

    Only a torn last line is a crash's doing and is cut; anything else was
    written by someone else, and resuming over it would lose or duplicate
    records, so the run refuses to start and changes nothing.
    """

    def __init__(self, path: Path, number: int, reason: str) -> None:
        super().__init__(f"{path}:{number}: corrupt record ({reason}); fix or remove that line")


class JournalError(UserError):
    """A journal line that does not decode: ``FILE:LINE: ...``."""


class ResumeError(UserError):
    """A ``--resume`` that cannot carry the run on."""


class TargetAlreadyMet(ResumeError):
    """Nothing to do: the run's last round already has its target (not an error)."""


class ExportError(UserError):
    """A run directory that cannot be exported, or an output that would be clobbered."""


class StatusError(UserError):
    """A directory whose run summary cannot be read."""


class SummaryError(UserError):
    """A run's summary.json that does not decode (or cannot be read): names the file."""


# ---- run errors ------------------------------------------------------------------


class RunError(GraError):
    """The run cannot go on (no fleet, all agents failed to start...)."""

    exit_code: ClassVar[int] = 2


class FleetFailed(RunError):
    """The fleet cannot run the protocol: it did not come up, or a local agent's model
    is unusable. The supervisor's shell adds what the agents wrote to their logs."""

    def __init__(self, what: str, agent_id: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        # The agent whose own error line says it best (an unusable model).
        self.agent_id = agent_id


# ---- protocol errors -------------------------------------------------------------


class ProtocolError(GraError):
    """An event that the protocol forbids (wrong model, wrong stage, duplicate)."""


# ---- backend errors --------------------------------------------------------------


class BackendError(GraError):
    """Anything a backend call can fail with."""


class BackendUnavailable(BackendError):
    """The server or model cannot be reached or loaded."""


class ModelUnusable(BackendUnavailable):
    """A model file that is missing, not a model, or truncated: the agent says so and
    exits with ``AGENT_EXIT_UNUSABLE`` so the supervisor stops at once, without restarts."""


class ServerStartError(ModelUnusable):
    """The vLLM server an agent starts for itself (``[[agents]] serve``) exited or was not
    ready in time: its log says why, and starting it again would fail the same way."""


class BackendCancelled(BackendError):
    """The call was aborted (deadline, shutdown)."""


class GrammarError(BackendError):
    """The grammar converted from a schema does not have the one JSON string rule gra
    sets (``gra.backends.gbnf``)."""


# ---- model output ----------------------------------------------------------------


class InvalidOutput(GraError):
    """Model output that decoded but does not make sense for the role."""
