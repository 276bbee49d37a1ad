"""Accepted items as a training set: JSONL, Parquet or a Hugging Face dataset.

A run's records carry the whole review trail; a fine-tuning job wants the pair
and a little metadata. ``chat`` style is what chat templates and TRL's SFT
trainer read (``messages``); ``alpaca`` style is the older
instruction/input/output layout. Both keep id, domain, keywords, summary and
the committee mean, so a user can filter or weight by them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gra.data.card import render_card, write_card
from gra.errors import CorruptRecordError, ExportError
from gra.rundir import ACCEPTED, Raw, read_jsonl, round_files

Format = Literal["jsonl", "parquet", "hf"]
Style = Literal["chat", "alpaca"]
FORMATS: tuple[str, ...] = ("jsonl", "parquet", "hf")
STYLES: tuple[str, ...] = ("chat", "alpaca")


@dataclass(frozen=True)
class ExportResult:
    out: Path
    count: int
    sources: list[Path]
    duplicates: int  # records whose id was already exported from an earlier file
    card: Path | None = None  # the dataset card (README.md) written with it


def accepted_files(run_dir: Path) -> list[Path]:
    """``accepted.jsonl`` at the top, then ``round-N/accepted.jsonl`` by round number."""
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: not a run directory")
    top = run_dir / ACCEPTED
    rounds = [path for _, path in round_files(run_dir, ACCEPTED)]
    files = ([top] if top.is_file() else []) + rounds
    if not files:
        raise ExportError(f"{run_dir}: no {ACCEPTED} (nor round-*/{ACCEPTED})")
    return files


def _records(path: Path) -> Iterator[Raw]:
    """The accepted records of ``path``; a torn last line is a write still in progress."""
    try:
        for number, record in enumerate(read_jsonl(path, Raw), start=1):
            if not {"id", "instruction", "response"} <= record.keys():
                raise ExportError(f"{path}: record {number} is not an item record")
            if record.get("decision", "accepted") == "accepted":
                yield record
    except CorruptRecordError as exc:
        raise ExportError(str(exc)) from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror}") from None


def read_accepted(run_dir: Path) -> tuple[list[dict[str, Any]], list[Path], int]:
    """Every accepted record once (first file wins), the files read, and the repeats."""
    files = accepted_files(run_dir)
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    duplicates = 0
    for path in files:
        for record in _records(path):
            if record["id"] in seen:
                duplicates += 1
                continue
            seen.add(record["id"])
            records.append(record)
    return records, files, duplicates


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    mean = record.get("mean")
    return {
        "id": str(record["id"]),
        "domain": record.get("domain") or "",
        "keywords": [str(k) for k in record.get("keywords") or []],
        "summary": record.get("summary") or "",
        "mean": None if mean is None else float(mean),
    }


def to_chat(record: dict[str, Any]) -> dict[str, Any]:
    messages = [
        {"role": "user", "content": record["instruction"]},
        {"role": "assistant", "content": record["response"]},
    ]
    return {"messages": messages, **_metadata(record)}


def to_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruction": record["instruction"],
        "input": "",
        "output": record["response"],
        **_metadata(record),
    }


def _schema(style: Style) -> Any:
    """Explicit, so an empty export or an all-null column still has its types."""
    import pyarrow as pa

    metadata = [
        ("id", pa.string()),
        ("domain", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("summary", pa.string()),
        ("mean", pa.float64()),
    ]
    if style == "chat":
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        return pa.schema([("messages", pa.list_(message)), *metadata])
    text = [("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]
    return pa.schema([*text, *metadata])


def _table(rows: list[dict[str, Any]], style: Style) -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise ExportError("parquet and hf exports need pyarrow (pip install pyarrow)") from None
    return pa.Table.from_pylist(rows, schema=_schema(style))


def _write_jsonl(rows: list[dict[str, Any]], out: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, out)


def _write_parquet(rows: list[dict[str, Any]], out: Path, style: Style) -> None:
    import pyarrow.parquet as pq

    partial = out.with_name(out.name + ".partial")
    pq.write_table(_table(rows, style), partial)
    os.replace(partial, out)


def _write_hf(rows: list[dict[str, Any]], out: Path, style: Style) -> None:
    table = _table(rows, style)
    try:
        from datasets import Dataset
    except ImportError:
        raise ExportError("hf exports need datasets (pip install datasets)") from None
    if out.exists():
        shutil.rmtree(out)
    Dataset(table).save_to_disk(str(out))


def export(
    run_dir: Path,
    out: Path,
    format: Format = "jsonl",
    style: Style = "chat",
    *,
    overwrite: bool = False,
    with_card: bool = True,
) -> ExportResult:
    """Write a run's accepted items to ``out`` (a file, or a directory for ``hf``),
    and a dataset card (README.md) beside the file or inside the directory."""
    if format not in FORMATS:
        raise ExportError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    if style not in STYLES:
        raise ExportError(f"style {style!r}: expected one of {', '.join(STYLES)}")
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (pass overwrite=True to replace it)")
    if out.exists() and (out.is_dir() != (format == "hf")):
        raise ExportError(f"{out}: exists and is not a {'directory' if format == 'hf' else 'file'}")
    records, sources, duplicates = read_accepted(run_dir)
    convert = to_chat if style == "chat" else to_alpaca
    rows = [convert(record) for record in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "jsonl":
        _write_jsonl(rows, out)
    elif format == "parquet":
        _write_parquet(rows, out, style)
    else:
        _write_hf(rows, out, style)
    card = None
    if with_card:
        # The card sits where the Hub looks for it: at the root of what is uploaded.
        where, data_files = (out, "data-*.arrow") if format == "hf" else (out.parent, out.name)
        text = render_card(run_dir, rows, data_files, style, format)
        card = write_card(where / "README.md", text)
    return ExportResult(out, len(rows), sources, duplicates, card)
