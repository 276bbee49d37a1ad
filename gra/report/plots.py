"""The run report's plots, as inline SVG strings drawn by matplotlib.

Why matplotlib SVG: the page must open offline, from a file, in any browser,
years later, and make no request to any other host. Static SVG needs no
script, no CDN and no runtime to embed (plotly, bokeh and Vega-Lite need a
multi-megabyte JavaScript bundle inlined in every page to do that), it
scales, prints and can be searched, and matplotlib is a well-kept library
that installs from a wheel. Text is kept as SVG text (``svg.fonttype =
"none"``), not glyph outlines, so plots stay a few tens of kilobytes.

Every plot draws aggregates (histograms, means, counts), never one mark per
item, so its size depends on the number of models, criteria and domains,
not on the number of records. The one exception, the map of embedded items,
draws a capped sample (gra/report/diversity.py), and draws its points as one
inline PNG inside the SVG (axes and text stay vector), so it costs tens of
kilobytes whatever the sample. Model and domain names come from records and
are untrusted: matplotlib's SVG writer escapes text, and mathtext parsing is
off so a ``$`` in a name is a dollar sign, not a formula. A function returns
None when there is nothing to draw.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no backend, no global state

from gra.report.collect import (
    CRITERIA,
    STAGES,
    DomainMix,
    Fleet,
    ReviewerStats,
    RoundFunnel,
    top_domains,
)
from gra.report.diversity import ItemMap
from gra.report.timeline import Timeline

MAX_MODELS = 12  # the most reviewed; more lines or rows than this are unreadable
MAX_ROUNDS = 40  # the last ones: a bar per round stays legible
COLORS = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
    "#2f4b7c",
    "#a05195",
)
STAGE_COLORS = {
    "accepted": "#55a868",
    "dedup": "#ccb974",
    "verification": "#8172b3",
    "adjudication": "#dd8452",
    "score": "#c44e52",
    "instruction_check": "#937860",
    "failed": "#8c8c8c",
}
_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "text.usetex": False,
    "font.size": 9,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
}


@contextmanager
def _figure(name: str, width: float, height: float, **kwargs: object) -> Iterator[Figure]:
    with matplotlib.rc_context({**_RC, "svg.hashsalt": name}):
        yield Figure(figsize=(width, height), layout="constrained", **kwargs)


def to_svg(figure: Figure, name: str, dpi: float | None = None) -> str:
    """The figure as an ``<svg>`` element for inlining: no XML prolog, no metadata.
    ``dpi``: the resolution of rasterized artists (None: the figure's)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": name}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, dpi=dpi)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # Numbers to two decimals: indistinguishable on screen, a third smaller.
    svg = re.sub(r"(\d+\.\d{2})\d+", r"\1", svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{name}" ', 1)


def _short(text: str, cap: int = 28) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _top_reviewers(reviewers: Sequence[ReviewerStats]) -> list[ReviewerStats]:
    top = sorted(reviewers, key=lambda r: -r.reviews)[:MAX_MODELS]
    return sorted(top, key=lambda r: r.model)


def funnel(total: RoundFunnel, rounds: Sequence[RoundFunnel]) -> str | None:
    """Items left after each gate over the whole run, and where each round's items ended."""
    rows = total.survivors()
    if rows[0][1] == 0 and not sum(total.ended.values()):
        return None
    shown = [r for r in rounds if sum(r.ended.values())][-MAX_ROUNDS:]
    per_round = len(shown) > 1
    with _figure("funnel", 9.5 if per_round else 6.5, 3.2) as fig:
        axes = fig.subplots(1, 2, width_ratios=(1, 1.2)) if per_round else [fig.subplots()]
        ax = axes[0]
        labels = [gate for gate, _ in rows]
        values = [count for _, count in rows]
        base = max(values[0], 1)
        y = np.arange(len(rows))[::-1]
        ax.barh(y, values, color=["#4c72b0"] * (len(rows) - 1) + ["#55a868"])
        for yi, value in zip(y, values, strict=True):
            ax.text(value, yi, f" {value} ({100 * value / base:.0f}%)", va="center", fontsize=8)
        ax.set_yticks(y, labels)
        ax.set_xlim(0, max(values) * 1.35 or 1)
        ax.set_title("Items left after each gate (all rounds)")
        ax.set_xlabel("items")
        if per_round:
            ax = axes[1]
            x = np.arange(len(shown))
            bottom = np.zeros(len(shown))
            for stage in ("accepted", *reversed(STAGES[:-1]), "failed"):
                heights = np.array([r.ended[stage] for r in shown], dtype=float)
                if heights.any():
                    label = stage.replace("_", " ")
                    color = STAGE_COLORS[stage]
                    ax.bar(x, heights, bottom=bottom, color=color, label=label, width=0.8)
                    bottom += heights
            ax.set_xticks(x, [_short(r.round, 6) for r in shown])
            ax.set_xlabel("synthesis round")
            ax.set_ylabel("items")
            ax.set_title("Where each round's items ended")
            ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
        return to_svg(fig, "funnel")


def score_distributions(reviewers: Sequence[ReviewerStats]) -> str | None:
    """Per criterion, the share of each model's reviews that gave each score."""
    shown = [r for r in _top_reviewers(reviewers) if r.counts["score"]]
    if not shown:
        return None
    with _figure("scores", 9.5, 4.6) as fig:
        grid = fig.subplots(2, 4, sharex=True, sharey=True)
        # One step per integer score, each bin centred on its score.
        edges = np.arange(len(shown[0].histograms["score"]) + 1) - 0.5
        for ax, criterion in zip(grid.flat, CRITERIA, strict=False):
            for index, stats in enumerate(shown):
                counts = np.array(stats.histograms[criterion], dtype=float)
                if counts.sum():
                    ax.stairs(
                        counts / counts.sum(),
                        edges,
                        color=COLORS[index % len(COLORS)],
                        label=_short(stats.model),
                        linewidth=1.4,
                    )
            ax.set_title("mean of six" if criterion == "score" else criterion, fontsize=9)
            ax.set_xticks([0, 2, 4, 6, 8, 10])
            ax.set_xlim(-0.7, 10.7)
        grid[0][0].set_ylabel("share of reviews")
        grid[1][0].set_ylabel("share of reviews")
        legend = grid.flat[-1]
        legend.axis("off")
        handles, labels = grid.flat[0].get_legend_handles_labels()
        legend.legend(handles, labels, loc="center", frameon=False, title="reviewer")
        return to_svg(fig, "scores")


def leniency(reviewers: Sequence[ReviewerStats]) -> str | None:
    """Each model's mean minus the committee's on the same items, and its mean per criterion."""
    shown = _top_reviewers(reviewers)
    if not shown:
        return None
    height = 1.2 + 0.32 * len(shown)
    with _figure("leniency", 9.5, max(2.6, height)) as fig:
        left, right = fig.subplots(1, 2, width_ratios=(1, 1.3))
        y = np.arange(len(shown))[::-1]
        values = [r.leniency if r.leniency is not None else 0.0 for r in shown]
        colors = ["#c44e52" if v > 0 else "#4c72b0" for v in values]
        left.barh(y, values, color=colors)
        left.axvline(0, color="#333", linewidth=0.8)
        for yi, stats, value in zip(y, shown, values, strict=True):
            text = "n/a" if stats.leniency is None else f"{value:+.2f}"
            left.text(value, yi, f" {text} ", va="center", ha="left" if value >= 0 else "right")
        limit = max([0.5, *(abs(v) for v in values)]) * 1.5
        left.set_xlim(-limit, limit)
        left.set_yticks(y, [_short(r.model) for r in shown])
        left.set_xlabel("points above (+, lenient) or below (-, strict) the committee")
        left.set_title("Leniency")
        matrix = np.array(
            [[np.nan if r.mean(c) is None else r.mean(c) for c in CRITERIA] for r in shown],
            dtype=float,
        )
        image = right.imshow(matrix, cmap="RdYlGn", vmin=0, vmax=10, aspect="auto")
        for (row, column), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                right.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=7)
        right.set_xticks(range(len(CRITERIA)), [c[:7] for c in CRITERIA], rotation=30)
        right.set_yticks(range(len(shown)), [_short(r.model) for r in shown])
        right.set_title("Mean score per criterion")
        fig.colorbar(image, ax=right, shrink=0.8)
        return to_svg(fig, "leniency")


def agreement(per_criterion: dict[str, float | None], per_pair: dict[str, dict]) -> str | None:
    """Krippendorff's alpha per criterion, and per pair of models on the score."""
    if all(v is None for v in per_criterion.values()) and not per_pair:
        return None
    models = sorted({m for key in per_pair for m in key.split("|", 1)})[:MAX_MODELS]
    with _figure("agreement", 9.5, max(3.2, 1.4 + 0.3 * len(models))) as fig:
        axes = fig.subplots(1, 2, width_ratios=(1, 1)) if models else [fig.subplots()]
        ax = axes[0]
        names = list(per_criterion)
        y = np.arange(len(names))[::-1]
        values = [per_criterion[n] for n in names]
        ax.barh(
            y,
            [0.0 if v is None else v for v in values],
            color=[
                "#8c8c8c" if v is None else "#4c72b0" if v >= 0.667 else "#dd8452" for v in values
            ],
        )
        for yi, value in zip(y, values, strict=True):
            label = " n/a (too few items or no variation)" if value is None else f" {value:.2f}"
            ax.text(max(0.0, value or 0.0), yi, label, va="center", fontsize=7)
        ax.axvline(0, color="#333", linewidth=0.8)
        ax.axvline(0.667, color="#55a868", linewidth=0.8, linestyle="--")
        ax.set_xlim(min([-0.2, *(v for v in values if v is not None)]) - 0.05, 1.45)
        ax.set_yticks(y, [n.replace("_", " ") for n in names])
        ax.set_xlabel("alpha (1 agree, 0 chance; dashed: 0.667)")
        ax.set_title("Agreement per criterion")
        if models:
            ax = axes[1]
            index = {m: i for i, m in enumerate(models)}
            matrix = np.full((len(models), len(models)), np.nan)
            for key, figures in per_pair.items():
                a, _, b = key.partition("|")
                value = figures.get("alpha") if isinstance(figures, dict) else None
                if a in index and b in index and isinstance(value, int | float):
                    matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
            image = ax.imshow(matrix, cmap="RdBu", vmin=-1, vmax=1)
            for (row, column), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(models)), [_short(m, 14) for m in models], rotation=30)
            ax.set_yticks(range(len(models)), [_short(m) for m in models])
            ax.set_title("Alpha per model pair (score)")
            fig.colorbar(image, ax=ax, shrink=0.8)
        return to_svg(fig, "agreement")


def domains(mix: DomainMix) -> str | None:
    """Share of each domain among accepted items, seeds and the configured weights."""
    series = {"accepted": dict(mix.accepted), "seeds": dict(mix.seeds)}
    if mix.weights:
        series["configured weight"] = dict(mix.weights)
    if not mix.accepted and not mix.seeds:
        return None
    names = top_domains(series.values())
    with _figure("domains", 7.5, 1.2 + 0.28 * len(names) * len(series) / 2) as fig:
        ax = fig.subplots()
        y = np.arange(len(names))[::-1]
        height = 0.8 / len(series)
        for offset, (label, counts) in enumerate(series.items()):
            total = sum(counts.values()) or 1
            shares = []
            for name in names:
                if name == "other":
                    value = sum(v for k, v in counts.items() if k not in names)
                else:
                    value = counts.get(name, 0)
                shares.append(value / total)
            ax.barh(
                y + 0.4 - height * (offset + 0.5),
                shares,
                height=height,
                color=COLORS[offset],
                label=label,
            )
        ax.set_yticks(y, [_short(n) for n in names])
        ax.set_xlabel("share")
        ax.set_title("Domain mix")
        ax.legend(frameon=False, fontsize=8)
        return to_svg(fig, "domains")


def fleet(usage: Fleet) -> str | None:
    """Decode speed per model and role, and how busy each model's agents were."""
    rows = [r for r in usage.usage if r.tokens_per_s is not None]
    if not rows:
        return None
    models = sorted({r.model for r in rows})[:MAX_MODELS]
    roles = sorted({r.role for r in rows})
    with _figure("fleet", 9.5, max(2.6, 1.2 + 0.3 * len(models) * max(1, len(roles)) / 2)) as fig:
        left, right = fig.subplots(1, 2, width_ratios=(1.4, 1))
        y = np.arange(len(models))[::-1]
        height = 0.8 / len(roles)
        speed = {(r.model, r.role): r.tokens_per_s for r in rows}
        for offset, role in enumerate(roles):
            left.barh(
                y + 0.4 - height * (offset + 0.5),
                [speed.get((m, role)) or 0.0 for m in models],
                height=height,
                color=COLORS[offset % len(COLORS)],
                label=_short(role),
            )
        left.set_yticks(y, [_short(m) for m in models])
        left.set_xlabel("completion tokens per model-second")
        left.set_title("Decode speed per model and role")
        left.legend(frameon=False, fontsize=7)
        busy = [usage.busy_fraction(m) or 0.0 for m in models]
        right.barh(y, busy, color="#55a868")
        for yi, value in zip(y, busy, strict=True):
            right.text(value, yi, f" {100 * value:.0f}%", va="center", fontsize=8)
        right.set_xlim(0, max([1.0, *busy]) * 1.2)
        right.set_yticks(y, [_short(m) for m in models])
        right.set_xlabel("model seconds / (wall seconds x task slots)")
        right.set_title("Busy fraction")
        return to_svg(fig, "fleet")


KIND_COLORS = {"seed": "#4c72b0", "accepted": "#55a868", "rejected": "#c44e52"}


def item_map(embedded: ItemMap) -> str | None:
    """Seeds, accepted and rejected items on the first two principal components of their
    MiniLM embeddings: accepted items far from every seed are new ground."""
    if not len(embedded.points):
        return None
    kinds = np.array(embedded.kinds)
    with _figure("map", 7.5, 5.2) as fig:
        ax = fig.subplots()
        # Rejected under accepted under seeds: the seeds are what the rest is read against.
        for kind in ("rejected", "accepted", "seed"):
            chosen = embedded.points[kinds == kind]
            if len(chosen):
                ax.scatter(
                    chosen[:, 0],
                    chosen[:, 1],
                    s=28 if kind == "seed" else 12,
                    marker="D" if kind == "seed" else "o",
                    color=KIND_COLORS[kind],
                    alpha=0.9 if kind == "seed" else 0.6,
                    edgecolors="white" if kind == "seed" else "none",
                    linewidths=0.5,
                    label=f"{kind} ({len(chosen)})",
                    rasterized=True,
                )
        first, second = embedded.explained
        ax.set_xlabel(f"first principal component ({100 * first:.0f}% of variance)")
        ax.set_ylabel(f"second ({100 * second:.0f}%)")
        ax.set_title("Items on the first two principal components of their MiniLM embeddings")
        ax.legend(frameon=False, fontsize=8, loc="best")
        return to_svg(fig, "map", dpi=110)


def timeline(series: Timeline) -> str | None:
    """Items finished; then per model (left) and per role (right): tasks finished, busy
    fraction and decode speed, per time bin."""
    x = series.minutes()
    models = sorted(series.busy, key=lambda m: -float(series.busy[m].sum()))[:MAX_MODELS]
    roles = sorted(series.role_busy, key=lambda r: -float(series.role_busy[r].sum()))
    rows = 4 if models else 1
    width = series.bin_s / 60.0
    with _figure("timeline", 11.0, 1.4 + 1.8 * rows) as fig:
        grid = fig.add_gridspec(rows, 2)
        ax = fig.add_subplot(grid[0, :])
        bottom = np.zeros(series.bins)
        for decision in sorted(series.finished):
            counts = series.finished[decision]
            color = STAGE_COLORS.get(decision, STAGE_COLORS["score"])
            if decision == "failed":
                color = STAGE_COLORS["failed"]
            ax.bar(x, counts, width=width, bottom=bottom, align="edge", color=color, label=decision)
            bottom += counts
        ax.set_ylabel("items finished")
        ax.set_title(f"Over time (bins of {_duration(series.bin_s)})")
        if series.finished:
            ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        else:
            ax.text(0.5, 0.5, "no instance_finished lines", transform=ax.transAxes, ha="center")
        ax.set_xlabel("minutes since the first recorded event")
        if not models:
            return to_svg(fig, "timeline")
        middle = x + width / 2
        columns = (
            ("per model", models, series.calls, series.busy, series.tokens_per_s,
             "busy fraction\nof its task slots"),
            ("per role", roles, series.role_tasks, series.role_busy, series.role_tokens_per_s,
             "share of all\ntask slots busy"),
        )  # fmt: skip
        for column, (title, keys, ended, busy, speed, busy_label) in enumerate(columns):
            axes = [fig.add_subplot(grid[row, column], sharex=ax) for row in (1, 2, 3)]
            if not keys:
                axes[0].text(
                    0.5, 0.5, "the logs name no role", transform=axes[0].transAxes, ha="center"
                )
            for index, key in enumerate(keys):
                color = COLORS[index % len(COLORS)]
                axes[0].plot(middle, ended[key], color=color, label=_short(key), linewidth=1.3)
                axes[1].plot(middle, busy[key], color=color, linewidth=1.3)
                axes[2].plot(middle, speed[key], color=color, linewidth=1.3)
            axes[0].set_title(title, fontsize=9)
            axes[0].set_ylabel("tasks finished")
            if keys:
                axes[0].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
                axes[1].set_ylim(0, max(1.05, *(float(np.max(busy[k])) for k in keys)))
            axes[1].set_ylabel(busy_label)
            axes[2].set_ylabel("tokens a second\nwhile busy")
            axes[2].set_xlabel("minutes")
        return to_svg(fig, "timeline")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
