"""The run report (gra/report): what it reads, what it shows, and that it stays small."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
import structlog

from gra.report import refreshing_report, write_report_quietly
from gra.report.collect import collect
from gra.report.diversity import sample_key
from gra.report.html import REPORT, write_report
from tests.report_runs import BUSY, HOSTILE, HOSTILE_MODEL, synthetic_records, synthetic_run

# A page is mailed, attached to an issue and opened on a laptop: 2 MB loads at once
# anywhere, and leaves room for ten times the plots and examples the page holds.
MAX_PAGE_BYTES = 2_000_000
PLOTS = ("funnel", "scores", "leniency", "agreement", "domains", "fleet")


def _gra(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gra", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_report_of_a_scripted_run_is_written_when_the_run_ends(tmp_path: Path) -> None:
    from tests.report_runs import scripted_run

    out = scripted_run(tmp_path, target=6, rounds=2)
    page = (out / REPORT).read_text()
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in page, plot
    summary = json.loads((out / "summary.json").read_text())
    report = collect(out)
    # The funnel agrees with summary.json.
    total = report.total_funnel()
    assert total.ended["accepted"] == summary["counts"]["accepted"]
    assert total.ended["score"] == summary["counts"]["rejected_score"]
    assert total.adjudicated == summary["counts"]["adjudicated"] > 0
    assert [f.round for f in report.funnels] == ["1", "2"]
    # alpha (10) is lenient, beta (6) strict, against the committees they sat on.
    leniency = {r.model: r.leniency for r in report.reviewers}
    assert leniency["alpha"] > 0 > leniency["beta"]
    # The seeds' domains are found through the journal's config path.
    assert sum(report.domains.seeds.values()) == 16
    # Items finished over time, from the supervisor's log; tasks per model and role from
    # the agents' task_done lines (every backend writes them, the test double too).
    assert 'data-plot="timeline"' in page and "No per-model series" not in page
    assert report.timeline is not None
    assert sum(c.sum() for c in report.timeline.finished.values()) == report.records
    assert {"generator", "reviewer"} <= set(report.timeline.role_tasks)
    assert set(report.timeline.calls) == {"alpha", "beta", "gamma", "delta"}
    tasks = sum(int(c.sum()) for c in report.timeline.role_tasks.values())
    assert tasks == sum(int(c.sum()) for c in report.timeline.calls.values()) > report.records
    # The run did not deduplicate, so its own page does without the map...
    assert 'data-plot="map"' not in page and "did not deduplicate" in page
    # ...and `gra report` rewrites it with one, from the real MiniLM model.
    (out / REPORT).unlink()
    assert _gra("report", str(out)).stdout.strip() == str(out / REPORT)
    assert (out / REPORT).stat().st_size > 10_000
    page = (out / REPORT).read_text()
    assert 'data-plot="map"' in page and "No embedding map" not in page
    embedded = collect(out).item_map
    assert embedded is not None
    assert embedded.sampled == {
        "seed": 16,
        "accepted": summary["counts"]["accepted"],
        "rejected": report.records - summary["counts"]["accepted"] - summary["counts"]["failed"],
    }
    # Real sentences: neither all the same nor unrelated.
    assert 0.05 < (embedded.spread["seed"] or 0) < 0.95


def test_a_record_holding_markup_is_shown_as_text(tmp_path: Path) -> None:
    synthetic_run(tmp_path, 60, hostile=True)
    page = write_report(tmp_path).read_text()
    # Exactly one script element: the page's own filter.
    assert len(re.findall(r"<script\b", page, re.I)) == 1
    assert "<img src=x" not in page and "<i>dom</i>" not in page and "<b>evil</b>" not in page
    assert "&lt;script&gt;document.body.dataset.pwned=&#x27;1&#x27;&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in page
    # A model name with $...$ stays a string in the plots, escaped by the SVG writer.
    assert "&lt;b&gt;evil&lt;/b&gt; $x^2$ &amp; co" in page
    assert HOSTILE_MODEL not in page and HOSTILE not in page


def test_the_page_asks_nothing_of_any_host(tmp_path: Path) -> None:
    synthetic_run(tmp_path, 200)
    page = write_report(tmp_path).read_text()
    links = re.findall(r"""\b(?:src|href|action|srcset)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
    # In-page references, and the heatmaps' pixels inline: nothing names another place.
    assert all(link.startswith(("#", "data:image/png;base64,")) for link in links), links
    assert "@import" not in page
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page)), "a url() elsewhere"
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy and "default-src 'none'" in policy.group(1)


def test_report_reads_a_damaged_or_partial_run(tmp_path: Path) -> None:
    records = synthetic_records(30)
    lines = [msgspec.json.encode(r).decode() for r in records]
    junk = [
        "",
        "not json",
        json.dumps([1, 2]),
        json.dumps({"id": "x", "decision": "accepted", "stage": "a-stage-from-the-future"}),
        json.dumps({"id": "y", "decision": "rejected", "stage": "score", "reviews": "nope"}),
        json.dumps({"decision": "accepted", "stage": "accepted", "reviews": [{"model": 3}]}),
    ]
    (tmp_path / "accepted.jsonl").write_text("\n".join(lines + junk) + '\n{"id": "torn')
    # No summary.json, no journal, no rejected.jsonl.
    report = collect(tmp_path)
    assert report.records == 30 + 2
    assert report.skipped == 1  # the future stage; lines that are not objects never count
    assert any("summary.json" in note for note in report.notes)
    page = write_report(tmp_path).read_text()
    assert "Left out" in page and "summary.json is missing" in page


def test_an_empty_directory_still_gets_a_page(tmp_path: Path) -> None:
    page = write_report(tmp_path).read_text()
    assert "Nothing to plot" in page and "no records" in page


def test_a_review_run_is_reported_from_its_verdicts(tmp_path: Path) -> None:
    from gra.protocols.records import VerdictRecord

    verdicts = [
        VerdictRecord(
            id=f"pair-{i}",
            decision=r.decision,
            stage=r.stage if r.stage != "dedup" else "score",
            reason=r.reason,
            mean=r.mean,
            std=r.std,
            adjudicated=r.adjudication is not None,
            reviews=r.reviews,
            adjudication=r.adjudication,
            domain=r.domain,
            instruction=r.instruction,
            response=r.response,
        )
        for i, r in enumerate(synthetic_records(40))
    ]
    (tmp_path / "verdicts.jsonl").write_bytes(
        b"".join(msgspec.json.encode(v) + b"\n" for v in verdicts)
    )
    report = collect(tmp_path)
    assert report.mode == "review" and report.records == 40
    assert report.agreement["items"] > 0
    assert "review run" in write_report(tmp_path).read_text()


def test_a_report_failure_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gra.report.html

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("the plotting library is gone")

    monkeypatch.setattr(gra.report.html, "write_report", broken)
    with structlog.testing.capture_logs() as logs:
        assert write_report_quietly(tmp_path) is None
    assert logs[0]["event"] == "report_failed"
    assert "plotting library is gone" in logs[0]["error"]


def test_the_report_of_10000_items_stays_small(tmp_path: Path) -> None:
    records = synthetic_run(tmp_path, 10_000)
    started = time.monotonic()
    _gra("report", str(tmp_path))
    seconds = time.monotonic() - started
    size = (tmp_path / REPORT).stat().st_size
    page = (tmp_path / REPORT).read_text()
    timed = re.search(r"model loaded in ([0-9.]+) s, sample embedded in ([0-9.]+) s", page)
    assert timed is not None
    print(
        f"\ngra report on 10,000 records: {seconds:.1f} s (MiniLM loaded in {timed.group(1)} s, "
        f"sample embedded in {timed.group(2)} s), page {size / 1e6:.2f} MB"
    )
    assert size < MAX_PAGE_BYTES
    for plot in (*PLOTS, "map", "timeline"):
        assert f'data-plot="{plot}"' in page, plot
    started = time.monotonic()
    report = collect(tmp_path, skip_map="measured without it")
    print(f"collect without the map: {time.monotonic() - started:.1f} s")
    # Each model's busy share and decode speed, read back from 50,000 log lines.
    # An hour and a bit: two-minute bins, the narrowest round width giving at most 60.
    assert report.timeline is not None
    assert (report.timeline.bin_s, report.timeline.bins) == (120.0, 31)
    for model, share in BUSY.items():
        assert float(report.timeline.busy[model][1:-1].mean()) == pytest.approx(share, rel=0.02)
    speed = report.timeline.tokens_per_s["plain-1b"]
    np.testing.assert_allclose(speed[~np.isnan(speed)], 100 / (1.2 * 0.36))
    assert np.isnan(speed).sum() <= 1  # the last bin can hold nothing of it
    # Per role: generator and reviewer by turns, so each holds half the busy seconds.
    fleet = sum(report.timeline.busy[m] * 2 for m in BUSY) / (2 * len(BUSY))
    np.testing.assert_allclose(sum(report.timeline.role_busy.values()), fleet)
    middle = slice(1, -1)
    np.testing.assert_allclose(
        report.timeline.role_busy["generator"][middle],
        report.timeline.role_busy["reviewer"][middle],
        rtol=0.01,
    )
    assert sum(c.sum() for c in report.timeline.finished.values()) == 10_000
    stages = Counter(r.stage for r in records)
    total = report.total_funnel()
    assert report.records == 10_000
    for stage in ("instruction_check", "score", "adjudication", "verification", "dedup"):
        assert total.ended[stage] == stages[stage] > 0, stage
    survivors = dict(total.survivors())
    assert survivors["unique (dedup)"] == survivors["accepted"] == stages["accepted"]
    assert [f.round for f in report.funnels] == ["1", "2", "3"]
    leniency = {r.model: r.leniency for r in report.reviewers}
    assert leniency["lenient-7b"] > 0.5 and leniency["strict-3b"] < -0.5
    # The configured weights and the seeds are both there to compare against.
    assert report.domains.weights == {"coding": 2.0, "math": 1.0, "qa": 1.0}
    assert sum(report.domains.seeds.values()) == 16
    categories = Counter(e.category for e in report.examples)
    assert set(categories) == {
        "accepted",
        "rejected",
        "adjudicated",
        "deduplicated",
        "verified",
        "failed",
    }
    assert max(categories.values()) <= 8


def _direction(text: str) -> np.ndarray:
    """A made-up embedding: a random direction seeded by the text."""
    return np.random.default_rng(sample_key(text)).normal(size=16)


def test_the_map_embeds_a_capped_reproducible_sample(tmp_path: Path) -> None:
    records = synthetic_run(tmp_path, 1_000)
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.array([_direction(t) for t in texts])

    report = collect(tmp_path, embed=embed)
    embedded = report.item_map
    assert embedded is not None and len(seen) == 1  # one call for the whole sample
    accepted = sum(r.decision == "accepted" for r in records)
    rejected = sum(r.decision == "rejected" for r in records)
    assert embedded.offered == {"seed": 16, "accepted": accepted, "rejected": rejected}
    assert embedded.sampled == {"seed": 16, "accepted": 150, "rejected": 150}
    assert all(len(text) <= 500 for text in seen[0])
    # Random directions in 16 dimensions are about orthogonal: a spread near 1.
    assert embedded.spread["accepted"] == pytest.approx(1.0, abs=0.05)
    again = collect(tmp_path, embed=embed).item_map
    assert again is not None and seen[1] == seen[0]
    np.testing.assert_array_equal(again.points, embedded.points)


def test_without_the_embedding_model_the_page_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gra.data.dedup

    synthetic_run(tmp_path, 100)
    # The package's model directory, empty: the weights check refuses it before torch loads.
    monkeypatch.setattr(gra.data.dedup, "default_model_path", lambda: tmp_path / "no-model")
    page = write_report(tmp_path).read_text()
    assert 'data-plot="map"' not in page
    assert "No embedding map: the embedding model could not be used (EmbeddingError:" in page
    assert "no model.safetensors" in page
    for plot in (*PLOTS, "timeline"):
        assert f'data-plot="{plot}"' in page, plot


def test_gra_report_on_a_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gra", "report", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"gra: error: {tmp_path / 'nowhere'}: not a directory"


async def test_the_report_refreshes_while_the_run_runs(tmp_path: Path) -> None:
    synthetic_run(tmp_path, 50)
    async with refreshing_report(tmp_path, every_s=0.1):
        for _ in range(1200):
            if (tmp_path / REPORT).exists():
                break
            await asyncio.sleep(0.1)
        assert (tmp_path / REPORT).exists()
    # A refresh leaves the embedding map to the page written at the end.
    assert "left out of the pages rewritten while the run runs" in (tmp_path / REPORT).read_text()
    (tmp_path / REPORT).unlink()
    # Leaving while a refresh is drawing interrupts it cleanly: no partial page left.
    async with refreshing_report(tmp_path, every_s=0.1):
        await asyncio.sleep(1.0)
    assert not list(tmp_path.glob("*.partial"))


def test_items_a_plugin_step_rejected_are_in_the_funnel(tmp_path: Path) -> None:
    """A plugin check step's stage is its own name; the report counts those items
    at the checks gate instead of leaving them out."""
    records = [msgspec.to_builtins(r) for r in synthetic_records(20)]
    screened = [r for r in records if r["decision"] == "accepted"][:3]
    for record in screened:
        record.update(decision="rejected", stage="screen", reason="banned term")
        record["checks"] = [
            {"name": "screen", "model": "m", "verdict": "rejected", "reason": "x", "evidence": ""}
        ]
    (tmp_path / "accepted.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records if r["decision"] == "accepted")
    )
    (tmp_path / "rejected.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records if r["decision"] != "accepted")
    )
    report = collect(tmp_path, skip_map="not needed here")
    assert report.skipped == 0
    assert report.records == 20
    total = report.total_funnel()
    assert total.ended["check"] == 3
    gates = dict(total.survivors())
    assert gates["passed verification"] - gates["passed plugin checks"] == 3
