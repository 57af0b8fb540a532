"""One poll of a job's status objects, incremental across polls.

The poller remembers, per job, the highest call id below which every call is known
to be finished (the *watermark*) and lists only after it (``StartAfter``): calls
finish roughly in order, so an idle or nearly-done job costs one LIST per poll
instead of a listing of its whole prefix. Everything it remembers can be rebuilt
from storage by a fresh poller, so a triggerer restart loses nothing.

Each poll of a job lists **one page** (1,000 keys on S3): while more than a page of keys
follows the watermark (more than ~1,000 calls running), successive polls walk the rest
from where the last page stopped, then start again at the watermark. A poll thus costs
one request and a bounded amount of CPU whatever the job's size, and each finished call
is seen within one cycle (two polls with 1,000 running). What a poller keeps per job is
bounded the same way: the calls up to the watermark are one call id, not a set (see
:class:`CallSet`), so a 100,000-call job keeps only its running calls and the finished
ones beyond the watermark.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from pywren_deferrable.call_status import CallStatus, parse_followed_status
from pywren_deferrable.job import (
    JobRef,
    calls_in_listing_order,
    job_key,
    job_prefix,
    list_start_after,
    next_call_in_listing_order,
    parse_job_object_key,
    status_key,
)
from pywren_deferrable.lithops_futures import FutureRef
from pywren_deferrable.triggers.status import LIST_PAGE_SIZE, ListedObject, StatusSource

DEFAULT_STATUS_READ_CONCURRENCY = 16
# Lithops itself declares a call lost 5 s after its timeout; storage clocks and listing
# delays need more slack than that.
DEFAULT_GRACE_PERIOD = 30.0
# A job that makes no progress at all for this long while calls have not started is stuck.
DEFAULT_START_TIMEOUT = 600.0
# Statuses larger than this (those of calls that returned many futures) are parsed in a
# worker thread: walking a pickle costs ~1 s per MiB, too long for the event loop.
OFFLOAD_PARSE_BYTES = 64 * 1024


class CallSet(AbstractSet[str]):
    """A set of a job's calls kept as a watermark plus sparse exceptions.

    Every call up to the job's watermark (in listing order) is a member without being
    stored; only members beyond it are (:attr:`extra`). Calls finish roughly in order, so
    this stays as small as the number of calls running, whatever the job's size.
    It reads like a ``set`` (``in``, ``len``, iteration, comparisons) and grows with
    :meth:`add`; iterating enumerates the calls up to the watermark, so the poll path only
    ever tests membership.
    """

    def __init__(self, progress: JobProgress) -> None:
        self._progress = progress
        self.extra: set[str] = set()

    def __contains__(self, call: object) -> bool:
        if not isinstance(call, str):
            return False
        return call in self.extra or self._progress.covers(call)

    def __len__(self) -> int:
        return self._progress.watermark + 1 + len(self.extra)

    def __iter__(self) -> Iterator[str]:
        yield from self._progress.calls_through_watermark()
        yield from self.extra

    def __repr__(self) -> str:
        return f"CallSet(through={self._progress.last_done_call!r}, extra={sorted(self.extra)!r})"

    def add(self, call: str) -> None:
        if not self._progress.covers(call):
            self.extra.add(call)

    def update(self, calls: Iterable[str]) -> None:
        for call in calls:
            self.add(call)


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

    def __init__(
        self,
        job_id: str,
        total: int,
        executor_id: str | None = None,
        calls: tuple[str, ...] | None = None,
        returned_by: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.total = total
        self.executor_id = executor_id
        self.calls = calls
        self.returned_by = returned_by
        # Every call up to (and including) last_done_call, in listing order, is done;
        # watermark counts them, minus one.
        self.watermark = -1
        self.last_done_call: str | None = None
        self.started = CallSet(self)
        self.done = CallSet(self)
        self.failed: dict[str, CallStatus] = {}
        # When each running call (beyond the watermark, not done) started.
        self.started_at: dict[str, float] = {}
        # When the newest status.json seen was written (storage clock, epoch seconds).
        self.last_status_at = 0.0
        # Where the next listing continues (the last key of a full page), if the last
        # poll did not reach the end of the job's keys.
        self.resume_after: str | None = None
        # The calls waited for when not all of the job's (None: all), in listing order.
        self.wanted: frozenset[str] | None = None
        self._wanted_order: tuple[str, ...] = ()
        if calls is not None:
            self.wanted = frozenset(calls)
            self._wanted_order = tuple(sorted(self.wanted))  # listing order
            self.total = len(self._wanted_order)

    @property
    def name(self) -> str:
        """The job's id for the JobRef's own jobs, its job key for inner ones."""
        return self.job_id if self.executor_id is None else job_key(self.executor_id, self.job_id)

    @property
    def order(self) -> list[str]:
        """Every call waited for, in listing order (built on demand: O(total))."""
        return list(self._wanted_order) if self.wanted is not None else calls_in_listing_order(self.total)

    def next_call(self, call: str | None) -> str | None:
        """The call waited for that is listed right after ``call`` (``None``: the first)."""
        if self.wanted is None:
            return next_call_in_listing_order(call, self.total)
        index = 0 if call is None else bisect.bisect_right(self._wanted_order, call)
        return self._wanted_order[index] if index < len(self._wanted_order) else None

    def covers(self, call: str) -> bool:
        """Whether ``call`` is at or below the watermark (so done). Call ids sort in
        listing order as plain strings (see :func:`calls_in_listing_order`)."""
        return (
            self.last_done_call is not None
            and call <= self.last_done_call
            and (self.wanted is None or call in self.wanted)
        )

    def calls_through_watermark(self) -> Iterator[str]:
        call = None
        for _ in range(self.watermark + 1):
            call = self.next_call(call)
            assert call is not None
            yield call

    def calls_after_watermark(self) -> Iterator[str]:
        call = self.next_call(self.last_done_call)
        while call is not None:
            yield call
            call = self.next_call(call)

    @property
    def complete(self) -> bool:
        return len(self.done) >= self.total

    def advance_watermark(self) -> None:
        """Move the watermark past the calls known done, forgetting them one by one."""
        moved = False
        while True:
            following = self.next_call(self.last_done_call)
            if following is None or following not in self.done.extra:
                break
            self.last_done_call = following
            self.watermark += 1
            self.done.extra.discard(following)
            self.started.extra.discard(following)
            self.started_at.pop(following, None)
            moved = True
        if moved:
            # A set keeps the table of its largest size: copies fit what is left (a first
            # poll that read 900 statuses would otherwise hold 900 slots per set).
            self.done.extra = set(self.done.extra)
            self.started.extra = set(self.started.extra)
            self.started_at = dict(self.started_at)

    def finished(self, call: str) -> None:
        """``call`` ended (or was declared lost)."""
        self.done.add(call)
        self.started.add(call)
        self.started_at.pop(call, None)

    @property
    def running(self) -> int:
        """Calls that started and have not ended."""
        return len(self.started.extra - self.done.extra)

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
            for call, started in list(progress.started_at.items()):
                if call not in progress.done and now - started > limit:
                    progress.finished(call)
                    progress.failed[call] = lost_call(
                        call,
                        f"started {now - started:.0f}s ago and wrote no status within its "
                        f"{self.job.call_timeout:.0f}s timeout + {self.grace_period:.0f}s grace "
                        "(it timed out, or its worker died)",
                    )
        if self.start_timeout is not None and now - self._last_change > self.start_timeout:
            waiting = self.not_invoked.get(progress.job_id, set())
            never = [
                c for c in progress.calls_after_watermark() if c not in progress.started and c not in waiting
            ]
            for call in never:
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
                progress.started.update(known.started)
                progress.done.update(known.done)
                progress.failed, progress.started_at = known.failed, known.started_at
                progress.advance_watermark()
            self.progress[name] = progress

    async def _poll_job(self, source: StatusSource, progress: JobProgress) -> int:
        executor_id = self._executor(progress)
        engine = self.job.engine
        prefix = job_prefix(executor_id, progress.job_id, engine)
        watermark_key = list_start_after(executor_id, progress.job_id, progress.last_done_call, engine)
        # Continue after the last page, unless the watermark has passed it since.
        start_after = max(progress.resume_after or "", watermark_key)
        finished: list[str] = []
        # One page per poll (see the module docstring): a full page may have more after it.
        pages = source.list_objects(prefix, start_after)
        try:
            page: list[ListedObject] = await anext(aiter(pages), [])
        finally:
            close = getattr(pages, "aclose", None)
            if close is not None:
                await close()
        for key, modified in page:
            parsed = parse_job_object_key(prefix, key)
            if parsed is None or (progress.wanted is not None and parsed.call not in progress.wanted):
                continue
            if parsed.call in progress.done:
                continue
            if parsed.kind == "init":
                progress.started.add(parsed.call)
                # A retried call has several .init objects: its latest start counts.
                progress.started_at[parsed.call] = max(progress.started_at.get(parsed.call, 0.0), modified)
            elif parsed.kind == "status":
                progress.last_status_at = max(progress.last_status_at, modified)
                finished.append(parsed.call)
        progress.resume_after = page[-1].key if len(page) >= LIST_PAGE_SIZE else None
        statuses = await asyncio.gather(*(self._read_status(source, progress, c) for c in finished))
        new_done = 0
        for status in statuses:
            if status is None:
                continue
            progress.finished(status.call_id)
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
