"""structlog setup: readable lines on the console, JSON lines in a file.

Called once in every process after it starts (cached loggers do not survive
a fork or pickling).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import msgspec
import structlog

_json_encoder = msgspec.json.Encoder()


def _dumps(obj: Any, default: Any = None) -> str:
    # structlog hands its serializer a ``default=``; msgspec takes ``enc_hook``.
    try:
        return _json_encoder.encode(obj).decode()
    except TypeError:
        return msgspec.json.encode(obj, enc_hook=default or str).decode()


class _Tee:
    """Sends each event to both the console and the JSON file renderers."""

    def __init__(self, console: TextIO | None, json_file: TextIO | None, level: int) -> None:
        self._console = console
        self._json_file = json_file
        self._level = level
        self._console_renderer = structlog.dev.ConsoleRenderer(
            colors=bool(console and console.isatty())
        )
        self._json_renderer = structlog.processors.JSONRenderer(serializer=_dumps)

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> str:
        if self._json_file is not None:
            # A full disk must not turn a log line into a crash; outputs report it.
            with contextlib.suppress(OSError):
                self._json_file.write(self._json_renderer(logger, method, dict(event)) + "\n")
                self._json_file.flush()
        if self._console is not None and logging.getLevelName(method.upper()) >= self._level:
            self._console.write(self._console_renderer(logger, method, dict(event)) + "\n")
            self._console.flush()
        raise structlog.DropEvent


def configure(
    *,
    json_path: Path | None = None,
    console: TextIO | None = sys.stderr,
    level: str = "info",
    **context: Any,
) -> None:
    """Configure this process's logging; ``context`` is bound to every event."""
    json_file = json_path.open("a", encoding="utf-8") if json_path else None
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            _Tee(console, json_file, numeric if isinstance(numeric, int) else logging.INFO),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    if context:
        structlog.contextvars.bind_contextvars(**context)
