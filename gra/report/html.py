"""The run report: one self-contained HTML page, DIR/report.html.

One file a person can open from disk, mail, or keep beside the data: styles,
plots (inline SVG, see gra/report/plots.py) and the few lines of script that
filter the example table are all inline, and a Content-Security-Policy lets
the page load nothing from anywhere and run no script but that one (pinned by
its hash). Every string that comes from a record or a config is model output
or user data, so it is escaped where it is written (``_e``); the policy is the
second line of defence, not the first.

The page stays small whatever the run's size (measured on 10,000 records in
tests/test_report.py): plots draw aggregates, the example table holds at most
``EXAMPLES_PER_CATEGORY`` items of each kind, texts are cut to a few hundred
characters. The map of embedded items draws a capped sample (gra/report/diversity.py)
and is left out of the pages rewritten while a run runs: loading MiniLM and
embedding the sample takes CPU seconds the fleet needs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gra.errors import OutputError
from gra.report import plots
from gra.report.agreement import CHECK_NAMES
from gra.report.collect import (
    GATES,
    STAGES,
    Example,
    ExampleReview,
    RunReport,
    collect,
    top_domains,
)
from gra.report.diversity import KINDS, SAMPLE_PER_KIND, TEXT_CHARS
from gra.report.embedding import map_wanted
from gra.rundir import REPORT

_SCRIPT = """
const box = document.getElementById("filter");
const rows = Array.from(document.querySelectorAll("#examples tbody tr"));
const shown = document.getElementById("shown");
function apply() {
  const text = box.value.trim().toLowerCase();
  let n = 0;
  for (const row of rows) {
    const match = !text || row.textContent.toLowerCase().includes(text);
    row.hidden = !match;
    n += match;
  }
  shown.textContent = n;
}
box.addEventListener("input", apply);
// report.html#filter=WORDS opens the table filtered (a link to share, and the browser test).
const start = new URLSearchParams(location.hash.slice(1)).get("filter");
if (start) {
  box.value = start;
  apply();
}
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;
max-width:1100px;padding:0 20px 60px;color:#222}
h1{font-size:22px;margin:24px 0 4px}h2{font-size:18px;margin:36px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 16px}.note{color:#8a5a00}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
#examples td{max-width:380px;white-space:pre-wrap;word-break:break-word}
.tag{display:inline-block;padding:0 6px;border-radius:4px;background:#eee;font-size:12px}
.accepted{background:#dff0d8}.rejected{background:#f2dede}.adjudicated{background:#fcf0d8}
.deduplicated{background:#f5f0c8}.verified{background:#e6e0f4}.failed{background:#ddd}
input#filter{font-size:14px;padding:4px 8px;width:320px}
ul.first li{margin:2px 0}
"""


def _e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute: records are untrusted."""
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(name: str, svg: str | None, caption: str) -> str:
    if svg is None:
        return f'<p class="note">Nothing to plot for {_e(name)} yet.</p>'
    return (
        f'<figure class="plot" data-plot="{_e(name)}">{svg}'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _overview(report: RunReport) -> str:
    total = report.total_funnel()
    fleet = report.fleet.totals()
    accepted = report.accepted
    adjudication = report.agreement.get("adjudication") or {}
    score_alpha = (report.agreement.get("per_criterion") or {}).get("score")
    lenient = [r for r in report.reviewers if r.leniency is not None]
    outlier = max(lenient, key=lambda r: abs(r.leniency or 0.0), default=None)
    cards = [
        _card(
            f"{accepted}",
            f"accepted of {total.generated} generated ({_pct(accepted, total.generated)})",
        ),
        _card(_num(score_alpha), "reviewer agreement on the score (alpha)"),
        _card(
            f"{adjudication.get('overturned', 0)}/{adjudication.get('adjudicated', 0)}",
            "adjudications that overturned the committee",
        ),
        _card(
            "n/a" if outlier is None else f"{outlier.leniency:+.2f}",
            "largest leniency" + ("" if outlier is None else f" ({outlier.model})"),
        ),
        _card(
            _num(fleet["seconds"] / accepted, 1, " s") if accepted else "n/a",
            "model seconds per accepted item",
        ),
        _card(
            f"{fleet['tokens'] / accepted:,.0f}" if accepted else "n/a",
            "tokens per accepted item",
        ),
        _card(f"{report.fleet.wall_seconds / 60:.1f} min", "wall time"),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _look_first() -> str:
    return (
        '<ul class="first">'
        "<li><b>The funnel</b>: where items die. Most dying at the score gate with low "
        "agreement means the committee is guessing, not that the data is bad.</li>"
        "<li><b>Agreement</b>: alpha near 0 (or below) on the score means the reviewers "
        "carry little shared signal; above 0.667 they broadly agree.</li>"
        "<li><b>Leniency</b>: one model far from the others drags the committee mean.</li>"
        "<li><b>Examples</b>: read a few accepted items before trusting any number.</li>"
        "</ul>"
    )


def _funnel_section(report: RunReport) -> str:
    total = report.total_funnel()
    svg = plots.funnel(total, report.funnels)
    header = ["round", *GATES, "accepted", "adjudicated", "failed"]
    rows = []
    for funnel in [*report.funnels, total] if len(report.funnels) > 1 else report.funnels:
        rows.append(
            [
                funnel.round,
                *[n for _, n in funnel.survivors()],
                funnel.adjudicated,
                funnel.ended["failed"],
            ]
        )
    verdicts = ", ".join(f"{_e(k)} {n}" for k, n in sorted(report.verification.items()))
    return (
        "<h2 id='funnel'>Funnel: where items end</h2>"
        + _figure(
            "funnel",
            svg,
            "Each gate in order: instruction checks, scores (mean &ge; tau and spread &le; delta), "
            "adjudication of split committees, verification by execution, deduplication.",
        )
        + _table(header, rows)
        + (f"<p>Verification verdicts: {verdicts}.</p>" if verdicts else "")
    )


def _scores_section(report: RunReport) -> str:
    rows = [
        [
            r.model,
            r.reviews,
            _num(r.mean("score")),
            "n/a" if r.leniency is None else f"{r.leniency:+.2f}",
            _num(None if r.accept_rate is None else 100 * r.accept_rate, 0, "%"),
            *[
                _num(None if r.pass_rate(c) is None else 100 * (r.pass_rate(c) or 0), 0, "%")
                for c in CHECK_NAMES
            ],
        ]
        for r in report.reviewers
    ]
    header = [
        "reviewer",
        "reviews",
        "mean score",
        "leniency",
        "would accept",
        *[f"{c} check passed" for c in CHECK_NAMES],
    ]
    return (
        "<h2 id='scores'>Scores: what each reviewer gives</h2>"
        + _figure(
            "scores",
            plots.score_distributions(report.reviewers),
            "Share of each model's reviews giving each score, per criterion.",
        )
        + _figure(
            "leniency",
            plots.leniency(report.reviewers),
            "Leniency: a model's mean score minus the committee's mean on the same items "
            "(gra/report/agreement.py).",
        )
        + _table(header, rows)
    )


def _agreement_section(report: RunReport) -> str:
    agreement = report.agreement
    per_pair = agreement.get("per_pair") or {}
    adjudication = agreement.get("adjudication") or {}
    lockstep = agreement.get("check_lockstep")
    pair_rows = [
        [
            pair.replace("|", " & "),
            figures.get("items", 0),
            _num(figures.get("alpha")),
            _num(
                None if figures.get("vote_agreement") is None else 100 * figures["vote_agreement"],
                0,
                "%",
            ),
            _num(figures.get("mean_abs_diff")),
        ]
        for pair, figures in sorted(per_pair.items())
        if isinstance(figures, dict)
    ]
    adjudicated = adjudication.get("adjudicated", 0)
    return (
        "<h2 id='agreement'>Agreement: do the reviewers see the same thing?</h2>"
        + _figure(
            "agreement",
            plots.agreement(agreement.get("per_criterion") or {}, per_pair),
            f"Krippendorff's alpha over {agreement.get('items', 0)} items with two or more "
            "reviews (the krippendorff package): interval for scores, nominal for checks "
            "and votes.",
        )
        + _table(
            ["pair", "items", "alpha (score)", "same vote", "mean |score difference|"], pair_rows
        )
        + f"<p>Adjudication overturned the committee's majority on "
        f"<b>{adjudication.get('overturned', 0)}</b> of {adjudicated} adjudicated items "
        f"({_pct(adjudication.get('overturned', 0), adjudicated)}; {adjudication.get('ties', 0)} "
        "were tied committees, counted as accept-majorities). "
        + (
            f"Reviews whose three checks were all the same: {_num(100 * lockstep, 0, '%')} "
            "(near 100% suggests checks ticked without reading).</p>"
            if isinstance(lockstep, int | float)
            else "</p>"
        )
    )


def _domains_section(report: RunReport) -> str:
    mix = report.domains
    names = top_domains([mix.accepted, mix.seeds, mix.rejected, mix.weights or {}])
    weight_total = sum((mix.weights or {}).values())

    def share(counts: dict[str, float] | Any, name: str) -> str:
        total = sum(counts.values())
        value = (
            sum(v for k, v in counts.items() if k not in names)
            if name == "other"
            else counts.get(name, 0)
        )
        return _pct(value, total)

    rows = [
        [
            name,
            mix.accepted.get(name, 0) if name != "other" else "",
            share(mix.accepted, name),
            mix.rejected.get(name, 0) if name != "other" else "",
            share(mix.seeds, name) if mix.seeds else "n/a",
            share(mix.weights, name) if mix.weights and weight_total else "seed mix",
        ]
        for name in names
    ]
    return (
        "<h2 id='made'>What was made</h2>"
        + _figure(
            "domains",
            plots.domains(mix),
            "Domain shares of accepted items against the seeds and the configured "
            "<code>[run] domains</code> weights (absent: the seeds' proportions).",
        )
        + _table(["domain", "accepted", "share", "rejected", "seeds", "configured"], rows)
        + _diversity(report)
    )


def _diversity(report: RunReport) -> str:
    embedded = report.item_map
    if embedded is None:
        why = report.map_note or "no items to embed"
        return f"<h3>Diversity</h3><p class='note'>No embedding map: {_e(why)}.</p>"
    rows = [
        [
            kind,
            f"{embedded.sampled[kind]} of {embedded.offered[kind]}",
            _num(embedded.spread[kind], 3),
        ]
        for kind in KINDS
        if embedded.offered[kind]
    ]
    spread = embedded.spread
    accepted, seeds = spread["accepted"], spread["seed"]
    versus = (
        f"Accepted items spread <b>{_num(accepted, 3)}</b> apart against the seeds' "
        f"<b>{_num(seeds, 3)}</b> ({accepted / seeds:.2f} times)"
        if accepted is not None and seeds
        else f"Accepted items spread <b>{_num(accepted, 3)}</b> apart"
    )
    return (
        "<h3>Diversity</h3>"
        f"<p>{versus} (mean pairwise cosine distance of their MiniLM embeddings: 0 the same "
        "text, about 1 unrelated); an accepted item lies "
        f"<b>{_num(embedded.accepted_to_seeds, 3)}</b> from a seed on average. Below the "
        "seeds' spread, the fleet is paraphrasing its seeds.</p>"
        + _figure(
            "map",
            plots.item_map(embedded),
            f"A reproducible sample (the items whose ids hash lowest, at most {SAMPLE_PER_KIND} "
            f"of each kind, the first {TEXT_CHARS} characters of instruction and response) "
            "embedded with all-MiniLM-L6-v2 and projected on its first two principal "
            f"components (model loaded in {embedded.load_seconds:.1f} s, sample embedded in "
            f"{embedded.seconds:.1f} s).",
        )
        + _table(["kind", "embedded", "mean pairwise cosine distance"], rows)
    )


def _fleet_section(report: RunReport) -> str:
    fleet = report.fleet
    totals = fleet.totals()
    accepted = report.accepted
    usage_rows = [
        [
            r.model,
            r.role,
            r.calls,
            f"{r.prompt_tokens:,}",
            f"{r.completion_tokens:,}",
            f"{r.seconds:.1f}",
            _num(r.tokens_per_s, 1),
        ]
        for r in fleet.usage
    ]
    agent_rows = [
        [a.agent, a.model, a.roles, "yes" if a.alive else "no", a.completed, a.failed, a.restarts]
        for a in fleet.agents
    ]
    health_rows = [
        [model, h.failed, h.succeeded, h.trips, h.last_failure]
        for model, h in sorted(fleet.model_health.items())
    ]
    cost = (
        f"{totals['seconds'] / accepted:.1f} model seconds and {totals['tokens'] / accepted:,.0f} "
        f"tokens per accepted item ({totals['calls']:,} calls in all)"
        if accepted
        else "no accepted item yet"
    )
    return (
        "<h2 id='fleet'>The fleet</h2>"
        + f"<p>Cost: <b>{_e(cost)}</b>. Retries {fleet.retries}, agents lost {fleet.agents_lost}, "
        f"restarts {fleet.restarts}, late results ignored {fleet.late_results}, wall time "
        f"{fleet.wall_seconds:.0f} s.</p>"
        + _figure(
            "fleet",
            plots.fleet(fleet),
            "Speed as the agents report it (completion tokens over model seconds); busy fraction "
            "is model seconds over wall time times the model's task slots.",
        )
        + _timeline(report)
        + _table(
            ["model", "role", "calls", "prompt tokens", "completion tokens", "model s", "tokens/s"],
            usage_rows,
            2,
        )
        + _table(
            ["agent", "model", "roles", "alive", "tasks done", "failed", "restarts"], agent_rows, 4
        )
        + (
            "<p>Models that failed tasks (circuit breaker):</p>"
            + _table(["model", "failed", "succeeded", "trips", "last failure"], health_rows)
            if health_rows
            else ""
        )
    )


def _timeline(report: RunReport) -> str:
    if report.timeline is None:
        return (
            "<p class='note'>No timings over time: the run's logs/ hold no "
            "<code>instance_finished</code>, <code>task_done</code> or <code>llama_call</code> "
            "lines.</p>"
        )
    if not report.timeline.busy:
        detail = " No per-model series: the agents' logs hold no task timings."
    elif not report.timeline.role_busy:
        detail = (
            " These agents' logs predate <code>task_done</code>: their llama.cpp calls "
            "give the per-model series, and no role is named."
        )
    else:
        detail = ""
    return _figure(
        "timeline",
        plots.timeline(report.timeline),
        "From logs/: items finished (the supervisor's <code>instance_finished</code> lines), "
        "and per model and per role the tasks that ended, how busy the task slots were and "
        "how fast tokens came (each agent's <code>task_done</code> lines: the task's role, "
        "start and seconds). A model's busy fraction is of its own slots; a role's share is "
        f"of all the fleet's slots, so the roles' shares add up to the fleet's.{detail}",
    )


def _review_html(review: ExampleReview, label: str = "") -> str:
    checks = f" {review.checks}" if review.checks else ""
    return (
        f"<div>{_e(label)}<b>{_e(review.model)}</b> {_num(review.score, 1)}{_e(checks)}: "
        f"{_e(review.feedback)}</div>"
    )


def _example_row(example: Example) -> str:
    reviews = "".join(_review_html(r) for r in example.reviews)
    if example.adjudication is not None:
        reviews += _review_html(example.adjudication, "adjudicator ")
    outcome = f"{example.decision} at {example.stage}: {example.reason}"
    if example.duplicate_of:
        outcome += f" (duplicate of {example.duplicate_of})"
    if example.verification:
        outcome += f"\nverification: {example.verification}"
    return (
        f'<tr><td><span class="tag {_e(example.category)}">{_e(example.category)}</span><br>'
        f"{_e(example.id)}<br>round {_e(example.round)}<br>{_e(example.domain)}<br>"
        f"by {_e(example.generator)}</td>"
        f"<td>{_e(example.instruction)}</td><td>{_e(example.response)}</td>"
        f"<td>{_e(outcome)}{reviews}</td></tr>"
    )


def _examples_section(report: RunReport) -> str:
    rows = "".join(_example_row(e) for e in report.examples)
    return (
        "<h2 id='examples'>Examples</h2>"
        f'<p><input id="filter" type="search" placeholder="filter: any word, model, stage" '
        f'aria-label="filter examples"> <span id="shown">{len(report.examples)}</span> of '
        f"{len(report.examples)} shown (the first few of each kind; texts cut).</p>"
        '<table id="examples"><thead><tr><th>item</th><th>instruction</th><th>response</th>'
        f"<th>outcome and reviews</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render(report: RunReport) -> str:
    """The whole page for ``report``."""
    state = "still running" if report.running else "finished"
    notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
    stages = ", ".join(STAGES)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gra run report: {_e(report.out_dir)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>gra run report</h1><p class='sub'>{_e(report.out_dir)} &middot; "
        f"{_e(report.mode)} run, {state} &middot; {report.records} records &middot; written "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>"
        + _overview(report)
        + "<p><b>Look first at:</b></p>"
        + _look_first()
        + (f"<p class='note'>Left out:</p><ul class='note'>{notes}</ul>" if notes else "")
        + _funnel_section(report)
        + _scores_section(report)
        + _agreement_section(report)
        + _domains_section(report)
        + _fleet_section(report)
        + _examples_section(report)
        + f"<p class='sub'>Stages: {_e(stages)}. Made by <code>gra report</code>; plots by "
        "matplotlib as inline SVG; nothing on this page loads from anywhere.</p>"
        f"<script>{_SCRIPT}</script></body></html>"
    )


def write_report(
    out_dir: Path,
    *,
    config: Any | None = None,
    seeds: Sequence[Any] | None = None,
    skip_map: str | None = None,
) -> Path:
    """Write ``out_dir/report.html`` whole (readers never see half a page); its path.

    ``skip_map`` leaves the embedding map out and says why on the page; the live
    refresh leaves it out through the environment (gra/report/embedding.py).
    """
    out_dir = Path(out_dir)
    if skip_map is None and not map_wanted():
        skip_map = (
            "left out of the pages rewritten while the run runs (embedding takes CPU the "
            "fleet needs); the page written when it ends, or `gra report DIR`, has it"
        )
    page = render(collect(out_dir, config=config, seeds=seeds, skip_map=skip_map))
    path = out_dir / REPORT
    # Per process: a refresh while the run ends, or a user's `gra report`, never collide.
    partial = path.with_suffix(f".html.{os.getpid()}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise OutputError(f"{path}: write failed: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return path
