"""The tab's page and its JSON: plain server-rendered HTML with inline SVG plots.

No front-end build: the page is HTML the api-server writes, two SVG plots (a timeline
with one bar per call, as Lithops' own plots draw them, and a histogram of durations),
a table with the failed calls first and their tracebacks behind a ``<details>`` click,
and a few lines of script that fetch the page again while the job runs. Everything shown
is escaped; nothing the page holds is a credential (no endpoint, no Connection field).
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from typing import Any

from pywren_deferrable.pricing import Price, gb_seconds
from pywren_deferrable.ui.calls import (
    FAILED,
    RUNNING,
    CallRecord,
    Counts,
    Histogram,
    count,
    duration_histogram,
    table_order,
)
from pywren_deferrable.ui.reader import JobCalls
from pywren_deferrable.ui.record import JobRecord

PAGE_SIZE = 100
PLOT_WIDTH = 760
PLOT_LEFT = 50
COLORS = {"cold": "#4c72b0", "warm": "#55a868", FAILED: "#c44e52", RUNNING: "#dd8452"}


@dataclass
class JobPanel:
    """One job of the task, as the page shows it.

    :param record: the job record (JobRef, Connection id, memory, backend).
    :param calls: what the cache knows of its calls.
    :param price: the price of its backend, if known.
    :param note: why something is missing (Connection unreadable, bad price...).
    :param gone: the task has ended and its job's objects are no longer in storage.
    """

    record: JobRecord
    calls: JobCalls
    price: Price | None = None
    note: str | None = None
    gone: bool = False
    finished: list[CallRecord] = field(init=False)
    running: list[CallRecord] = field(init=False)

    def __post_init__(self) -> None:
        # One consistent view for the whole page: the reader thread goes on meanwhile.
        self.finished, self.running = self.calls.snapshot()

    @property
    def records(self) -> list[CallRecord]:
        return [*self.finished, *self.running]

    @property
    def counts(self) -> Counts:
        return count(self.records, self.calls.total)

    def durations(self) -> list[float]:
        return [d for r in self.finished if (d := r.duration) is not None]

    def gb_seconds(self) -> float | None:
        memory = self.record.runtime_memory
        return gb_seconds(self.durations(), memory) if memory else None

    def cost(self) -> float | None:
        gbs = self.gb_seconds()
        if gbs is None or self.price is None:
            return None
        return self.price.cost(gbs, len(self.finished))

    def wall(self) -> tuple[float, float] | None:
        starts = [r.start for r in self.records if r.start is not None]
        ends = [r.end for r in self.finished if r.end is not None]
        if not starts:
            return None
        last = max(ends) if ends and not self.running else time.time()
        return min(starts), max(last, min(starts))

    def summary(self) -> dict[str, Any]:
        """The job's figures, for the JSON API and the page header."""
        counts = self.counts
        wall = self.wall()
        gbs = self.gb_seconds()
        cost = self.cost()
        return {
            "executor_id": self.record.job.executor_id,
            "job_id": self.calls.job_id,
            "bucket": self.record.job.storage.bucket,
            "compute_backend": self.record.compute_backend,
            "runtime_memory_mb": self.record.runtime_memory,
            "total": counts.total,
            "done": counts.done,
            "failed": counts.failed,
            "running": counts.running,
            "pending": counts.pending,
            "complete": self.calls.complete,
            "gone": self.gone,
            "loading": self.calls.loading,
            "wall_seconds": round(wall[1] - wall[0], 3) if wall else None,
            "call_seconds": round(sum(self.durations()), 3),
            "gb_seconds": round(gbs, 3) if gbs is not None else None,
            "cost": (
                {"amount": cost, "currency": self.price.currency, "source": self.price.source}
                if cost is not None and self.price is not None
                else None
            ),
            "status_reads": self.calls.status_reads,
            "objects_listed": self.calls.listed,
            "list_requests": self.calls.list_requests,
            "error": self.calls.error,
            "note": self.note,
        }


def call_json(record: CallRecord, t0: float | None) -> dict[str, Any]:
    """One row of the calls table, as JSON."""
    return {
        "call": record.key,
        "state": record.state,
        "activation": record.activation,
        "start": round(record.start - t0, 3) if record.start is not None and t0 is not None else None,
        "duration": round(d, 3) if (d := record.duration) is not None else None,
        "peak_memory_mb": round(record.peak_memory / 2**20, 1) if record.peak_memory else None,
        "cold": record.cold,
        "error": record.error,
        "traceback": record.traceback,
    }


def view_json(panels: list[JobPanel], offset: int = 0, limit: int = PAGE_SIZE) -> dict[str, Any]:
    """The JSON API's answer: each job's figures and a page of its calls (failed first)."""
    jobs = []
    for panel in panels:
        wall = panel.wall()
        ordered = table_order(panel.records)
        histogram = duration_histogram(panel.durations())
        jobs.append(
            {
                **panel.summary(),
                "histogram": (
                    {"low": histogram.low, "high": histogram.high, "counts": histogram.counts}
                    if histogram
                    else None
                ),
                "calls": [call_json(r, wall[0] if wall else None) for r in ordered[offset : offset + limit]],
            }
        )
    return {"jobs": jobs, "final": is_final(panels)}


def is_final(panels: list[JobPanel]) -> bool:
    """Nothing on the page can change any more (every call of every job read)."""
    return all(p.calls.complete or p.gone for p in panels)


# -- SVG -------------------------------------------------------------------------------
def _ticks(span: float, count_: int = 6) -> list[float]:
    if span <= 0:
        return [0.0]
    raw = span / count_
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    return [i * step for i in range(int(span / step) + 1)]


def timeline_svg(panel: JobPanel) -> str:
    """One horizontal bar per call from its start to its end (running ones to now),
    coloured cold / warm start, failed, running; calls top to bottom in id order."""
    records = [r for r in panel.records if r.start is not None]
    if not records:
        return '<p class="muted">No call has started yet.</p>'
    t0 = min(r.start for r in records if r.start is not None)
    now = time.time()
    ends = [(r.end if r.end is not None else now) for r in records]
    span = max(1e-3, max(ends) - t0)
    total = panel.calls.total
    height = max(60, min(360, total * 6))
    row = height / total
    width = PLOT_WIDTH - PLOT_LEFT - 10
    paths: dict[str, list[str]] = {k: [] for k in COLORS}
    for record, end in zip(records, ends, strict=True):
        assert record.start is not None
        try:
            index = int(record.call_id)
        except ValueError:
            continue
        kind = record.state if record.state in (FAILED, RUNNING) else ("cold" if record.cold else "warm")
        x = PLOT_LEFT + (record.start - t0) / span * width
        w = max(0.8, (end - record.start) / span * width)
        y = 10 + (index + 0.5) * row
        paths[kind].append(f"M{x:.1f} {y:.2f}h{w:.1f}")
    stroke = max(0.6, min(5.0, row * 0.8))
    parts = [
        f'<svg class="timeline" role="img" aria-label="timeline of {total} calls" '
        f'viewBox="0 0 {PLOT_WIDTH} {height + 40}" width="{PLOT_WIDTH}" height="{height + 40}">',
        f'<rect x="{PLOT_LEFT}" y="10" width="{width}" height="{height}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for tick in _ticks(span):
        x = PLOT_LEFT + tick / span * width
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height + 10}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{height + 24}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{PLOT_LEFT + width / 2}" y="{height + 38}" text-anchor="middle">seconds</text>')
    parts.append(f'<text x="{PLOT_LEFT - 6}" y="20" text-anchor="end">0</text>')
    parts.append(f'<text x="{PLOT_LEFT - 6}" y="{height + 10}" text-anchor="end">{total - 1}</text>')
    for kind, segments in paths.items():
        if segments:
            parts.append(
                f'<path class="bars-{kind}" d="{" ".join(segments)}" stroke="{COLORS[kind]}" '
                f'stroke-width="{stroke:.2f}" fill="none"/>'
            )
    parts.append("</svg>")
    legend = " ".join(
        f'<span class="key"><i style="background:{color}"></i>{label}</span>'
        for label, color in (
            ("cold start", COLORS["cold"]),
            ("warm start", COLORS["warm"]),
            ("failed", COLORS[FAILED]),
            ("running", COLORS[RUNNING]),
        )
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def histogram_svg(histogram: Histogram | None) -> str:
    """Bars of call counts per duration bin."""
    if histogram is None:
        return '<p class="muted">No call has finished yet.</p>'
    height, width = 140, PLOT_WIDTH - PLOT_LEFT - 10
    peak = max(histogram.counts) or 1
    bar = width / len(histogram.counts)
    parts = [
        f'<svg class="histogram" role="img" aria-label="histogram of call durations" '
        f'viewBox="0 0 {PLOT_WIDTH} {height + 40}" width="{PLOT_WIDTH}" height="{height + 40}">'
    ]
    for i, value in enumerate(histogram.counts):
        h = value / peak * height
        parts.append(
            f'<rect x="{PLOT_LEFT + i * bar + 1:.1f}" y="{10 + height - h:.1f}" width="{max(1.0, bar - 2):.1f}" '
            f'height="{h:.1f}" fill="{COLORS["cold"]}"><title>{value} call(s), '
            f"{histogram.low + i * histogram.width:.3f}-{histogram.low + (i + 1) * histogram.width:.3f} s</title></rect>"
        )
    parts.append(f'<text x="{PLOT_LEFT - 6}" y="20" text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{PLOT_LEFT}" y="{height + 24}">{histogram.low:.3f} s</text>')
    parts.append(
        f'<text x="{PLOT_LEFT + width}" y="{height + 24}" text-anchor="end">{histogram.high:.3f} s</text>'
    )
    parts.append(
        f'<text x="{PLOT_LEFT + width / 2}" y="{height + 38}" text-anchor="middle">call duration</text></svg>'
    )
    return "".join(parts)


# -- HTML ------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def calls_table(panel: JobPanel, offset: int, limit: int, page_url: str) -> str:
    """The calls, failed first, a page at a time; a failed call's traceback one click away."""
    ordered = table_order(panel.records)
    wall = panel.wall()
    t0 = wall[0] if wall else None
    rows = []
    for record in ordered[offset : offset + limit]:
        if record.state == FAILED:
            detail = (
                f'<details class="tb"><summary>{_e(record.error)}</summary>'
                f"<pre>{_e(record.traceback or '(no traceback in the call log)')}</pre></details>"
            )
        else:
            detail = ""
        start = record.start - t0 if record.start is not None and t0 is not None else None
        memory = record.peak_memory / 2**20 if record.peak_memory else None
        warm = "" if record.cold is None else ("cold" if record.cold else "warm")
        rows.append(
            f'<tr class="{_e(record.state)}"><td>{_e(record.key)}</td><td>{_e(record.state)}</td>'
            f"<td><code>{_e(record.activation)}</code></td><td>{_fmt(start, 2)}</td>"
            f"<td>{_fmt(record.duration)}</td><td>{_fmt(memory, 1)}</td><td>{warm}</td><td>{detail}</td></tr>"
        )
    pager = ""
    if len(ordered) > limit:
        links = []
        if offset > 0:
            links.append(f'<a href="{_e(page_url)}&offset={max(0, offset - limit)}">previous</a>')
        if offset + limit < len(ordered):
            links.append(f'<a href="{_e(page_url)}&offset={offset + limit}">next</a>')
        pager = (
            f'<p class="pager">calls {offset + 1}-{min(len(ordered), offset + limit)} of {len(ordered)} '
            f"{' '.join(links)}</p>"
        )
    pending = panel.counts.pending
    note = f'<p class="muted">{pending} pending call(s) not shown.</p>' if pending else ""
    return (
        f'<table class="calls"><thead><tr><th>call</th><th>state</th><th>activation</th><th>start (s)</th>'
        f"<th>duration (s)</th><th>peak memory (MB)</th><th>start kind</th><th>error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{pager}{note}"
    )


def _panel_html(panel: JobPanel, offset: int, page_url: str) -> str:
    s = panel.summary()
    counts = (
        f'<span class="n done">{s["done"]} done</span> <span class="n running">{s["running"]} running</span> '
        f'<span class="n pending">{s["pending"]} pending</span> <span class="n failed">{s["failed"]} failed</span> '
        f"of {s['total']}"
    )
    if s["gb_seconds"] is None:
        cost = "GB-seconds: unknown (the task did not record its calls' memory)"
    else:
        cost = f"{s['gb_seconds']:.3f} GB-s ({_fmt(s['runtime_memory_mb'], 0)} MB x {s['call_seconds']:.3f} call-s)"
        if s["cost"] is not None:
            cost += f"; estimated cost {s['cost']['amount']:.6f} {_e(s['cost']['currency'])} ({_e(s['cost']['source'])})"
        else:
            cost += (
                f"; no price known for backend {_e(s['compute_backend'])} (set job_price on the Connection)"
            )
    if s["loading"]:
        state = f"reading status objects... ({s['objects_listed']:,} listed, {s['status_reads']:,} read)"
    else:
        state = "" if s["complete"] or s["gone"] else "live"
    gone = (
        "The job's objects are no longer in storage (clean_data=True deletes them when the task ends)."
        if s["gone"]
        else None
    )
    notes = "".join(f'<p class="warn">{_e(text)}</p>' for text in (gone, s["error"], s["note"]) if text)
    wall = f"wall {s['wall_seconds']:.2f} s; " if s["wall_seconds"] is not None else ""
    return (
        f'<section class="job" data-job="{_e(s["job_id"])}">'
        f"<h2>Job {_e(s['executor_id'])} / {_e(s['job_id'])} <small>{_e(state)}</small></h2>"
        f'<p class="counts">{counts}</p><p class="figures">{wall}{cost}</p>{notes}'
        f"<h3>Timeline</h3>{timeline_svg(panel)}"
        f"<h3>Call durations</h3>{histogram_svg(duration_histogram(panel.durations()))}"
        f"<h3>Calls</h3>{calls_table(panel, offset, PAGE_SIZE, page_url)}</section>"
    )


STYLE = """
body{font-family:system-ui,sans-serif;font-size:14px;margin:12px;color:#222}
h2{font-size:16px;margin:8px 0} h3{font-size:14px;margin:14px 0 4px} small{color:#888;font-weight:normal}
.muted{color:#888} .warn{color:#a33} svg text{font-size:10px;fill:#555}
.n{padding:1px 6px;border-radius:8px;color:#fff} .n.done{background:#55a868} .n.running{background:#dd8452}
.n.pending{background:#999} .n.failed{background:#c44e52}
.legend .key{margin-right:12px} .legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
table.calls{border-collapse:collapse} table.calls td,table.calls th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left;vertical-align:top}
tr.failed td{background:#fdf0f0} details.tb pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:6px;max-width:900px}
"""

# Fetch the page again every few seconds while something can change, keeping the
# tracebacks the user opened open.
SCRIPT = """
(function(){
  const again = () => fetch(location.href, {credentials: "same-origin"}).then(r => r.ok ? r.text() : null)
    .then(text => {
      if (!text) return;
      const fresh = new DOMParser().parseFromString(text, "text/html");
      const open = new Set([...document.querySelectorAll("details[open] summary")].map(s => s.textContent));
      document.getElementById("content").replaceWith(fresh.getElementById("content"));
      document.querySelectorAll("details summary").forEach(s => { if (open.has(s.textContent)) s.parentElement.open = true; });
      schedule();
    }).catch(schedule);
  const schedule = () => { if (document.getElementById("content").dataset.final !== "true") setTimeout(again, 2500); };
  schedule();
})();
"""


def render_page(
    panels: list[JobPanel], *, title: str, offset: int = 0, page_url: str = "?", message: str | None = None
) -> str:
    """The tab's whole page."""
    if message is not None:
        body = f'<p class="muted">{_e(message)}</p>'
    else:
        body = "".join(_panel_html(p, offset, page_url) for p in panels)
    final = "true" if message is not None or is_final(panels) else "false"
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<div id="content" data-final="{final}">{body}</div><script>{SCRIPT}</script></body></html>'
    )
