"""The job tab on a 10,000-call job: how fast the api-server answers, first load and refresh.

The job's objects are the ones real Lithops calls write (:mod:`benchmarks.lithops_layout`),
loaded into the embedded S3 endpoint (moto): 10,000 calls, 9,990 of them finished (20
failed) and 10 running. The tab's own code path on the api-server (the per-job cache's
incremental read through a status source on that endpoint, then the page and the JSON)
runs here in process; the HTTP hop and the DB lookup of the task's job record are left
out (both are constant, a few ms).

Measured: the first answer (what the page shows after the 0.75 s read budget while the
statuses are still being read), how long the first full read takes (bounded by moto: one
GET per status), a refresh while the job runs (10 more calls
finished: one LIST from the watermark and 10 GETs), and a refresh of a finished job
(no request at all).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.common import BenchResult, Context, Row, fmt_s, unique_bucket
from benchmarks.lithops_layout import JobLayout

CALLS = 10_000
RUNNING = 10
FAILED = 20
GOAL_S = 2.0


async def _answer(calls: Any, opener: Any, panel_of: Any, budget: float) -> tuple[float, int, int]:
    """One request's work (the tab's page): update within the budget, render."""
    from pywren_deferrable.ui.render import render_page

    started = time.perf_counter()
    await calls.update(opener, budget)
    panel = panel_of(calls)
    page = render_page([panel], title="bench", page_url="?x=1")
    return time.perf_counter() - started, len(calls.finished), len(page)


async def _measure(endpoint: str, bucket: str, layout: JobLayout, put: Any) -> dict[str, Any]:
    total = layout.calls
    from pywren_deferrable.config import S3Credentials
    from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY
    from pywren_deferrable.pricing import DEFAULT_PRICES
    from pywren_deferrable.triggers.status import open_status_source
    from pywren_deferrable.ui.app import ANSWER_BUDGET
    from pywren_deferrable.ui.reader import JobCache
    from pywren_deferrable.ui.record import JobRecord
    from pywren_deferrable.ui.render import JobPanel

    job = layout.job_ref(bucket, endpoint)
    record = JobRecord(job, "lithops_default", 1024, "aws_lambda")
    credentials = S3Credentials(EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY)
    requests: list[int] = []

    def opener() -> Any:
        return _Counting(open_status_source(job.storage, credentials), requests)

    def panel_of(calls: Any) -> JobPanel:
        return JobPanel(record, calls, DEFAULT_PRICES["aws_lambda"])

    cache = JobCache()
    calls = cache.get(job, job.job_ids[0])
    out: dict[str, Any] = {}
    started = time.perf_counter()
    out["first"] = await _answer(calls, opener, panel_of, ANSWER_BUDGET)
    answers = [out["first"][0]]
    while calls.loading:  # the page asks again every 2.5 s; here: at once
        answers.append((await _answer(calls, opener, panel_of, ANSWER_BUDGET))[0])
    out["full_read"] = time.perf_counter() - started
    out["answers"] = answers
    out["read_requests"] = sum(requests)
    out["finished"] = len(calls.finished)
    # Ten running calls finish; the next refresh reads only them.
    await asyncio.to_thread(put, [layout.status_object(i, i) for i in range(total - RUNNING, total)])
    calls.refreshed_at = None  # as if MIN_REFRESH_INTERVAL had passed
    before = sum(requests)
    started = time.perf_counter()
    out["refresh_running"] = await _answer(calls, opener, panel_of, ANSWER_BUDGET)
    while calls.loading:
        await asyncio.sleep(0.01)
    out["refresh_running_read"] = time.perf_counter() - started
    out["refresh_running_requests"] = sum(requests) - before
    before = sum(requests)
    out["refresh_done"] = await _answer(calls, opener, panel_of, ANSWER_BUDGET)
    out["refresh_done_requests"] = sum(requests) - before
    out["complete"] = calls.complete
    return out


class _Counting:
    """Wraps a status-source context manager and adds the source's request count up."""

    def __init__(self, inner: Any, into: list[int]) -> None:
        self.inner, self.into, self.source = inner, into, None

    async def __aenter__(self) -> Any:
        self.source = await self.inner.__aenter__()
        return self.source

    async def __aexit__(self, *exc: Any) -> Any:
        if self.source is not None:
            self.into.append(self.source.requests)
        return await self.inner.__aexit__(*exc)


def run(ctx: Context) -> BenchResult:
    result = BenchResult("jobview")
    calls = 1_000 if ctx.quick else CALLS
    moto = ctx.moto()
    bucket = moto.create_bucket(unique_bucket("jobview"))
    layout = JobLayout(ctx.status_template(), calls, seed=3)
    objects = layout.job_objects()
    for i in range(calls):
        objects.append(layout.init_object(i))
        if i < calls - RUNNING:
            objects.append(layout.status_object(i, i, exception=i % (calls // FAILED) == 1))
    moto.load(bucket, objects, str(ctx.scratch))
    client = moto.client()

    def put(items: list[tuple[str, bytes]]) -> None:
        for key, body in items:
            client.put_object(Bucket=bucket, Key=key, Body=body)

    out = asyncio.run(_measure(moto.endpoint, bucket, layout, put))
    first_s, first_read, page_bytes = out["first"]
    worst = max(out["answers"])
    result.rows.append(
        Row(
            "J1",
            f"job tab, {calls:,}-call job, first load: time to answer (statuses read by then)",
            f"{fmt_s(first_s)} ({first_read:,} of {calls - RUNNING:,} read)",
            "",
            None,
            f"< {GOAL_S:.0f} s",
            first_s < GOAL_S,
            "answers within its 0.75 s read budget with what is read so far; the page asks again",
        )
    )
    result.rows.append(
        Row(
            "J2",
            "job tab, first load: every answer until all statuses are read (worst); full read",
            f"worst answer {fmt_s(worst)}; full read {fmt_s(out['full_read'])} in {out['read_requests']:,} requests",
            "",
            None,
            f"each answer < {GOAL_S:.0f} s",
            worst < GOAL_S,
            f"the full read is one GET per status ({out['read_requests'] / out['full_read']:.0f} requests/s "
            "here): bounded by moto and the machine's load",
        )
    )
    running_s, _, _ = out["refresh_running"]
    done_s, _, page_bytes = out["refresh_done"]
    result.rows.append(
        Row(
            "J3",
            f"job tab refresh, {RUNNING} more calls finished (requests)",
            f"{fmt_s(running_s)} ({out['refresh_running_requests']} requests, all read in "
            f"{fmt_s(out['refresh_running_read'])})",
            f"re-reading every status: {calls:,}+ requests",
            None,
            f"< {GOAL_S:.0f} s",
            running_s < GOAL_S,
            "one LIST after the watermark, one GET per newly finished call",
        )
    )
    result.rows.append(
        Row(
            "J4",
            "job tab refresh, job finished (requests)",
            f"{fmt_s(done_s)} ({out['refresh_done_requests']} requests)",
            "",
            None,
            f"< {GOAL_S:.0f} s, 0 requests",
            done_s < GOAL_S and out["refresh_done_requests"] == 0 and out["complete"],
            f"page {page_bytes / 1024:.0f} KiB (SVG paths, 100 table rows)",
        )
    )
    result.notes.append(
        f"{calls:,} calls ({FAILED} failed, {RUNNING} running at first), objects written by real Lithops "
        "calls (captured status.json, each call's own ids and times); in-process api-server code path"
    )
    return result
