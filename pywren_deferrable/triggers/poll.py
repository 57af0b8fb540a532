"""One poll of a job's status objects, incremental across polls.

The poller remembers, per job, the highest call id below which every call is known
to be finished (the *watermark*) and lists only after it (``StartAfter``): calls
finish roughly in order, so an idle or nearly-done job costs one LIST per poll
instead of a listing of its whole prefix. Everything it remembers can be rebuilt
from storage by a fresh poller, so a triggerer restart loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pywren_deferrable.call_status import CallStatus, StatusParseError, parse_call_status
from pywren_deferrable.job import JobRef, calls_in_listing_order, parse_job_object_key
from pywren_deferrable.triggers.status import StatusSource

DEFAULT_STATUS_READ_CONCURRENCY = 16
# Lithops itself declares a call lost 5 s after its timeout; storage clocks and listing
# delays need more slack than that.
DEFAULT_GRACE_PERIOD = 30.0
# A job that makes no progress at all for this long while calls have not started is stuck.
DEFAULT_START_TIMEOUT = 600.0


@dataclass
class JobProgress:
    """What is known of one job of a JobRef."""

    job_id: str
    total: int
    started: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: dict[str, CallStatus] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    # When the newest status.json seen was written (storage clock, epoch seconds).
    last_status_at: float = 0.0
    # Every call up to order[watermark] (in listing order) is done.
    watermark: int = -1
    order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.order = calls_in_listing_order(self.total)

    @property
    def complete(self) -> bool:
        return len(self.done) >= self.total

    @property
    def last_done_call(self) -> str | None:
        """The call the next listing starts after, if any."""
        return self.order[self.watermark] if self.watermark >= 0 else None

    def advance_watermark(self) -> None:
        while self.watermark + 1 < self.total and self.order[self.watermark + 1] in self.done:
            self.watermark += 1

    @property
    def running(self) -> int:
        """Calls that started and have not ended."""
        return len(self.started - self.done)

    def summary(self) -> str:
        return (
            f"job {self.job_id}: {len(self.done)}/{self.total} done, {self.running} running, "
            f"{len(self.failed)} failed"
        )


@dataclass(frozen=True)
class PollResult:
    """The state of the whole JobRef after one poll."""

    jobs: tuple[JobProgress, ...]
    new_done: int

    @property
    def done(self) -> int:
        return sum(len(j.done) for j in self.jobs)

    @property
    def total(self) -> int:
        return sum(j.total for j in self.jobs)

    @property
    def complete(self) -> bool:
        return all(j.complete for j in self.jobs)

    @property
    def failed(self) -> dict[str, dict[str, CallStatus]]:
        return {j.job_id: dict(j.failed) for j in self.jobs if j.failed}

    def summary(self) -> str:
        return "; ".join(j.summary() for j in self.jobs)


def lost_call(call: str, reason: str) -> CallStatus:
    """A call that will never write its status: reported as a failed call."""
    return CallStatus(call, True, reason, None, None, False)


class JobPoller:
    """Polls the status objects of every job in a :class:`JobRef`.

    Besides finished calls it reports lost ones as failed: calls that started (``.init``)
    but wrote no status within the job's ``call_timeout`` plus ``grace_period`` (their
    worker died or hung), and, once the whole job has made no progress for
    ``start_timeout`` seconds, the calls that never started.

    :param job: the job to watch.
    :param status_read_concurrency: at most this many ``status.json`` GETs at once.
    :param grace_period: seconds past a call's timeout before it is declared lost.
    :param start_timeout: seconds without any progress before unstarted calls are lost
        (``None``: never).
    :param clock: the time source (epoch seconds), for tests.
    """

    def __init__(
        self,
        job: JobRef,
        *,
        status_read_concurrency: int = DEFAULT_STATUS_READ_CONCURRENCY,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        start_timeout: float | None = DEFAULT_START_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ):
        self.job = job
        self.progress = {j: JobProgress(job_id=j, total=job.total_calls[j]) for j in job.job_ids}
        self._semaphore = asyncio.Semaphore(status_read_concurrency)
        self.grace_period = grace_period
        self.start_timeout = start_timeout
        self._clock = clock
        self._last_change = job.submitted_at or clock()
        self._seen = 0
        # Calls not handed to the backend yet, per job (a dispatch plan's pending ones):
        # they cannot be late for a start (see pywren_deferrable.dispatch).
        self.not_invoked: dict[str, set[str]] = {}

    def _declare_lost_calls(self, progress: JobProgress, now: float) -> None:
        """Mark as failed the calls that will never report (see the class docstring)."""
        if self.job.call_timeout is not None:
            limit = self.job.call_timeout + self.grace_period
            for call, started in progress.started_at.items():
                if call not in progress.done and now - started > limit:
                    progress.done.add(call)
                    progress.failed[call] = lost_call(
                        call,
                        f"started {now - started:.0f}s ago and wrote no status within its "
                        f"{self.job.call_timeout:.0f}s timeout + {self.grace_period:.0f}s grace "
                        "(it timed out, or its worker died)",
                    )
        if self.start_timeout is not None and now - self._last_change > self.start_timeout:
            waiting = self.not_invoked.get(progress.job_id, set())
            for call in progress.order:
                if call not in progress.done and call not in progress.started and call not in waiting:
                    progress.done.add(call)
                    progress.failed[call] = lost_call(
                        call,
                        f"never started: the job made no progress for {now - self._last_change:.0f}s "
                        f"(start_timeout {self.start_timeout:.0f}s)",
                    )

    async def _read_status(self, source: StatusSource, job_id: str, call: str) -> CallStatus | None:
        async with self._semaphore:
            raw = await source.get(self.job.status_key(job_id, call))
        if raw is None:  # listed but gone (cleaned by someone else): read it next poll
            return None
        try:
            return parse_call_status(raw, call, self.job.engine)
        except StatusParseError as err:
            # A status we cannot parse is a failed call, not a poller crash.
            return CallStatus(call, True, f"unreadable status.json: {err}", None, None, False)

    async def _poll_job(self, source: StatusSource, progress: JobProgress) -> int:
        prefix = self.job.job_prefix(progress.job_id)
        start_after = self.job.list_start_after(progress.job_id, progress.last_done_call)
        finished: list[str] = []
        async for page in source.list_objects(prefix, start_after):
            for key, modified in page:
                parsed = parse_job_object_key(prefix, key)
                if parsed is None:
                    continue
                if parsed.kind == "init":
                    progress.started.add(parsed.call)
                    # A retried call has several .init objects: its latest start counts.
                    progress.started_at[parsed.call] = max(
                        progress.started_at.get(parsed.call, 0.0), modified
                    )
                elif parsed.kind == "status" and parsed.call not in progress.done:
                    progress.last_status_at = max(progress.last_status_at, modified)
                    finished.append(parsed.call)
            await asyncio.sleep(0)  # let other triggers run between pages of a huge listing
        statuses = await asyncio.gather(*(self._read_status(source, progress.job_id, c) for c in finished))
        new_done = 0
        for status in statuses:
            if status is None:
                continue
            progress.done.add(status.call_id)
            progress.started.add(status.call_id)
            new_done += 1
            if status.failed:
                progress.failed[status.call_id] = status
        progress.advance_watermark()
        return new_done

    async def poll(self, source: StatusSource) -> PollResult:
        """List what changed since the last poll and read the new statuses."""
        new_done = 0
        now = self._clock()
        for progress in self.progress.values():
            if not progress.complete:
                new_done += await self._poll_job(source, progress)
        seen = sum(len(p.started) + len(p.done) for p in self.progress.values())
        if seen != self._seen:
            self._seen, self._last_change = seen, now
        for progress in self.progress.values():
            if not progress.complete:
                self._declare_lost_calls(progress, now)
                progress.advance_watermark()
        return PollResult(jobs=tuple(self.progress.values()), new_done=new_done)
