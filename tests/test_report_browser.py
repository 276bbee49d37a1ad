"""The run report opened in a real browser: Debian's chromium, headless (`make chromium`).

What a person would see: the page loads with no console message (a script the
Content-Security-Policy refused, or any error, would print one), asks no host
for anything, draws every plot, runs its filter, and shows a hostile record's
markup as text. A screenshot is left in the test's directory to look at.
"""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gra.report.collect import collect
from gra.report.html import write_report
from tests.report_runs import chromium, open_in_chromium, synthetic_run

pytestmark = pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (`make chromium` installs it)"
)
PLOTS = ("funnel", "scores", "leniency", "agreement", "domains", "map", "fleet", "timeline")
DRAWN = {"path", "rect", "line", "polyline", "polygon", "circle", "text", "use", "image"}


class _Plots(HTMLParser):
    """Drawn SVG elements per ``<figure data-plot=...>``, and body/row attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn: Counter[str] = Counter()
        self.plot: str | None = None
        self.depth = 0
        self.body: dict[str, str | None] = {}
        self.rows: list[dict[str, str | None]] = []
        self.in_examples = False
        self.elements: Counter[str] = Counter()
        self.tags: Counter[tuple[str, str]] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements[tag] += 1
        if tag == "body":
            self.body = attributes
        if tag == "table" and attributes.get("id") == "examples":
            self.in_examples = True
        if self.in_examples and tag == "tr" and self.rows is not None:
            self.rows.append(attributes)
        if tag == "figure" and attributes.get("data-plot"):
            self.plot = attributes["data-plot"]
            self.depth = 0
        elif self.plot is not None:
            self.depth += 1
            if tag in DRAWN:
                self.drawn[self.plot] += 1
                self.tags[self.plot, tag] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.plot = None
        if tag == "table":
            self.in_examples = False


def _parse(dom: str) -> _Plots:
    parser = _Plots()
    parser.feed(dom)
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    synthetic_run(out, 400, hostile=True)
    return write_report(out)


def test_the_page_loads_quietly_draws_every_plot_and_asks_no_host(
    report: Path, tmp_path: Path
) -> None:
    screenshot = tmp_path / "report.png"
    page = open_in_chromium(report.as_uri(), tmp_path / "browser", screenshot=screenshot)
    assert page.console == [], page.console
    assert page.page_requests == [], page.page_requests
    parsed = _parse(page.dom)
    for plot in PLOTS:
        # Bars, lines, tick labels: dozens of marks each; an empty axes has a handful.
        assert parsed.drawn[plot] >= (25 if plot == "map" else 40), (plot, parsed.drawn)
    # The map's points are one picture inside its SVG (its axes and labels are vector).
    assert parsed.tags["map", "image"] == 1
    assert screenshot.stat().st_size > 20_000
    print(f"\nscreenshot: {screenshot}; drawn elements per plot: {dict(parsed.drawn)}")


def test_markup_in_a_record_is_text_and_never_runs(report: Path, tmp_path: Path) -> None:
    page = open_in_chromium(report.as_uri(), tmp_path / "browser")
    parsed = _parse(page.dom)
    assert "data-pwned" not in parsed.body, "a record's script or handler ran"
    # The record's tags are text in the DOM, not elements.
    assert "&lt;script&gt;document.body.dataset.pwned" in page.dom
    assert parsed.elements["script"] == 1 and parsed.elements["img"] == 0
    assert parsed.elements["i"] == 0 and "&lt;i&gt;dom&lt;/i&gt;" in page.dom


def test_the_filter_runs_under_the_pages_policy(report: Path, tmp_path: Path) -> None:
    # An item in the table once (one can be, say, adjudicated and accepted) and named
    # by no other row (as the item a duplicate repeats).
    examples = collect(report.parent).examples
    ids = Counter(e.id for e in examples)
    named = {e.duplicate_of for e in examples}
    once = next(i for i, n in ids.items() if n == 1 and i not in named)
    page = open_in_chromium(f"{report.as_uri()}#filter={once}", tmp_path / "browser")
    assert page.console == [], page.console
    rows = _parse(page.dom).rows[1:]  # the header row first
    visible = [row for row in rows if "hidden" not in row]
    assert len(rows) > 10 and len(visible) == 1
    assert '<span id="shown">1</span>' in page.dom


def test_the_request_check_sees_a_page_that_asks_a_host(tmp_path: Path) -> None:
    """The network check is not vacuous: a page that loads an image from a host is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="https://example.invalid/pixel.png"></body></html>')
    loaded = open_in_chromium(page.as_uri(), tmp_path / "browser")
    assert loaded.page_requests == ["https://example.invalid/pixel.png"]
