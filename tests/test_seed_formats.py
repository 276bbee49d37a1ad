"""Seed files in JSONL, CSV and Parquet; bad rows named by place; HumanEval as seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gra.cli import main
from gra.config import SeedSettings
from gra.data.humaneval import read_problems, solution_code, write_humaneval_seeds
from gra.data.seeds import SeedError, SeedItem, load_seeds, read_seeds
from tests.conftest import SEEDS, scripted_config

ROWS: list[dict[str, Any]] = [
    {
        "id": "s1",
        "domain": "coding",
        "instruction": "Reverse a list in Python.",
        "response": 'def rev(xs):\n    """Return xs reversed, "quoted", with, commas."""\n'
        "    return xs[::-1]",
        "keywords": ["list", "reverse", "slice"],
        "summary": "Slicing with a negative step reverses a list.",
    },
    {
        "id": "s2",
        "domain": "math",
        "instruction": "What is 7 * 8?",
        "response": "56",
        "keywords": None,
        "summary": None,
    },
]
ITEMS = [
    SeedItem(
        "s1",
        ROWS[0]["instruction"],
        ROWS[0]["response"],
        "coding",
        ("list", "reverse", "slice"),
        "Slicing with a negative step reverses a list.",
    ),
    SeedItem("s2", "What is 7 * 8?", "56", "math"),
]


def settings(**columns: str) -> SeedSettings:
    return SeedSettings(path="unused", **columns)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Keywords as the "a, b, c" string a spreadsheet would hold."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            cells = {k: "" if v is None else v for k, v in row.items()}
            writer.writerow(
                {k: ", ".join(v) if isinstance(v, list) else v for k, v in cells.items()}
            )
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {".jsonl": write_jsonl, ".csv": write_csv, ".parquet": write_parquet}


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_the_same_seeds_read_the_same_in_every_format(tmp_path: Path, suffix: str) -> None:
    path = WRITERS[suffix](tmp_path / f"seeds{suffix}", ROWS)
    assert load_seeds(path, settings()) == ITEMS


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_column_names_come_from_the_settings(tmp_path: Path, suffix: str) -> None:
    renamed = {
        "id": "key",
        "domain": "area",
        "instruction": "prompt",
        "response": "answer",
        "keywords": "kw",
        "summary": "about",
    }
    rows = [{renamed[k]: v for k, v in row.items()} for row in ROWS]
    path = WRITERS[suffix](tmp_path / f"seeds{suffix}", rows)
    # keywords/summary names may not be SeedSettings fields yet: any object with them works.
    base = msgspec.structs.asdict(
        settings(id="key", domain="area", instruction="prompt", response="answer")
    )
    custom = SimpleNamespace(**{**base, "keywords": "kw", "summary": "about"})
    assert load_seeds(path, custom) == ITEMS  # type: ignore[arg-type]


def test_optional_columns_may_be_absent(tmp_path: Path) -> None:
    path = tmp_path / "seeds.csv"
    path.write_text("instruction,response\nSay hi.,Hi!\n\nSay bye.,Bye!\n")
    assert load_seeds(path, settings(default_domain="chat")) == [
        SeedItem("seeds-2", "Say hi.", "Hi!", "chat"),
        SeedItem("seeds-4", "Say bye.", "Bye!", "chat"),
    ]


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffinstruction,response\nq,a\n".encode())
    assert [item.instruction for item in load_seeds(path, settings())] == ["q"]


def test_any_other_extension_is_still_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "seeds.txt", ROWS)
    assert load_seeds(path, settings()) == ITEMS


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        ("alpha, beta ,gamma", ("alpha", "beta", "gamma")),
        ('["alpha", "beta", "gamma"]', ("alpha", "beta", "gamma")),
        (["alpha", "beta", "gamma"], ("alpha", "beta", "gamma")),
        ("", ()),
        ([], ()),
    ],
)
def test_keyword_spellings(tmp_path: Path, keywords: object, expected: tuple[str, ...]) -> None:
    path = write_jsonl(
        tmp_path / "s.jsonl", [{"instruction": "i", "response": "r", "keywords": keywords}]
    )
    assert load_seeds(path, settings())[0].keywords == expected


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ("alpha, beta", "must hold 3 non-empty keywords"),
        (["a", "b", "c", "d"], "must hold 3 non-empty keywords"),
        ("a, , c", "must hold 3 non-empty keywords"),
        ("[not json", "not a JSON list"),
        ([1, 2, 3], "list of strings"),
        (7, "list of strings"),
    ],
)
def test_bad_keywords_are_named(tmp_path: Path, keywords: object, message: str) -> None:
    rows = [
        {"instruction": "i", "response": "r"},
        {"instruction": "j", "response": "s", "keywords": keywords},
    ]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(SeedError, match=f"s.jsonl:2: field 'keywords'.*{message}"):
        load_seeds(path, settings())


def test_csv_errors_name_the_line_a_record_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "seeds.csv"
    # The first record spans lines 2-4; line 5 is blank; the bad record is on line 6.
    path.write_text('instruction,response\n"multi\nline\ninstruction",ok\n\nonly one field\n')
    with pytest.raises(SeedError) as error:
        load_seeds(path, settings())
    assert str(error.value) == f"{path}:6: expected 2 fields, got 1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('instruction,response\nq,"a"b\n', ":2: malformed CSV: ',' expected after '\"'"),
        ("instruction,response\n,a\n", ":2: field 'instruction' must be a non-empty string"),
        ("id,instruction,response\nx,q,a\nx,q2,a2\n", ":3: duplicate id 'x'"),
        ("instruction,response,summary\nq,a,s\nq,a,s,extra\n", ":3: expected 3 fields, got 4"),
    ],
)
def test_bad_csv_rows(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "seeds.csv"
    path.write_text(body)
    with pytest.raises(SeedError) as error:
        load_seeds(path, settings())
    assert str(error.value) == f"{path}{message}"


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    rows = [{"instruction": "q", "response": "a", "domain": "qa"} for _ in range(3)]
    rows[2] = {"instruction": "q", "response": "", "domain": "qa"}
    path = write_parquet(tmp_path / "seeds.parquet", rows)
    with pytest.raises(SeedError) as error:
        load_seeds(path, settings())
    assert str(error.value) == f"{path}: row 3: field 'response' must be a non-empty string"


def test_parquet_ids_may_be_integers(tmp_path: Path) -> None:
    rows = [{"id": 7, "instruction": "q", "response": "a"}]
    assert load_seeds(write_parquet(tmp_path / "s.parquet", rows), settings())[0].id == "7"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_missing_column_stops_even_when_skipping(tmp_path: Path, suffix: str) -> None:
    path = WRITERS[suffix](tmp_path / f"seeds{suffix}", [{"prompt": "q", "response": "a"}])
    with pytest.raises(SeedError, match=r"no column 'instruction' \(columns: prompt, response\)"):
        read_seeds(path, settings(), skip_bad_rows=True)


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "seeds.parquet"
    path.write_text('{"instruction": "q", "response": "a"}\n')
    with pytest.raises(SeedError, match="not a readable Parquet file"):
        load_seeds(path, settings())


def test_skipping_bad_rows_keeps_the_good_ones_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "seeds.csv"
    path.write_text(
        "id,instruction,response,keywords\n"
        "a,q1,r1,\n"
        "b,,r2,\n"  # line 3: empty instruction
        "c,q3,r3,x y\n"  # line 4: one keyword
        "a,q4,r4,\n"  # line 5: duplicate id
        'd,q5,"r5\nspans two lines",\n'
    )
    seeds = read_seeds(path, settings(), skip_bad_rows=True)
    assert [item.id for item in seeds.items] == ["a", "d"]
    assert seeds.items[1].response == "r5\nspans two lines"
    assert [reason.split(": ")[0] for reason in seeds.skipped] == [
        f"{path}:3",
        f"{path}:4",
        f"{path}:5",
    ]
    assert "duplicate id 'a'" in seeds.skipped[2]
    with pytest.raises(SeedError, match=":3: field 'instruction'"):
        read_seeds(path, settings())


def test_when_every_row_is_bad_there_are_no_seeds(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"instruction": "q"}, {"response": "a"}])
    with pytest.raises(SeedError, match=r"no seed items \(2 bad rows skipped\)"):
        read_seeds(path, settings(), skip_bad_rows=True)


def test_a_bad_csv_seed_file_stops_gra_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("instruction,response\nq,a\nq2\n")
    config = scripted_config(tmp_path, ["a", "b"])
    config.write_text(config.read_text().replace(str(SEEDS), str(seeds)))
    code = main(["run", str(config), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"{seeds}:3: expected 2 fields, got 1" in err, err
    assert not (tmp_path / "out" / "journal.jsonl").exists()


# --- HumanEval -----------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("humaneval") / "humaneval.jsonl"
    assert write_humaneval_seeds(path) == 164
    return path


def test_humaneval_is_164_coding_seeds(humaneval_file: Path) -> None:
    items = load_seeds(humaneval_file, settings())
    assert len(items) == 164
    assert [item.id for item in items] == [f"HumanEval/{n}" for n in range(164)]
    assert {item.domain for item in items} == {"coding"}
    first = items[0]
    assert first.instruction.startswith(
        "Write the Python function "
        "`has_close_elements(numbers: List[float], threshold: float) -> bool`. "
        "Check if in given list of numbers, are any two numbers closer"
    )
    assert "for idx, elem in enumerate(numbers)" not in first.instruction
    assert "for idx, elem in enumerate(numbers)" in first.response


def test_every_humaneval_response_passes_its_tests(humaneval_file: Path) -> None:
    """The responses are runnable code: each passes HumanEval's own unit tests."""
    rows = [json.loads(line) for line in humaneval_file.read_text().splitlines()]
    for row in rows:
        code = row["response"].removeprefix("```python\n").removesuffix("```")
        namespace: dict[str, Any] = {}
        exec(code + "\n" + row["test"], namespace)
        namespace["check"](namespace[row["entry_point"]])


def test_a_broken_solution_would_fail_its_tests() -> None:
    problem = read_problems()[0]
    namespace: dict[str, Any] = {}
    exec(problem.prompt + "    return False\n" + problem.test, namespace)
    with pytest.raises(AssertionError):
        namespace["check"](namespace[problem.entry_point])
    assert solution_code(problem).endswith("return False\n")
