"""The naive pollers the incremental :class:`~pywren_deferrable.triggers.poll.JobPoller` is
measured against. Both speak the same :class:`StatusSource` interface.

* :class:`NaivePoller` lists the job's whole prefix on every poll and GETs every
  ``status.json`` it has not read before (what Lithops' own storage monitor does).
* :class:`NaiveRelistPoller` remembers nothing: every poll lists the whole prefix and
  GETs every ``status.json`` listed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pywren_deferrable.call_status import parse_status
from pywren_deferrable.job import JobRef, job_prefix, parse_job_object_key, status_key
from pywren_deferrable.triggers.status import StatusSource


@dataclass
class NaivePoll:
    done: int
    total: int
    new_done: int

    @property
    def complete(self) -> bool:
        return self.done >= self.total


class NaivePoller:
    """List everything, read what is new.

    :param job: the job to watch (its last job id).
    :param concurrency: at most this many GETs at once.
    """

    remember = True

    def __init__(self, job: JobRef, *, concurrency: int = 16) -> None:
        self.job = job
        self.job_id = job.result_job_id
        self.total = job.total_calls[self.job_id]
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self._semaphore = asyncio.Semaphore(concurrency)

    async def _read(self, source: StatusSource, call: str) -> str | None:
        async with self._semaphore:
            raw = await source.get(status_key(self.job.executor_id, self.job_id, call))
        if raw is None:
            return None
        if parse_status(raw, call).failed:
            self.failed.add(call)
        return call

    async def poll(self, source: StatusSource) -> NaivePoll:
        prefix = job_prefix(self.job.executor_id, self.job_id)
        listed: list[str] = []
        async for page in source.list_keys(prefix):
            for key in page:
                parsed = parse_job_object_key(prefix, key)
                if parsed is not None and parsed.kind == "status":
                    listed.append(parsed.call)
            await asyncio.sleep(0)
        before = len(self.done)
        to_read = [c for c in listed if not self.remember or c not in self.done]
        if not self.remember:
            self.done.clear()
        for call in await asyncio.gather(*(self._read(source, c) for c in to_read)):
            if call is not None:
                self.done.add(call)
        return NaivePoll(done=len(self.done), total=self.total, new_done=max(0, len(self.done) - before))


class NaiveRelistPoller(NaivePoller):
    """List everything, read everything, every poll."""

    remember = False
