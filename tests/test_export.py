"""Export: each format read back with its own library, in both styles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gra.data.export import ExportError, accepted_files, export


def record(item_id: str, mean: float | None = 9.0, **extra: Any) -> dict[str, Any]:
    """A line of accepted.jsonl as the supervisor writes it (review trail included)."""
    return {
        "id": item_id,
        "round": 1,
        "domain": "coding",
        "keywords": ["list", "reverse", "slice"],
        "summary": "slicing reverses a list",
        "instruction": f"instruction {item_id}",
        "response": f"response {item_id}\nwith a second line",
        "seed_ids": ["seed-01"],
        "generator": {"model": "m1"},
        "reviews": [{"model": "m2", "score": 9.5, "feedback": "ok"}],
        "mean": mean,
        "std": 0.1,
        "adjudication": None,
        "decision": "accepted",
        "stage": "accepted",
        "reason": "mean >= tau",
        **extra,
    }


def write_records(path: Path, records: list[dict[str, Any]], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def expected(item: dict[str, Any], style: str) -> dict[str, Any]:
    metadata = {k: item[k] for k in ("id", "domain", "keywords", "summary", "mean")}
    if style == "chat":
        messages = [
            {"role": "user", "content": item["instruction"]},
            {"role": "assistant", "content": item["response"]},
        ]
        return {"messages": messages, **metadata}
    return {"instruction": item["instruction"], "input": "", "output": item["response"], **metadata}


def read_back(out: Path, format: str) -> list[dict[str, Any]]:
    if format == "jsonl":
        return [json.loads(line) for line in out.read_text().splitlines()]
    if format == "parquet":
        return pq.read_table(out).to_pylist()
    return list(datasets.load_from_disk(str(out)))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    write_records(
        run / "accepted.jsonl",
        [record("r1-000001", 9.25), record("r1-000002", 8.5, keywords=[], summary="")],
    )
    return run


@pytest.mark.parametrize("style", ["chat", "alpaca"])
@pytest.mark.parametrize("format", ["jsonl", "parquet", "hf"])
def test_every_format_and_style_reads_back(
    run_dir: Path, tmp_path: Path, format: str, style: str
) -> None:
    out = tmp_path / f"out.{format}"
    result = export(run_dir, out, format, style)  # type: ignore[arg-type]
    records = [json.loads(line) for line in (run_dir / "accepted.jsonl").read_text().splitlines()]
    assert read_back(out, format) == [expected(r, style) for r in records]
    assert result.count == 2 and result.sources == [run_dir / "accepted.jsonl"]


def test_parquet_columns_are_typed(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, tmp_path / "chat.parquet", "parquet", "chat")
    schema = pq.read_schema(tmp_path / "chat.parquet")
    assert schema.field("mean").type == pa.float64()
    assert schema.field("keywords").type.value_type == pa.string()
    message = schema.field("messages").type.value_type
    assert [(f.name, f.type) for f in message] == [("role", pa.string()), ("content", pa.string())]


def test_hf_dataset_has_chat_features(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, tmp_path / "hf", "hf", "chat")
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert loaded.num_rows == 2
    assert loaded.features["messages"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )


def test_an_empty_run_exports_an_empty_typed_table(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "accepted.jsonl").write_text("")
    result = export(tmp_path / "run", tmp_path / "empty.parquet", "parquet", "alpaca")
    table = pq.read_table(tmp_path / "empty.parquet")
    assert result.count == 0 and table.num_rows == 0
    assert table.column_names == [
        "instruction",
        "input",
        "output",
        "id",
        "domain",
        "keywords",
        "summary",
        "mean",
    ]


def test_round_directories_are_read_in_round_order(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_records(run / "accepted.jsonl", [record("a")])
    write_records(run / "round-10" / "accepted.jsonl", [record("d")])
    write_records(run / "round-2" / "accepted.jsonl", [record("c"), record("a")])
    write_records(run / "round-1" / "accepted.jsonl", [record("b")])
    (run / "round-3").mkdir()  # a round that has not accepted anything yet
    assert accepted_files(run) == [
        run / "accepted.jsonl",
        run / "round-1" / "accepted.jsonl",
        run / "round-2" / "accepted.jsonl",
        run / "round-10" / "accepted.jsonl",
    ]
    result = export(run, tmp_path / "out.jsonl")
    assert [row["id"] for row in read_back(tmp_path / "out.jsonl", "jsonl")] == list("abcd")
    assert result.duplicates == 1


def test_rounds_without_a_top_level_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_records(run / "round-1" / "accepted.jsonl", [record("x")])
    assert export(run, tmp_path / "out.jsonl").count == 1


def test_a_torn_last_line_is_ignored_but_a_broken_middle_line_is_not(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_records(run / "accepted.jsonl", [record("a")], tail='{"id": "b", "instr')
    assert export(run, tmp_path / "out.jsonl").count == 1
    broken = '{"id": "b"\n' + json.dumps(record("c"))
    write_records(run / "accepted.jsonl", [record("a")], tail=broken)
    with pytest.raises(ExportError, match=r"accepted.jsonl:2: corrupt record"):
        export(run, tmp_path / "again.jsonl")


def test_only_accepted_decisions_are_exported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_records(run / "accepted.jsonl", [record("a"), record("b", decision="rejected")])
    assert [r["id"] for r in (read_back(export(run, tmp_path / "o.jsonl").out, "jsonl"))] == ["a"]


def test_an_existing_output_is_kept_unless_overwrite(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export(run_dir, out, "hf")
    assert (out / "precious.txt").read_text() == "mine"
    export(run_dir, out, "hf", overwrite=True)
    assert datasets.load_from_disk(str(out)).num_rows == 2


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        ("none", {}, "not a run directory"),
        ("empty-dir", {}, "no accepted.jsonl"),
        ("ok", {"format": "csv"}, "format 'csv'"),
        ("ok", {"style": "sharegpt"}, "style 'sharegpt'"),
        ("not-a-record", {}, "accepted.jsonl: record 1 is not an item record"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    tmp_path: Path, setup: str, kwargs: dict[str, str], message: str
) -> None:
    run = tmp_path / "run"
    if setup != "none":
        run.mkdir()
    if setup == "ok":
        write_records(run / "accepted.jsonl", [record("a")])
    if setup == "not-a-record":
        (run / "accepted.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(ExportError, match=message):
        export(run, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
