"""Where a run keeps what: every file name a run directory holds, in one place.

The supervisor writes these, and resume, the report, export, the dataset card,
`gra status` and calibration read them; one table keeps writers and readers on
the same names.
"""

from __future__ import annotations

from pathlib import Path

# The outputs (ARCHITECTURE.md, "Contracts"): items, verdicts, the run's numbers.
ACCEPTED = "accepted.jsonl"
REJECTED = "rejected.jsonl"
VERDICTS = "verdicts.jsonl"
SUMMARY = "summary.json"
# The record of progress a resumed run replays.
JOURNAL = "journal.jsonl"
# What the fleet wrote for each seed (domain, keywords, summary), kept for a resume.
SEED_ANNOTATIONS = "seed_annotations.jsonl"
# In round-k/: committee-accepted items waiting for the round's end, then the survivors.
CANDIDATES = "candidates.jsonl"
ROUND_PREFIX = "round-"
# The page a person opens first (gra.report.html).
REPORT = "report.html"
# Held by the live process that writes the run (gra.supervisor.outdir_lock).
LOCK = ".lock"
# The logs: the supervisor's, and each agent's structured log and stderr.
LOGS = "logs"
SUPERVISOR_LOG = "supervisor.jsonl"


def item_files(mode: str) -> tuple[str, str] | tuple[str]:
    """The record files a run in ``mode`` writes: items when generating, else verdicts."""
    return (ACCEPTED, REJECTED) if mode == "generate" else (VERDICTS,)


def round_dir(out_dir: Path, k: int) -> Path:
    return out_dir / f"{ROUND_PREFIX}{k}"


def round_of(path: Path) -> int | None:
    """k of a ``round-k`` folder, or of a file in one; None for anything else."""
    name = path.name if path.name.startswith(ROUND_PREFIX) else path.parent.name
    number = name.removeprefix(ROUND_PREFIX)
    return int(number) if name.startswith(ROUND_PREFIX) and number.isdigit() else None


def round_files(out_dir: Path, name: str) -> list[tuple[int, Path]]:
    """``(k, round-k/name)`` for every round folder holding ``name``, by round number."""
    found = []
    for child in out_dir.glob(f"{ROUND_PREFIX}*/{name}"):
        k = round_of(child)
        if k is not None and child.is_file():
            found.append((k, child))
    return sorted(found)


def log_dir(out_dir: Path) -> Path:
    return out_dir / LOGS


def agent_log(logs: Path, agent_id: str) -> Path:
    """An agent's structured log in the logs folder ``logs``."""
    return logs / f"agent-{agent_id}.jsonl"


def agent_stderr(logs: Path, agent_id: str) -> Path:
    """Where an agent process's stderr goes (its last line is its own error message)."""
    return logs / f"agent-{agent_id}.stderr"


AGENT_LOGS = "agent-*.jsonl"
