"""Read a job's status objects incrementally, and keep what was read.

The api-server may be asked for the same job every few seconds by every open tab. A
finished call's status never changes, so each is read and parsed once: a refresh lists
the job prefix only after the highest call below which every call has finished (the same
``StartAfter`` watermark the trigger uses, :func:`~pywren_deferrable.job.list_start_after`),
and reads only the statuses it has not parsed yet. A job whose calls have all finished
costs no request at all.

Reading a large job for the first time takes longer than a page should wait (on the
embedded S3 endpoint, a few hundred objects a second), so the read runs on an event loop
of its own, in a daemon thread of the api-server: a request waits for it at most a time
budget, then answers with what has been read so far and says the view is still loading;
the page asks again. Its own thread also keeps the CPU the S3 client spends parsing
thousands of responses off the api-server's event loop, which serves every other request.

The cache holds at most ``max_jobs`` jobs (least recently viewed dropped first), and a
job keeps the tracebacks of at most ``MAX_TRACEBACKS`` failed calls (the others keep
their one-line error: the task log has every traceback).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace

from pywren_deferrable.call_status import StatusParseError
from pywren_deferrable.job import INIT_SUFFIX, JobRef, calls_in_listing_order, parse_job_object_key
from pywren_deferrable.triggers.status import StatusSource
from pywren_deferrable.ui.calls import CallRecord, broken_record, finished_record, running_record

READ_CONCURRENCY = 32
MAX_TRACEBACKS = 200
MIN_REFRESH_INTERVAL = 1.0  # seconds between two refreshes of one job, however many tabs ask

SourceOpener = Callable[[], AbstractAsyncContextManager[StatusSource]]


@dataclass
class JobCalls:
    """What is known of one job (one job id of a JobRef), kept between requests.

    :param job: the JobRef the job belongs to.
    :param job_id: which of its jobs.
    """

    job: JobRef
    job_id: str
    finished: dict[str, CallRecord] = field(default_factory=dict)
    running: dict[str, CallRecord] = field(default_factory=dict)
    watermark: str | None = None
    tracebacks: int = 0
    status_reads: int = 0
    list_requests: int = 0
    listed: int = 0
    empty: bool = False
    refreshed_at: float | None = None
    error: str | None = None
    _future: concurrent.futures.Future[None] | None = field(default=None, repr=False)
    # The reader thread writes what the request handlers read.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return self.job.total_calls[self.job_id]

    @property
    def complete(self) -> bool:
        """Every call has finished and been read: nothing will change any more."""
        return len(self.finished) >= self.total

    @property
    def loading(self) -> bool:
        """A refresh is under way."""
        return self._future is not None and not self._future.done()

    def records(self) -> list[CallRecord]:
        """Finished and running calls (pending ones have no record), as of now."""
        with self._lock:
            return [*self.finished.values(), *self.running.values()]

    def snapshot(self) -> tuple[list[CallRecord], list[CallRecord]]:
        """Finished and running calls, as of now, consistent with each other."""
        with self._lock:
            return list(self.finished.values()), list(self.running.values())

    def _keep(self, record: CallRecord) -> CallRecord:
        if record.traceback is None:
            return record
        if self.tracebacks >= MAX_TRACEBACKS:
            return replace(record, traceback=None)
        self.tracebacks += 1
        return record

    async def _read(self, source: StatusSource, calls: list[str]) -> None:
        semaphore = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(call: str) -> None:
            async with semaphore:
                raw = await source.get(self.job.status_key(self.job_id, call))
            self.status_reads += 1
            if raw is None:
                return  # listed, then deleted (cleaned): it stays pending
            try:
                record = finished_record(raw, self.job_id, call, self.job.engine)
            except StatusParseError as err:
                record = broken_record(self.job_id, call, f"unreadable status.json: {err}")
            with self._lock:
                self.finished[call] = self._keep(record)
                self.running.pop(call, None)

        await asyncio.gather(*(one(c) for c in calls))

    async def refresh(self, source: StatusSource) -> None:
        """List the calls after the watermark; read the statuses not read yet."""
        prefix = self.job.job_prefix(self.job_id)
        running: dict[str, CallRecord] = {}
        seen = 0
        async for page in source.list_objects(prefix, self.job.list_start_after(self.job_id, self.watermark)):
            self.list_requests += 1
            self.listed += len(page)
            seen += len(page)
            new: list[str] = []
            for item in page:
                parsed = parse_job_object_key(prefix, item.key)
                if parsed is None or parsed.call in self.finished:
                    continue
                if parsed.kind == "status":
                    new.append(parsed.call)
                elif parsed.kind == "init":
                    activation = item.key.rsplit("/", 1)[1][: -len(INIT_SUFFIX)]
                    running[parsed.call] = running_record(self.job_id, parsed.call, activation, item.modified)
            await self._read(source, new)
        with self._lock:
            self.running = {c: r for c, r in running.items() if c not in self.finished}
        self._advance_watermark()
        # Nothing at all under the job prefix (Lithops writes aggdata.pickle there at
        # submission): the job's objects were deleted (clean_data=True), or never written.
        self.empty = seen == 0 and not self.finished
        self.refreshed_at = time.monotonic()

    def _advance_watermark(self) -> None:
        order = calls_in_listing_order(self.total)
        position = order.index(self.watermark) + 1 if self.watermark in order else 0
        while position < len(order) and order[position] in self.finished:
            self.watermark = order[position]
            position += 1

    def due(self, now: float) -> bool:
        """A new refresh is worth starting."""
        if self.complete or self.loading:
            return False
        return self.refreshed_at is None or now - self.refreshed_at >= MIN_REFRESH_INTERVAL

    async def _run(self, opener: SourceOpener) -> None:
        try:
            async with opener() as source:
                await self.refresh(source)
            self.error = None
        except Exception as err:  # shown on the page; the next request tries again
            self.error = f"{type(err).__name__}: {err}"[:500]
            self.refreshed_at = time.monotonic()

    async def update(self, opener: SourceOpener, budget: float) -> None:
        """Start a refresh if one is due, and wait for the running one at most ``budget`` s."""
        if self.due(time.monotonic()):
            self._future = asyncio.run_coroutine_threadsafe(self._run(opener), reader_loop())
        future = self._future
        if future is not None and not future.done():
            await asyncio.wait({asyncio.wrap_future(future)}, timeout=budget)

    def cancel(self) -> None:
        """Stop a refresh under way (the cache dropped this job)."""
        if self._future is not None:
            self._future.cancel()


_reader_loop: asyncio.AbstractEventLoop | None = None
_reader_lock = threading.Lock()


def reader_loop() -> asyncio.AbstractEventLoop:
    """The event loop, in a daemon thread, that runs every refresh of this process."""
    global _reader_loop
    with _reader_lock:
        if _reader_loop is None or _reader_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="pywren-job-view-reader", daemon=True).start()
            _reader_loop = loop
        return _reader_loop


class JobCache:
    """The jobs recently viewed on this api-server process, least recently viewed dropped first.

    :param max_jobs: how many jobs to keep.
    """

    def __init__(self, max_jobs: int = 16) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs!r}")
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[tuple[str, str, str, str], JobCalls] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job: JobRef, job_id: str) -> JobCalls:
        """The cached state of ``job_id`` of ``job`` (created empty on first view)."""
        key = (job.storage.kind, job.storage.bucket, job.executor_id, job_id)
        entry = self._jobs.get(key)
        if entry is None or entry.job.total_calls.get(job_id) != job.total_calls.get(job_id):
            entry = JobCalls(job, job_id)
            self._jobs[key] = entry
        self._jobs.move_to_end(key)
        while len(self._jobs) > self.max_jobs:
            _key, dropped = self._jobs.popitem(last=False)
            dropped.cancel()
        return entry
