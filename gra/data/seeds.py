"""Seed files: untrusted input, read strictly, errors name file and place.

The format follows the extension: ``.csv`` is CSV with a header row,
``.parquet``/``.pq`` is Parquet, anything else is JSONL (one object per line),
so seed files named before CSV and Parquet existed keep working. Every row
error names the file and the place a user can find it: ``file:LINE`` for JSONL
and CSV (the line the record starts on), ``file: row N`` for Parquet (1-based).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gra.config import SeedSettings
from gra.errors import SeedError

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
KEYWORDS_PER_ITEM = 3  # the paper's keyword triple


@dataclass(frozen=True)
class SeedItem:
    id: str
    instruction: str
    response: str
    domain: str
    # Empty until the item is annotated; a seed file may already carry them.
    keywords: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class SeedSet:
    """The usable items, and one ``place: reason`` per row left out."""

    items: list[SeedItem]
    skipped: list[str] = field(default_factory=list)


class _BadRow(Exception):
    """A row that cannot become a seed item; the caller adds the place."""


# One row as a reader sees it: where it is, its number (for the default id),
# and its cells by column, or why it could not be read at all.
_Row = tuple[str, int, "dict[str, Any] | _BadRow"]


def load_seeds(path: Path, settings: SeedSettings) -> list[SeedItem]:
    """Read a seed file strictly: the first bad row stops with a SeedError."""
    return read_seeds(path, settings).items


def read_seeds(path: Path, settings: SeedSettings, *, skip_bad_rows: bool = False) -> SeedSet:
    """Read a seed file; with ``skip_bad_rows`` a bad row is recorded and passed over.

    Errors that concern the whole file (missing, unreadable, not UTF-8, a
    required column absent) always raise: skipping would skip every row.
    """
    items: list[SeedItem] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for where, number, row in _rows(path, settings):
        try:
            if isinstance(row, _BadRow):
                raise row
            item = _item(row, settings, default_id=f"{path.stem}-{number}")
            if item.id in seen:
                raise _BadRow(f"duplicate id {item.id!r}")
        except _BadRow as exc:
            reason = f"{where}: {exc}"
            if not skip_bad_rows:
                raise SeedError(reason) from None
            skipped.append(reason)
            continue
        seen.add(item.id)
        items.append(item)
    if not items:
        more = f" ({len(skipped)} bad rows skipped)" if skipped else ""
        raise SeedError(f"{path}: no seed items{more}")
    return SeedSet(items, skipped)


def _rows(path: Path, settings: SeedSettings) -> Iterator[_Row]:
    suffix = path.suffix.lower()
    required = (settings.instruction, settings.response)
    if suffix in CSV_SUFFIXES:
        return _csv_rows(path, required)
    if suffix in PARQUET_SUFFIXES:
        return _parquet_rows(path, required, _columns(settings))
    return _jsonl_rows(path)


def _columns(settings: SeedSettings) -> list[str]:
    return [
        settings.id,
        settings.instruction,
        settings.response,
        settings.domain,
        getattr(settings, "keywords", "keywords"),
        getattr(settings, "summary", "summary"),
    ]


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    try:
        return path.read_bytes().decode(encoding)
    except FileNotFoundError:
        raise SeedError(f"{path}: seed file not found") from None
    except UnicodeDecodeError as exc:
        raise SeedError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SeedError(f"{path}: cannot read: {exc.strerror}") from None


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, number, _BadRow(f"not a JSON object: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(row, dict):
            yield where, number, _BadRow(f"expected a JSON object, got {type(row).__name__}")
            continue
        yield where, number, row


def _require(where: str, columns: list[str], required: tuple[str, ...]) -> None:
    for column in required:
        if column not in columns:
            raise SeedError(f"{where}: no column {column!r} (columns: {', '.join(columns)})")
    for column in columns:
        if columns.count(column) > 1:
            raise SeedError(f"{where}: column {column!r} appears more than once")


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[_Row]:
    # utf-8-sig: spreadsheets often write a byte-order mark before the header.
    text = _read_text(path, "utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    start = 1  # the line the next record starts on; reader.line_num is where it ended
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if header is None:
                raise SeedError(f"{path}:{start}: malformed CSV header: {exc}") from None
            yield f"{path}:{start}", start, _BadRow(f"malformed CSV: {exc}")
            start = reader.line_num + 1
            continue
        number, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            _require(f"{path}:{number}", header, required)
            continue
        where = f"{path}:{number}"
        if len(cells) != len(header):
            yield where, number, _BadRow(f"expected {len(header)} fields, got {len(cells)}")
            continue
        # An empty cell is a missing value: CSV cannot tell them apart.
        cells_or_none = [cell if cell != "" else None for cell in cells]
        yield where, number, dict(zip(header, cells_or_none, strict=True))
    if header is None:
        raise SeedError(f"{path}: no seed items (no header row)")


def _parquet_rows(path: Path, required: tuple[str, ...], wanted: list[str]) -> Iterator[_Row]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SeedError(f"{path}: Parquet seeds need pyarrow (pip install pyarrow)") from None
    try:
        file = pq.ParquetFile(path)
    except FileNotFoundError:
        raise SeedError(f"{path}: seed file not found") from None
    except (OSError, pa.ArrowException) as exc:
        raise SeedError(f"{path}: not a readable Parquet file: {exc}") from None
    columns = list(file.schema_arrow.names)
    _require(str(path), columns, required)
    number = 0
    try:
        # Only the columns a seed uses: an exotic type elsewhere must not matter.
        for batch in file.iter_batches(columns=[c for c in columns if c in wanted]):
            for row in batch.to_pylist():
                number += 1
                yield f"{path}: row {number}", number, row
    except (OSError, pa.ArrowException) as exc:
        raise SeedError(f"{path}: row {number + 1}: unreadable Parquet data: {exc}") from None


def _text(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise _BadRow(f"field {column!r} must be a non-empty string")
    return value


def _item(row: dict[str, Any], settings: SeedSettings, *, default_id: str) -> SeedItem:
    instruction = _text(row, settings.instruction)
    response = _text(row, settings.response)
    domain = row.get(settings.domain)
    domain = settings.default_domain if domain is None else _text(row, settings.domain).strip()
    item_id = row.get(settings.id)
    if item_id is None:
        item_id = default_id
    elif isinstance(item_id, bool) or not isinstance(item_id, str | int) or item_id == "":
        raise _BadRow(f"field {settings.id!r} must be a non-empty string or an integer")
    keywords_column = getattr(settings, "keywords", "keywords")
    summary_column = getattr(settings, "summary", "summary")
    summary = row.get(summary_column)
    if summary is not None and not isinstance(summary, str):
        raise _BadRow(f"field {summary_column!r} must be a string")
    return SeedItem(
        id=str(item_id),
        instruction=instruction,
        response=response,
        domain=domain,
        keywords=_keywords(row.get(keywords_column), keywords_column),
        summary=(summary or "").strip(),
    )


def _keywords(value: object, column: str) -> tuple[str, ...]:
    """A keyword triple from a list, a JSON list string, or ``"a, b, c"``."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        try:
            value = json.loads(text) if text.startswith("[") else text.split(",")
        except json.JSONDecodeError:
            raise _BadRow(f"field {column!r}: starts with '[' but is not a JSON list") from None
    if not isinstance(value, list | tuple) or not all(isinstance(k, str) for k in value):
        raise _BadRow(f"field {column!r} must be a list of strings or 'a, b, c'")
    words = tuple(k.strip() for k in value)
    if not words:
        return ()
    if len(words) != KEYWORDS_PER_ITEM or not all(words):
        raise _BadRow(
            f"field {column!r} must hold {KEYWORDS_PER_ITEM} non-empty keywords, got {list(words)}"
        )
    return words
