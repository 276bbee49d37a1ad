"""A dataset card for an export: Hugging Face's README.md conventions plus provenance.

A dataset without its history cannot be trusted or reproduced. The card's YAML
front matter is what the Hub and ``huggingface_hub.DatasetCard`` read (task
categories, size category, the data files as a config; the license is left for
the user, who alone knows it). The body says how the data was made: gra's
version, the config with secrets left out, every model with its file hash, the
protocol's settings, counts per stage and acceptance rate, how much the
reviewers agreed, what the verifier found, the seed sources and the rounds.
Each row's ``id`` is the id of its full record in the run's accepted.jsonl.

Everything is read from the run directory (summary.json, journal.jsonl and
the config the journal names); a missing or unreadable piece is said to be
so, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

import gra
from gra.errors import SummaryError
from gra.rundir import JOURNAL, SUMMARY, Summary, journal_config_path, read_summary

# The marker by which a README.md is known to be gra's and may be replaced.
CARD_MARKER = "<!-- dataset card written by gra export -->"
_SECRET = re.compile(r"(secret|token|password|passwd|api_key$|apikey|credential)", re.I)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


def size_category(count: int) -> str:
    for limit, name in _SIZE_BUCKETS:
        if count < limit:
            return name
    return "10M<n<100M"


def _summary(run_dir: Path) -> tuple[Summary, str]:
    """The run's summary, and what is wrong with it ("" when nothing): a card is still
    written for data already exported, and says the summary could not be read."""
    try:
        summary = read_summary(run_dir)
    except SummaryError as exc:
        return Summary(), str(exc)
    return (summary, "") if summary is not None else (Summary(), f"no {SUMMARY}")


def _config_path(run_dir: Path) -> Path | None:
    """The config of the run's first start, as its journal names it."""
    path = journal_config_path(run_dir / JOURNAL)
    return Path(path) if path else None


def without_secrets(value: Any) -> Any:
    """A config tree with secret-looking keys dropped and passwords cut out of URLs."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not _SECRET.search(str(k))}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    if isinstance(value, str):
        return _URL_USERINFO.sub("", value)
    return value


def _load_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_rows(config: dict[str, Any] | None, config_path: Path | None) -> list[dict[str, str]]:
    """Each model of the fleet: backend and, for a model file, its sha256."""
    from gra.models import CATALOG

    rows = []
    for agent in (config or {}).get("agents", []):
        if not isinstance(agent, dict) or agent.get("backend") == "sandbox":
            continue
        model = str(agent.get("model", ""))
        backend = str(agent.get("backend", "llamacpp"))
        where = str(agent.get("served_model") or "") if backend in ("vllm", "openai") else ""
        digest = ""
        if backend == "llamacpp":
            if model in CATALOG:
                digest = CATALOG[model].sha256
                where = CATALOG[model].filename
            else:
                path = Path(model).expanduser()
                if not path.is_absolute() and config_path is not None:
                    path = config_path.parent / path
                if path.is_file():
                    digest, where = _sha256(path), path.name
        rows.append(
            {
                "model": str(agent.get("name") or model),
                "backend": backend,
                "file or served model": where or "(not recorded)",
                "sha256": digest or ("remote" if agent.get("remote") else "(not available)"),
            }
        )
    return rows


def front_matter(count: int, data_files: str, domains: list[str]) -> dict[str, Any]:
    """The card's metadata, in the keys the Hub reads."""
    return {
        "license": "unknown",  # only the user knows: set it before publishing
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["synthetic", "instruction-tuning", "gra", *sorted(set(domains))[:8]],
        "size_categories": [size_category(count)],
        "pretty_name": "gra synthetic instruction data",
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": data_files}]}
        ],
    }


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [str(row.get(k, "")).replace("|", "\\|").replace("\n", " ") for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, sort_keys=True) + "\n```\n"


def render_card(
    run_dir: Path, rows: list[dict[str, Any]], data_files: str, style: str, fmt: str
) -> str:
    """The README.md text for ``rows`` exported from ``run_dir`` as ``data_files``."""
    import yaml

    summary, problem = _summary(run_dir)
    config_path = _config_path(run_dir)
    config = _load_config(config_path)
    domains = [str(r.get("domain") or "") for r in rows if r.get("domain")]
    meta = front_matter(len(rows), data_files, domains)
    counts = summary.counts
    finished = sum(v for k, v in counts.items() if k not in ("generated", "adjudicated"))
    accepted = summary.count("accepted")
    domain_counts: dict[str, int] = {}
    for domain in domains:
        domain_counts[domain] = domain_counts.get(domain, 0) + 1
    parts = [
        "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n",
        CARD_MARKER + "\n",
        "# gra synthetic instruction data\n",
        f"{len(rows)} instruction/response pairs ({style} style, {fmt}), made by a fleet of "
        "language models with gra: a generator wrote each instruction and response, a "
        "committee of other models reviewed it, an uninvolved model settled disagreements, "
        "and accepted items were deduplicated. **License: not set** - fill in `license` "
        "above before publishing.\n",
        "Each row's `id` is the id of its full record (every review, score and verdict) in "
        f"the run's `accepted.jsonl` (`{run_dir}`).\n",
        "## Domains\n",
        _table([{"domain": d, "rows": n} for d, n in sorted(domain_counts.items())]),
        "## Provenance\n",
        f"- gra version: {gra.__version__}\n"
        f"- config: `{config_path or '(not recorded)'}`\n"
        f"- instances finished: {finished}; accepted: {accepted}"
        + (f" ({accepted / finished:.1%} acceptance)" if finished else "")
        + "\n"
        + f"- synthesis rounds: {len(summary.rounds) or 1}\n"
        + (f"- summary: {problem}\n" if problem else ""),
        "### Models\n",
        _table(model_rows(config, config_path)),
        "### Counts per stage\n",
        _table([{"stage": k, "items": v} for k, v in counts.items()]),
        "### Protocol\n",
        _json_block(summary.protocol or "(not recorded)"),
        "### Reviewer agreement (Krippendorff's alpha, no labels needed)\n",
        _json_block(summary.agreement.per_criterion if summary.agreement else "(not recorded)"),
        "### Verification by execution\n",
        _json_block(summary.verification or "(not run)"),
        "### Seeds\n",
        _json_block(
            (config or {}).get("seeds", "(not recorded)") if config else "(config not found)"
        ),
        "### Rounds\n",
        _json_block(msgspec.to_builtins(summary.rounds) or "(not recorded)"),
        "### Config (secrets left out)\n",
        _json_block(without_secrets(config) if config else "(config not found)"),
    ]
    return "\n".join(parts)


def write_card(path: Path, text: str) -> Path:
    """Write README.md at ``path`` unless a README.md that is not gra's is there:
    then beside it as ``DATASET_CARD.md``. Returns where it went."""
    if path.exists():
        try:
            ours = CARD_MARKER in path.read_text(errors="replace")
        except OSError:
            ours = False
        if not ours:
            path = path.with_name("DATASET_CARD.md")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
