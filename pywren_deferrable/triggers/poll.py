"""One poll of a Lithops job's status objects, incremental across polls.

The poller remembers, per job, the highest call id below which every call is known
to be finished (the *watermark*) and lists only after it (``StartAfter``): calls
finish roughly in order, so an idle or nearly-done job costs one LIST per poll
instead of a listing of its whole prefix. Everything it remembers can be rebuilt
from storage by a fresh poller, so a triggerer restart loses nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pywren_deferrable.call_status import CallStatus, StatusParseError, parse_status
from pywren_deferrable.job import (
    JobRef,
    calls_in_listing_order,
    job_prefix,
    list_start_after,
    parse_job_object_key,
    status_key,
)
from pywren_deferrable.triggers.status import StatusSource

DEFAULT_STATUS_READ_CONCURRENCY = 16


@dataclass
class JobProgress:
    """What is known of one job of a JobRef."""

    job_id: str
    total: int
    started: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: dict[str, CallStatus] = field(default_factory=dict)
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

    def summary(self) -> str:
        return f"job {self.job_id}: {len(self.done)}/{self.total} done, {len(self.failed)} failed"


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


class JobPoller:
    """Polls the status objects of every job in a :class:`JobRef`.

    :param job: the job to watch.
    :param status_read_concurrency: at most this many ``status.json`` GETs at once.
    """

    def __init__(self, job: JobRef, *, status_read_concurrency: int = DEFAULT_STATUS_READ_CONCURRENCY):
        self.job = job
        self.progress = {j: JobProgress(job_id=j, total=job.total_calls[j]) for j in job.job_ids}
        self._semaphore = asyncio.Semaphore(status_read_concurrency)

    async def _read_status(self, source: StatusSource, job_id: str, call: str) -> CallStatus | None:
        async with self._semaphore:
            raw = await source.get(status_key(self.job.executor_id, job_id, call))
        if raw is None:  # listed but gone (cleaned by someone else): read it next poll
            return None
        try:
            return parse_status(raw, call)
        except StatusParseError as err:
            # A status we cannot parse is a failed call, not a poller crash.
            return CallStatus(call, True, f"unreadable status.json: {err}", None, None, False)

    async def _poll_job(self, source: StatusSource, progress: JobProgress) -> int:
        prefix = job_prefix(self.job.executor_id, progress.job_id)
        start_after = list_start_after(self.job.executor_id, progress.job_id, progress.last_done_call)
        finished: list[str] = []
        async for page in source.list_keys(prefix, start_after):
            for key in page:
                parsed = parse_job_object_key(prefix, key)
                if parsed is None:
                    continue
                if parsed.kind == "init":
                    progress.started.add(parsed.call)
                elif parsed.kind == "status" and parsed.call not in progress.done:
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
        for progress in self.progress.values():
            if not progress.complete:
                new_done += await self._poll_job(source, progress)
        return PollResult(jobs=tuple(self.progress.values()), new_done=new_done)
