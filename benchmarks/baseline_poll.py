"""The previous poll path (before issue 15), kept as the baseline of the "scale" benchmark.

A verbatim copy of ``pywren_deferrable/triggers/poll.py`` as it was: every key after the
watermark listed every poll (all pages), the done calls kept in full sets. Benchmarks
run it over the aiobotocore source (``S3StatusSource`` without a lean reader), as the
trigger did. It is not part of the package.

One poll of a job's status objects, incremental across polls.

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

from pywren_deferrable.call_status import CallStatus, parse_followed_status
from pywren_deferrable.job import (
    JobRef,
    calls_in_listing_order,
    job_key,
    job_prefix,
    list_start_after,
    parse_job_object_key,
    status_key,
)
from pywren_deferrable.lithops_futures import FutureRef
from pywren_deferrable.triggers.status import StatusSource

DEFAULT_STATUS_READ_CONCURRENCY = 16
# Lithops itself declares a call lost 5 s after its timeout; storage clocks and listing
# delays need more slack than that.
DEFAULT_GRACE_PERIOD = 30.0
# A job that makes no progress at all for this long while calls have not started is stuck.
DEFAULT_START_TIMEOUT = 600.0
# Statuses larger than this (those of calls that returned many futures) are parsed in a
# worker thread: walking a pickle costs ~1 s per MiB, too long for the event loop.
OFFLOAD_PARSE_BYTES = 64 * 1024


@dataclass
class JobProgress:
    """What is known of one job of a JobRef, or of an inner job whose futures a call
    returned.

    :param job_id: the job id (``M000``).
    :param total: how many of its calls are waited for.
    :param executor_id: the job's executor when it is an inner job (``None``: the JobRef's).
    :param calls: the calls waited for, when not all ``total`` first ones (an inner job:
        the calls whose futures were returned).
    :param returned_by: the call that returned an inner job's futures (``M000/00001``).
    """

    job_id: str
    total: int
    executor_id: str | None = None
    calls: tuple[str, ...] | None = None
    returned_by: str | None = None
    started: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: dict[str, CallStatus] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    # When the newest status.json seen was written (storage clock, epoch seconds).
    last_status_at: float = 0.0
    # Every call up to order[watermark] (in listing order) is done.
    watermark: int = -1
    order: list[str] = field(default_factory=list)
    # The calls waited for when not all of the job's (None: all).
    wanted: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.calls is not None:
            self.wanted = frozenset(self.calls)
            self.order = sorted(self.wanted)  # listing order (see calls_in_listing_order)
            self.total = len(self.order)
        else:
            self.order = calls_in_listing_order(self.total)

    @property
    def name(self) -> str:
        """The job's id for the JobRef's own jobs, its job key for inner ones."""
        return self.job_id if self.executor_id is None else job_key(self.executor_id, self.job_id)

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
            f"job {self.name}: {len(self.done)}/{self.total} done, {self.running} running, "
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
        """Failed calls by job (inner jobs by their job key)."""
        return {j.name: dict(j.failed) for j in self.jobs if j.failed}

    @property
    def inner_calls(self) -> int:
        """How many calls of inner jobs (futures returned by calls) are followed."""
        return sum(j.total for j in self.jobs if j.executor_id is not None)

    def summary(self) -> str:
        own = [j.summary() for j in self.jobs if j.executor_id is None]
        inner = [j for j in self.jobs if j.executor_id is not None]
        if inner:
            done = sum(len(j.done) for j in inner)
            failed = sum(len(j.failed) for j in inner)
            own.append(
                f"{len(inner)} inner job(s) (futures returned by calls): "
                f"{done}/{sum(j.total for j in inner)} done, {failed} failed"
            )
        return "; ".join(own)


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
        # Keyed by JobProgress.name: the JobRef's jobs first, inner jobs as they are found.
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

    def _executor(self, progress: JobProgress) -> str:
        return progress.executor_id or self.job.executor_id

    async def _read_status(self, source: StatusSource, progress: JobProgress, call: str) -> CallStatus | None:
        executor_id = self._executor(progress)
        async with self._semaphore:
            raw = await source.get(status_key(executor_id, progress.job_id, call, self.job.engine))
        if raw is None:  # listed but gone (cleaned by someone else): read it next poll
            return None
        future = FutureRef(executor_id, progress.job_id, call)
        if len(raw) > OFFLOAD_PARSE_BYTES:  # returned futures, say: parse off the event loop
            return await asyncio.to_thread(
                parse_followed_status, raw, future, self.job.engine, self.job.storage.bucket
            )
        # A status we cannot parse (or futures we cannot follow) is a failed call, not a poller crash.
        return parse_followed_status(raw, future, self.job.engine, self.job.storage.bucket)

    def _follow(self, parent: JobProgress, call: str, futures: tuple[FutureRef, ...]) -> None:
        """Wait for the futures a call returned too: add their calls to the poll."""
        returned_by = f"{parent.name}/{call}"
        jobs: dict[tuple[str, str], list[str]] = {}
        for future in futures:
            jobs.setdefault((future.executor_id, future.job_id), []).append(future.call_id)
        for (executor_id, job_id), calls in jobs.items():
            name = job_key(executor_id, job_id, self.job.engine)
            known = self.progress.get(name)
            if known is not None:  # the same job's futures again: wait for the union
                calls = sorted(set(calls) | set(known.order))
                if len(calls) == known.total:
                    continue
            progress = JobProgress(
                job_id=job_id,
                total=len(calls),
                executor_id=executor_id,
                calls=tuple(calls),
                returned_by=returned_by,
            )
            if known is not None:  # keep what is known of the calls already followed
                progress.started, progress.done = known.started, known.done
                progress.failed, progress.started_at = known.failed, known.started_at
            self.progress[name] = progress

    async def _poll_job(self, source: StatusSource, progress: JobProgress) -> int:
        executor_id = self._executor(progress)
        engine = self.job.engine
        prefix = job_prefix(executor_id, progress.job_id, engine)
        start_after = list_start_after(executor_id, progress.job_id, progress.last_done_call, engine)
        finished: list[str] = []
        async for page in source.list_objects(prefix, start_after):
            for key, modified in page:
                parsed = parse_job_object_key(prefix, key)
                if parsed is None or (progress.wanted is not None and parsed.call not in progress.wanted):
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
        statuses = await asyncio.gather(*(self._read_status(source, progress, c) for c in finished))
        new_done = 0
        for status in statuses:
            if status is None:
                continue
            progress.done.add(status.call_id)
            progress.started.add(status.call_id)
            new_done += 1
            if status.failed:
                progress.failed[status.call_id] = status
            elif status.new_futures:
                self._follow(progress, status.call_id, status.new_futures)
        progress.advance_watermark()
        return new_done

    async def poll(self, source: StatusSource) -> PollResult:
        """List what changed since the last poll and read the new statuses; inner jobs
        found on the way are polled in the same round."""
        new_done = 0
        now = self._clock()
        polled: set[str] = set()
        while True:
            todo = [p for name, p in self.progress.items() if name not in polled and not p.complete]
            if not todo:
                break
            for progress in todo:
                polled.add(progress.name)
                new_done += await self._poll_job(source, progress)
        seen = sum(len(p.started) + len(p.done) for p in self.progress.values())
        if seen != self._seen:
            self._seen, self._last_change = seen, now
        for progress in self.progress.values():
            if not progress.complete:
                self._declare_lost_calls(progress, now)
                progress.advance_watermark()
        return PollResult(jobs=tuple(self.progress.values()), new_done=new_done)
