"""Seed files: untrusted input, read strictly, errors name file and line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gra.config import SeedSettings


class SeedError(Exception):
    """A seed file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class SeedItem:
    id: str
    instruction: str
    response: str
    domain: str


def load_seeds(path: Path, settings: SeedSettings) -> list[SeedItem]:
    """Read a JSONL seed file: one object per line with instruction and response."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeedError(f"{path}: seed file not found") from None
    except UnicodeDecodeError as exc:
        raise SeedError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SeedError(f"{path}: cannot read: {exc.strerror}") from None
    items: list[SeedItem] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeedError(f"{where}: not a JSON object: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict):
            raise SeedError(f"{where}: expected a JSON object, got {type(row).__name__}")
        fields = {}
        for key in (settings.instruction, settings.response):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise SeedError(f"{where}: field {key!r} must be a non-empty string")
            fields[key] = value
        domain = row.get(settings.domain, settings.default_domain)
        if not isinstance(domain, str) or not domain.strip():
            raise SeedError(f"{where}: field {settings.domain!r} must be a non-empty string")
        item_id = str(row.get(settings.id, f"{path.stem}-{number}"))
        if item_id in seen:
            raise SeedError(f"{where}: duplicate id {item_id!r}")
        seen.add(item_id)
        items.append(
            SeedItem(
                item_id, fields[settings.instruction], fields[settings.response], domain.strip()
            )
        )
    if not items:
        raise SeedError(f"{path}: no seed items")
    return items
