"""JobPoller on Lithops' localhost storage layout: counting, incremental listing, lost calls."""

from __future__ import annotations

from typing import Any

import pytest
from lithops_objects import write_call, write_job_files

from pywren_deferrable.job import JobRef, StorageLocation, call_id
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import LocalStatusSource

EXEC = "abc123-0"
BUCKET = "storage"


def make_job(root: str, total: int, **kwargs: Any) -> JobRef:
    storage = StorageLocation(kind="localhost", bucket=BUCKET, backend="localhost", root=root)
    return JobRef(
        executor_id=EXEC,
        job_ids=("M000",),
        total_calls={"M000": total},
        storage=storage,
        call_type="map",
        engine_version="3.8.0",
        **kwargs,
    )


class RecordingSource(LocalStatusSource):
    """Records the StartAfter of every listing."""

    def __init__(self, root: str, bucket: str) -> None:
        super().__init__(root, bucket)
        self.start_afters: list[str] = []

    def list_objects(self, prefix: str, start_after: str = ""):  # type: ignore[override]
        self.start_afters.append(start_after)
        return super().list_objects(prefix, start_after)


async def test_counts_and_lists_incrementally(tmp_path) -> None:
    root = str(tmp_path)
    write_job_files(root, BUCKET, EXEC, "M000")
    job = make_job(root, 5)
    source = RecordingSource(root, BUCKET)
    poller = JobPoller(job)
    for i in (0, 1, 3):
        write_call(root, BUCKET, EXEC, "M000", call_id(i), value=i * 10)
    write_call(root, BUCKET, EXEC, "M000", call_id(2), running=True)
    first = await poller.poll(source)
    assert (first.done, first.total, first.new_done, first.complete) == (3, 5, 3, False)
    assert first.summary() == "job M000: 3/5 done, 1 running, 0 failed"
    assert poller.progress["M000"].started == {"00000", "00001", "00002", "00003"}
    # 00000 and 00001 are done, 00002 is not: the next listing starts after 00001.
    second = await poller.poll(source)
    assert second.new_done == 0
    assert source.start_afters == ["", f"lithops.jobs/{EXEC}-M000/00001/~"]
    write_call(root, BUCKET, EXEC, "M000", call_id(2), value=20)
    write_call(root, BUCKET, EXEC, "M000", call_id(4), error="ValueError: boom")
    third = await poller.poll(source)
    assert third.complete and third.new_done == 2
    assert third.failed["M000"]["00004"].error == "ValueError: boom"


async def test_started_call_without_status_past_timeout_is_lost(tmp_path) -> None:
    root = str(tmp_path)
    now = 1_000_000.0
    job = make_job(root, 2, submitted_at=now - 100, call_timeout=30.0)
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    write_call(root, BUCKET, EXEC, "M000", "00001", running=True, started=now - 50)
    source = LocalStatusSource(root, BUCKET)
    # 50 s after it started: within 30 s timeout + 30 s grace.
    assert not (await JobPoller(job, clock=lambda: now).poll(source)).failed
    # 70 s after: lost.
    late = await JobPoller(job, clock=lambda: now + 20).poll(source)
    assert late.complete
    error = late.failed["M000"]["00001"].error
    assert error is not None and "wrote no status within its 30s timeout + 30s grace" in error


async def test_calls_that_never_start_are_lost_only_when_nothing_moves(tmp_path) -> None:
    root = str(tmp_path)
    clock = [1_000_000.0]
    job = make_job(root, 3, submitted_at=clock[0])
    source = LocalStatusSource(root, BUCKET)
    poller = JobPoller(job, start_timeout=600, clock=lambda: clock[0])
    clock[0] += 500
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)  # progress at t+500
    assert not (await poller.poll(source)).failed
    clock[0] += 500  # 1000 s after submission, but only 500 s since the last progress
    assert not (await poller.poll(source)).failed
    clock[0] += 200  # 700 s without progress
    result = await poller.poll(source)
    assert sorted(result.failed["M000"]) == ["00001", "00002"]
    assert "never started" in (result.failed["M000"]["00001"].error or "")


async def test_unreadable_status_is_a_failed_call(tmp_path) -> None:
    root = str(tmp_path)
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    path = tmp_path / BUCKET / f"lithops.jobs/{EXEC}-M000/00000/status.json"
    path.write_text('{"exception": false, "result": "__import__(\'os\')"}')
    result = await JobPoller(make_job(root, 1)).poll(LocalStatusSource(root, BUCKET))
    assert result.complete
    assert "unreadable status.json" in (result.failed["M000"]["00000"].error or "")


@pytest.mark.parametrize("total", [3, 100_001])
async def test_watermark_follows_listing_order(tmp_path, total: int) -> None:
    """With more than 100,000 calls, 6-digit ids list among 5-digit ones; the watermark
    must not pass a call that is not done."""
    job = make_job(str(tmp_path), total)
    poller = JobPoller(job)
    progress = poller.progress["M000"]
    order = progress.order
    progress.done.update(order[: min(total, 3)])
    progress.advance_watermark()
    assert progress.last_done_call == order[min(total, 3) - 1]
    if total > 100_000:
        progress.done.update(order[: order.index("10000") + 1])  # just before "100000"
        progress.advance_watermark()
        assert progress.last_done_call == "10000" and order[progress.watermark + 1] == "100000"


async def test_calls_not_handed_to_the_backend_are_never_late_to_start(tmp_path) -> None:
    """Calls a dispatch plan still holds (pywren_deferrable.dispatch) have not been invoked:
    a long first wave must not get them declared lost."""
    root = str(tmp_path)
    clock = [1_000_000.0]
    job = make_job(root, 3, submitted_at=clock[0])
    source = LocalStatusSource(root, BUCKET)
    poller = JobPoller(job, start_timeout=600, clock=lambda: clock[0])
    poller.not_invoked = {"M000": {"00001", "00002"}}
    write_call(root, BUCKET, EXEC, "M000", "00000", value=1)
    assert not (await poller.poll(source)).failed
    clock[0] += 700  # no progress for longer than start_timeout
    assert not (await poller.poll(source)).failed
    poller.not_invoked = {"M000": {"00002"}}  # 00001 was dispatched and never started
    result = await poller.poll(source)
    assert sorted(result.failed["M000"]) == ["00001"]


async def test_one_page_per_poll_walks_a_long_running_tail(tmp_path) -> None:
    """1,100 calls running (more than a page of keys after the watermark): each poll lists
    one page, the next continues where it ended, then the cycle starts again at the
    watermark; a call finishing anywhere is seen within one cycle."""
    root = str(tmp_path)
    write_job_files(root, BUCKET, EXEC, "M000")
    job = make_job(root, 1_200)
    for i in range(1_100):
        write_call(root, BUCKET, EXEC, "M000", call_id(i), running=True)
    source = RecordingSource(root, BUCKET)
    poller = JobPoller(job)
    first = await poller.poll(source)
    progress = poller.progress["M000"]
    assert progress.resume_after == f"lithops.jobs/{EXEC}-M000/00999/0123456789ab.init"
    assert first.jobs[0].running == 1_000
    write_call(root, BUCKET, EXEC, "M000", call_id(3), value=3)  # in the first page
    write_call(root, BUCKET, EXEC, "M000", call_id(1_050), value=1)  # in the second
    second = await poller.poll(source)
    assert second.jobs[0].running == 1_100 - 1 and second.new_done == 1  # 01050, found by the continuation
    third = await poller.poll(source)
    assert third.new_done == 1 and third.done == 2  # 00003, back at the watermark
    assert source.start_afters == ["", f"lithops.jobs/{EXEC}-M000/00999/0123456789ab.init", ""]
    # Calls 00000-00002 finish: the watermark passes them and the listing starts after it.
    for i in range(3):
        write_call(root, BUCKET, EXEC, "M000", call_id(i), value=i)
    await poller.poll(source)
    await poller.poll(source)
    assert progress.last_done_call == "00003"
    assert len(progress.done.extra) == 1  # 01050 only: 00000-00003 are the watermark
    assert source.start_afters[-1] in ("", f"lithops.jobs/{EXEC}-M000/00003/~")
