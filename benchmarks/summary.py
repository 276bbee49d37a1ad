"""Print the table of benchmark results: every row of each result file, with the
code it measured (commit, clean or not) and the machine's load.

    python benchmarks/summary.py                      # the latest result of each benchmark
    python benchmarks/summary.py results/vllm-*.json  # these files
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_STAMP = re.compile(r"-(\d{8}T\d{6}Z)(?:-\d+)?\.json$")


def latest_per_benchmark(directory: Path) -> list[Path]:
    """The newest result file of each benchmark name (``NAME-<UTC time>.json``)."""
    newest: dict[str, tuple[str, Path]] = {}
    for path in directory.glob("*.json"):
        match = _STAMP.search(path.name)
        if match is None:
            continue
        name = path.name[: match.start()]
        if name not in newest or match.group(1) > newest[name][0]:
            newest[name] = (match.group(1), path)
    return [path for _, path in sorted(newest.values(), key=lambda v: v[1].name)]


def source_line(data: dict[str, Any]) -> str:
    source = data.get("source") or (data.get("machine") or {}).get("source")
    if not source or not source.get("commit"):
        return "commit not recorded"
    state = "clean" if source["clean"] else f"{source.get('dirty_count', '?')} paths differ"
    changed = "; the tree changed during the run" if data.get("source_changed_during_run") else ""
    return f"commit {source['commit'][:10]} ({state}){changed}"


def load_line(data: dict[str, Any]) -> str:
    machine = data.get("machine") or {}
    before, after = machine.get("load_average"), machine.get("load_average_after")
    text = f"load {before[0]:.1f}" if before else "load ?"
    if after:
        text += f" -> {after[0]:.1f}"
    return text


def rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    out = []
    for check in data.get("checks") or []:
        ratio = check.get("ratio")
        out.append(
            (
                check["metric"],
                str(check["value"]),
                str(check["baseline"]),
                "-" if ratio is None else f"{ratio:.3f}",
                check["target"],
                check.get("verdict", "-"),
            )
        )
    return out


def render(paths: list[Path]) -> str:
    header = ("metric", "measured", "baseline", "ratio", "target", "result")
    blocks = []
    for path in paths:
        data = json.loads(path.read_text())
        table = [header, *rows(data)]
        widths = [min(70, max(len(r[i]) for r in table)) for i in range(len(header))]
        lines = [
            f"== {path.name}: {source_line(data)}; {load_line(data)}",
        ]
        for n, row in enumerate(table):
            lines.append("  ".join(c[: widths[i]].ljust(widths[i]) for i, c in enumerate(row)))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        if len(table) == 1:
            lines.append("(no checks in this file)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    paths = args.files or latest_per_benchmark(args.results_dir)
    if not paths:
        print(f"no result files in {args.results_dir}", file=sys.stderr)
        return 1
    print(render(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
