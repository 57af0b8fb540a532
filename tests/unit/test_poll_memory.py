"""A poller's memory per job is bounded by what is running, not by the job's size.

The calls up to the watermark are one call id (``CallSet``); only finished calls beyond
the first unfinished one, and running ones, are stored. And each poll lists one page.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from lithops_objects import write_call, write_job_files

from pywren_deferrable.job import (
    JobRef,
    StorageLocation,
    call_id,
    calls_in_listing_order,
    next_call_in_listing_order,
)
from pywren_deferrable.storages.base import LIST_PAGE_SIZE
from pywren_deferrable.triggers.poll import JobPoller, JobProgress
from pywren_deferrable.triggers.status import LocalStatusSource

EXEC = "abc123-0"
BUCKET = "storage"


def stored(progress: JobProgress) -> int:
    """Entries the poller keeps for ``progress``."""
    return len(progress.done.extra) + len(progress.started.extra) + len(progress.started_at)


@given(st.integers(min_value=0, max_value=250_000))
@settings(max_examples=25, deadline=None)
def test_next_call_walks_the_listing_order(total: int) -> None:
    """The successor function agrees with the sorted listing, below and beyond 100,000
    calls (where ids grow a digit)."""
    order = calls_in_listing_order(min(total, 10)) if total <= 10 else None
    if order is not None:
        walked = []
        call = next_call_in_listing_order(None, total)
        while call is not None:
            walked.append(call)
            call = next_call_in_listing_order(call, total)
        assert walked == order
    else:
        # Check the successor of a sample of ids against the full sorted order.
        full = calls_in_listing_order(total)
        rnd = random.Random(total)
        for index in {0, len(full) - 1, *(rnd.randrange(len(full)) for _ in range(50))}:
            expected = full[index + 1] if index + 1 < len(full) else None
            assert next_call_in_listing_order(full[index], total) == expected


def test_next_call_past_a_million_calls() -> None:
    assert next_call_in_listing_order("100000", 1_000_001) == "1000000"
    assert next_call_in_listing_order("1000000", 1_000_001) == "100001"
    assert next_call_in_listing_order("100000", 1_000_000) == "100001"
    assert next_call_in_listing_order("999999", 1_000_000) is None


def test_next_call_walks_every_call_of_large_jobs() -> None:
    for total in (100_000, 100_001, 100_011, 123_457):
        walked = []
        call = next_call_in_listing_order(None, total)
        while call is not None:
            walked.append(call)
            call = next_call_in_listing_order(call, total)
        assert walked == calls_in_listing_order(total)


@given(
    total=st.integers(min_value=1, max_value=100_000),
    window=st.integers(min_value=1, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32),
    finished=st.integers(min_value=0, max_value=3_000),
)
@settings(max_examples=60, deadline=None)
def test_done_set_stores_only_what_is_beyond_the_first_gap(
    total: int, window: int, seed: int, finished: int
) -> None:
    """Calls finishing roughly in order (shuffled within windows of ``window`` calls) of a
    job of up to 100,000 calls: the set answers as a set would, and keeps only the
    finished calls beyond the first unfinished one."""
    rnd = random.Random(seed)
    count = min(finished, total)
    ids = [call_id(i) for i in range(count)]
    for start in range(0, count, window):
        chunk = ids[start : start + window]
        rnd.shuffle(chunk)
        ids[start : start + window] = chunk
    progress = JobProgress(job_id="M000", total=total)
    seen: set[str] = set()
    order = calls_in_listing_order(total) if total <= 100_000 else []
    for call in ids:
        progress.started.add(call)
        progress.started_at[call] = 1.0
        progress.finished(call)
        progress.advance_watermark()
        seen.add(call)
    assert len(progress.done) == len(seen)
    for call in rnd.sample(order, min(50, len(order))):
        assert (call in progress.done) == (call in seen)
    first_gap = next((i for i, c in enumerate(order) if c not in seen), len(order))
    beyond = sum(1 for c in seen if order.index(c) > first_gap) if len(seen) < 500 else None
    if beyond is not None:
        assert len(progress.done.extra) == beyond
    # Shuffled within windows: never more stored than a window's worth per set.
    assert stored(progress) <= 3 * window
    assert progress.complete == (len(seen) == total)


async def test_hundred_thousand_call_job_keeps_only_running_calls(tmp_path) -> None:
    """A 100,000-call job with its first 3,000 calls done (out of order within waves of
    100) and 40 running: each poll lists one page, and what the poller keeps stays below
    a page's worth, not 3,000 entries (let alone 100,000)."""
    root = str(tmp_path)
    write_job_files(root, BUCKET, EXEC, "M000")
    storage = StorageLocation(kind="localhost", bucket=BUCKET, backend="localhost", root=root)
    job = JobRef(
        executor_id=EXEC,
        job_ids=("M000",),
        total_calls={"M000": 100_000},
        storage=storage,
        call_type="map",
        engine_version="3.8.0",
    )
    source = LocalStatusSource(root, BUCKET)
    poller = JobPoller(job, start_timeout=None)
    rnd = random.Random(1)
    peak = 0
    for wave in range(30):
        calls = list(range(wave * 100, wave * 100 + 100))
        rnd.shuffle(calls)
        for i in calls:
            write_call(root, BUCKET, EXEC, "M000", call_id(i), value=i)
        for i in range(wave * 100 + 100, wave * 100 + 140):
            write_call(root, BUCKET, EXEC, "M000", call_id(i), running=True)
        for _ in range(3):  # a full cycle (keys after the watermark span pages)
            result = await poller.poll(source)
            peak = max(peak, stored(poller.progress["M000"]))
    progress = poller.progress["M000"]
    assert result.done == 3_000 and not result.complete
    assert progress.running == 40
    assert progress.last_done_call == call_id(2_999)
    assert peak <= LIST_PAGE_SIZE, peak
    assert stored(progress) <= 2 * 40
