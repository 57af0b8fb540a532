"""The trigger's progress lines: running count, ETA, and when a line is worth writing."""

from __future__ import annotations

from pywren_deferrable.job import call_id
from pywren_deferrable.triggers.poll import JobProgress, PollResult
from pywren_deferrable.triggers.progress import ProgressLog, format_duration


def progress(total: int, done: int, running: int, failed: int = 0) -> JobProgress:
    job = JobProgress(job_id="M000", total=total)
    job.started.update(call_id(i) for i in range(done + running))
    for i in range(done):
        job.finished(call_id(i))
    job.advance_watermark()
    job.failed = {call_id(i): None for i in range(failed)}  # type: ignore[misc]
    return job


def poll(*jobs: JobProgress) -> PollResult:
    return PollResult(jobs=jobs, new_done=0)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 45.4, 130, 3900, -3)] == ["0s", "45s", "2m10s", "1h05m", "0s"]


def test_line_has_running_count_and_an_eta_once_a_rate_is_seen() -> None:
    log = ProgressLog(min_interval=30)
    assert log.update(poll(progress(1000, 0, 40)), now=100.0) == "job M000: 0/1000 done, 40 running, 0 failed"
    # 370 calls in 48.1 s: 630 left at that rate take 81.9 s.
    line = log.update(poll(progress(1000, 370, 40)), now=148.1)
    assert line == "job M000: 370/1000 done, 40 running, 0 failed, ETA 1m22s"
    done = log.update(poll(progress(1000, 1000, 0)), now=200.0)
    assert done == "job M000: 1000/1000 done, 0 running, 0 failed"  # no ETA once complete


def test_moving_counts_are_logged_at_most_every_interval() -> None:
    log = ProgressLog(min_interval=30)
    assert log.update(poll(progress(100, 0, 10)), now=0.0) is not None  # the first line
    assert log.update(poll(progress(100, 5, 10)), now=10.0) is None  # counts moved, too soon
    assert log.update(poll(progress(100, 5, 10)), now=40.0) is None  # due, but nothing moved
    assert log.update(poll(progress(100, 9, 10)), now=41.0) is not None  # due and moved
    assert log.update(poll(progress(100, 12, 10)), now=42.0) is None


def test_state_changes_are_logged_at_once() -> None:
    log = ProgressLog(min_interval=3600)
    assert log.update(poll(progress(100, 0, 0)), now=0.0) == "job M000: 0/100 done, 0 running, 0 failed"
    assert log.update(poll(progress(100, 0, 3)), now=1.0) is not None  # pending -> running
    assert log.update(poll(progress(100, 4, 3)), now=2.0) is None
    assert log.update(poll(progress(100, 5, 3, failed=1)), now=3.0) is not None  # a failure
    reduce_job = JobProgress(job_id="R000", total=1)
    both = log.update(poll(progress(100, 100, 0, failed=1), reduce_job), now=4.0)
    assert both == "job M000: 100/100 done, 0 running, 1 failed; job R000: 0/1 done, 0 running, 0 failed"
