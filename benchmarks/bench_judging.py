"""Judging accuracy on the project's labelled sets: each model alone, the
committee per the paper's rules, and the committee with the verifier.

Runs `gra calibrate` (real models on llama.cpp, real agent processes, the real
sandbox) over one split of `benchmarks/labelled/{coding,math}.jsonl`. The
pairs go in WITHOUT their domain (as `gra review` users' pairs often come),
so the verifier must recognise what it can check; labels are read only after
the runs, to score the verdicts.

    python benchmarks/bench_judging.py --set coding            # report split, the shipped fleet
    python benchmarks/bench_judging.py --set math --limit 20   # the first 20 tasks (40 pairs)
    python benchmarks/bench_judging.py --set coding --split calibration

Writes benchmarks/results/judging-<set>-<UTC time>.json and prints the
README's rows (markdown).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, get_args

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import machine_info, write_result
from gra.calibrate import REVERIFIED, rescore, reverify
from gra.config import load_config
from gra.protocols.roles import ReviewStyle
from gra.report.calibration import metrics_markdown

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "benchmarks" / "labelled"
RESULTS = ROOT / "benchmarks" / "results"


def split_pairs(name: str, split: str, limit: int | None) -> list[dict[str, Any]]:
    """The split's pairs, a task's good and bad pair together, first ``limit`` tasks."""
    rows = [json.loads(line) for line in (LABELLED / f"{name}.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == split]
    tasks = list(dict.fromkeys(r["task"] for r in rows))[:limit]
    keep = set(tasks)
    return [r for r in rows if r["task"] in keep]


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["coding", "math"], required=True)
    parser.add_argument("--split", choices=["report", "calibration"], default="report")
    parser.add_argument("--limit", type=int, help="tasks to take (each has a good and a bad pair)")
    parser.add_argument("--config", default=str(ROOT / "examples" / "quickstart.toml"))
    parser.add_argument("--out", help="calibration directory (default: a temporary one)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the runs already finished in --out; run only what is missing",
    )
    parser.add_argument(
        "--no-committee",
        action="store_true",
        help="only the verifier's run (its rows; about half the model time)",
    )
    parser.add_argument(
        "--no-verifier",
        action="store_true",
        help="only the committee's run (the per-model and committee rows)",
    )
    parser.add_argument(
        "--reviewer-prompt",
        choices=get_args(ReviewStyle),
        help="the reviewers' style (default: the config's [protocol] reviewer_prompt)",
    )
    parser.add_argument(
        "--reverify",
        action="store_true",
        help="judge the recorded tests and programs in --out again with this code (no models)",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score the runs already in --out again (after a change to the scoring only)",
    )
    args = parser.parse_args()
    if (args.rescore or args.reverify) and not args.out:
        parser.error("--rescore and --reverify need --out, the directory of an earlier run")

    pairs = split_pairs(args.set, args.split, args.limit)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gra-judging-"))
    work.mkdir(parents=True, exist_ok=True)
    unlabelled_domain = work / "pairs.jsonl"
    unlabelled_domain.write_text(
        "".join(
            json.dumps(
                {k: v for k, v in row.items() if k in ("id", "instruction", "response", "label")}
            )
            + "\n"
            for row in pairs
        )
    )
    started = time.monotonic()
    calibration_json = work / "calibration" / "calibration.json"
    if args.reverify:
        reverify(load_config(args.config), unlabelled_domain, work / "calibration")
        calibration_json = work / "calibration" / REVERIFIED / "calibration.json"
    elif args.rescore:
        rescore(load_config(args.config), unlabelled_domain, work / "calibration")
    else:
        run_calibration(
            args.config,
            unlabelled_domain,
            work / "calibration",
            args.reuse,
            args.no_committee,
            args.no_verifier,
            args.reviewer_prompt,
        )
    calibration = json.loads(calibration_json.read_text())
    result = {
        "set": args.set,
        "split": args.split,
        "runs": [
            name
            for name, skipped in (("committee", args.no_committee), ("verified", args.no_verifier))
            if not skipped
        ],
        "reviewer_prompt": args.reviewer_prompt
        or load_config(args.config).protocol.reviewer_prompt,
        "pairs": len(pairs),
        "config": args.config,
        "commit": commit(),
        "rescored": args.rescore,
        "reverified": args.reverify,
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "calibration": calibration,
    }
    path = write_result(RESULTS, f"judging-{args.set}", result)
    print(metrics_markdown(calibration["configurations"]))
    print(f"verification verdicts by label: {calibration.get('verification')}")
    print(f"{path}")
    return 0


def run_calibration(
    config: str,
    pairs: Path,
    out: Path,
    reuse: bool,
    no_committee: bool = False,
    no_verifier: bool = False,
    reviewer_prompt: str | None = None,
) -> None:
    command = [
        sys.executable,
        "-m",
        "gra",
        "calibrate",
        config,
        "--input",
        str(pairs),
        "--out",
        str(out),
        "--no-progress",
        *(["--reuse"] if reuse else []),
        *(["--no-committee"] if no_committee else []),
        *(["--no-verifier"] if no_verifier else []),
        *(["--reviewer-prompt", reviewer_prompt] if reviewer_prompt else []),
    ]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    raise SystemExit(main())
