"""The one JSON-lines reader: every line of a run's files decoded the same way.

Writers append whole lines (gra.supervisor.lines), so only the last line can be
half written: by a crash, or by a run still going while someone reads. Any other
line that does not decode was put there by someone else: it is named by file and
line (``CorruptRecordError``), or skipped where the reader must open anything
(the report).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from gra.errors import CorruptRecordError

T = TypeVar("T")

# A record as plain JSON, for readers that must tolerate any shape.
Raw = dict[str, Any]


@functools.lru_cache(maxsize=64)
def _decoder(record_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(record_type)


def decode_line(decoder: msgspec.json.Decoder[T], line: bytes, path: Path, number: int) -> T:
    """One line decoded; a bad one is named by file and line, never a traceback."""
    try:
        return decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(path, number, str(exc)) from None


def cut_torn_tail(path: Path) -> None:
    """Drop a last line that lacks its newline (a write cut short); only for the file's
    own writer, on resume: anyone else might cut a line still being written."""
    if not path.exists():
        return
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        # Walk back to the last newline; records are small, so read the tail.
        block = min(size, 1 << 20)
        while True:
            handle.seek(size - block)
            tail = handle.read(block)
            end = tail.rfind(b"\n")
            if end >= 0 or block == size:
                keep = size - block + end + 1 if end >= 0 else 0
                break
            block = min(size, block * 2)
        if keep != size:
            handle.truncate(keep)


def read_jsonl(
    path: Path,
    record_type: type[T],
    *,
    cut_tail: bool = False,
    skip_bad: bool = False,
) -> Iterator[T]:
    """Every non-blank line of ``path`` decoded as ``record_type``, streamed (outputs grow
    to gigabytes); a missing file has none.

    A last line without its newline is torn: with ``cut_tail`` it is cut from the file
    first, otherwise it is kept if it decodes and skipped if not. Any other line that
    does not decode raises ``CorruptRecordError`` (FILE:LINE), or is skipped with
    ``skip_bad``.
    """
    if not path.is_file():
        return
    if cut_tail:
        cut_torn_tail(path)
    decoder = _decoder(record_type)
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as exc:
                if skip_bad or not line.endswith(b"\n"):
                    continue
                raise CorruptRecordError(path, number, str(exc)) from None


def read_raw(paths: Iterable[Path]) -> Iterator[Raw]:
    """Every JSON object in the files ``paths``, never raising on what is not one.

    For readers that must open any run directory, one still being written or one
    from another version: nothing is modified, and lines that do not decode to an
    object are skipped.
    """
    for path in paths:
        yield from read_jsonl(Path(path), Raw, skip_bad=True)


class _Id(msgspec.Struct):
    id: str


def read_ids(path: Path) -> set[str]:
    """The ``id`` of every record in ``path`` (a torn tail cut), decoding nothing else."""
    return {record.id for record in read_jsonl(path, _Id, cut_tail=True)}


class _RunStart(msgspec.Struct):
    config_path: str = ""


def journal_config_path(journal: Path) -> str | None:
    """The config a run started from, as the journal's first entry names it; None when
    that entry is missing or names none (the report and the card go on without it)."""
    try:
        first = next(read_jsonl(journal, _RunStart, skip_bad=True), None)
    except OSError:
        return None
    return first.config_path if first is not None and first.config_path else None
