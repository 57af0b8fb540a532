"""Trigger side: invoke a job's pending chunks as its running calls finish.

After each poll of the job (:class:`~pywren_deferrable.triggers.poll.JobPoller`), the
trigger calls :meth:`Dispatcher.step`, which:

* counts the chunks running: invoked (first wave, and pending chunks dispatched so far)
  and not ended (an activation runs until the last call of its chunk writes its status);
* invokes the next ``max_workers - running`` pending chunks, concurrently, with the
  payload Lithops built for each and the secrets read from the Connection;
* advances the dispatch cursor stored with the job (``job.dispatch_cursor_key``) over the
  chunks the backend accepted, and only then.

At-least-once: a trigger killed between an acceptance and the cursor write re-dispatches
at most that batch when it (or another triggerer) resumes; and a chunk whose calls show
up in storage moves the cursor by itself (:func:`~.plan.dispatched_through`), so the
duplicates are only the chunks accepted but not yet started. Two triggers of one task
(triggerer HA) each see the other's dispatches the same way: duplicates stay bounded by
one batch per trigger. Never imports Lithops; never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pywren_deferrable.dispatch.backends import INVOKERS
from pywren_deferrable.dispatch.errors import DispatchError, DispatchRefused, DispatchUnavailable, Invoker
from pywren_deferrable.dispatch.plan import (
    Cursor,
    DispatchPlan,
    PlanError,
    dispatched_through,
    running_chunks,
)
from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.poll import PollResult
from pywren_deferrable.triggers.status import StatusSource

log = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0
DEFAULT_MAX_OUTAGE = 300.0

__all__ = ["INVOKERS", "DispatchError", "Dispatcher"]


class Dispatcher:
    """Dispatches the pending chunks of the jobs of ``job.dispatch``, in job order.

    :param job: the JobRef (its ``dispatch`` names the jobs that have a plan).
    :param get_config: returns the Connection's Lithops config (``LithopsHook.aget_config``):
        where the secrets come from.
    :param max_outage: how long the backend may stay unavailable before giving up.
    :param clock: monotonic seconds, for tests.
    """

    def __init__(
        self,
        job: JobRef,
        get_config: Callable[[], Awaitable[dict[str, Any]]],
        *,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self._get_config = get_config
        self.max_outage = max_outage
        self._clock = clock
        self.plans: dict[str, DispatchPlan] = {}
        self.cursors: dict[str, int] = {}
        # Chunks accepted beyond the stored cursor (a batch with a gap): not re-sent by us.
        self._accepted: dict[str, set[int]] = {}
        self._config: dict[str, Any] | None = None
        self._invokers: dict[str, Invoker] = {}
        self._retry_at = 0.0
        self._retry_delay = FIRST_RETRY_DELAY
        self._outage_since: float | None = None
        self.dispatched = 0  # chunks this dispatcher had accepted (for logs and tests)

    @property
    def loaded(self) -> bool:
        return len(self.plans) == len(self.job.dispatch)

    def remaining(self) -> int:
        """Pending chunks not dispatched yet (as far as this dispatcher knows)."""
        return sum(
            len(plan.pending) - self.cursors[j] - len(self._accepted[j]) for j, plan in self.plans.items()
        )

    def undispatched_calls(self) -> dict[str, set[str]]:
        """The call ids not yet handed to the backend, per job: they cannot be late."""
        calls: dict[str, set[str]] = {}
        for job_id, plan in self.plans.items():
            ids: set[str] = set()
            for index in range(self.cursors[job_id], len(plan.pending)):
                if index not in self._accepted[job_id]:
                    ids.update(plan.pending[index].call_ids)
            calls[job_id] = ids
        return calls

    async def load(self, source: StatusSource) -> None:
        """Read the plans and cursors (once)."""
        for job_id in self.job.dispatch:
            raw = await source.get(self.job.dispatch_plan_key(job_id))
            if raw is None:
                raise DispatchError(
                    f"job {job_id} has no dispatch plan in storage (cleaned?): its calls beyond "
                    "max_workers cannot be invoked"
                )
            try:
                plan = DispatchPlan.from_json(raw)
            except PlanError as err:
                raise DispatchError(f"job {job_id}: {err}") from None
            if plan.backend not in INVOKERS:
                raise DispatchError(f"job {job_id}: the trigger cannot invoke {plan.backend!r} functions")
            cursor = Cursor.from_json(await source.get(self.job.dispatch_cursor_key(job_id)))
            self.plans[job_id] = plan
            self.cursors[job_id] = min(cursor.dispatched, len(plan.pending))
            self._accepted[job_id] = set()

    async def close(self) -> None:
        invokers, self._invokers = list(self._invokers.values()), {}
        for invoker in invokers:
            await invoker.close()

    async def _invoker(self, job_id: str) -> Invoker:
        invoker = self._invokers.get(job_id)
        if invoker is None:
            if self._config is None:
                self._config = await self._get_config()
            plan = self.plans[job_id]
            config = plan.chunk_payload(0, self._config, 0.0)["config"]
            invoker = self._invokers[job_id] = INVOKERS[plan.backend](plan.target, config)
        return invoker

    def _running(self, result: PollResult) -> int:
        running = 0
        for progress in result.jobs:
            plan = self.plans.get(progress.job_id)
            if plan is None:  # a job invoked whole by the worker: its calls seen running
                running += progress.running
                continue
            # Started holds every call that started or wrote its status (not the calls
            # declared lost for never starting); a membership test, whatever the job's size.
            seen = progress.started
            self.cursors[progress.job_id] = dispatched_through(plan, self.cursors[progress.job_id], seen)
            self._accepted[progress.job_id] = {
                i for i in self._accepted[progress.job_id] if i >= self.cursors[progress.job_id]
            }
            running += running_chunks(plan, self.cursors[progress.job_id], progress.done)
            # Chunks accepted past a gap (a batch whose middle failed) run too.
            running += sum(
                1
                for i in self._accepted[progress.job_id]
                if not all(c in progress.done for c in plan.pending[i].call_ids)
            )
        return running

    def _next_batch(self, free: int) -> list[tuple[str, int]]:
        batch: list[tuple[str, int]] = []
        for job_id in self.job.dispatch:
            plan = self.plans[job_id]
            for index in range(self.cursors[job_id], len(plan.pending)):
                if len(batch) >= free:
                    return batch
                if index not in self._accepted[job_id]:
                    batch.append((job_id, index))
        return batch

    async def step(self, source: StatusSource, result: PollResult) -> int:
        """Dispatch what the free workers allow; return how many chunks were accepted.

        :raises DispatchError: the backend refused an invocation, or stayed unavailable for
            longer than ``max_outage``; the job cannot complete.
        """
        if not self.loaded:
            await self.load(source)
        if not self.remaining():
            return 0
        max_workers = next(iter(self.plans.values())).max_workers
        free = max_workers - self._running(result)
        if free <= 0 or self._clock() < self._retry_at:
            return 0
        batch = self._next_batch(free)
        if not batch:
            return 0
        try:
            invokers = {job_id: await self._invoker(job_id) for job_id in {j for j, _ in batch}}
        except PlanError as err:
            raise DispatchError(str(err)) from None
        now = time.time()
        assert self._config is not None
        outcomes = await asyncio.gather(
            *(
                invokers[job_id].invoke(self.plans[job_id].chunk_payload(index, self._config, now))
                for job_id, index in batch
            ),
            return_exceptions=True,
        )
        accepted = 0
        unavailable: BaseException | None = None
        for (job_id, index), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, DispatchRefused):
                # Which job's calls will not run, and why (the message names no secret).
                raise DispatchRefused(f"job {job_id}: {outcome}") from None
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, DispatchUnavailable | PlanError):
                    raise outcome
                unavailable = unavailable or outcome
                continue
            self._accepted[job_id].add(index)
            accepted += 1
        await self._advance_cursors(source)
        self.dispatched += accepted
        if accepted:
            log.info(
                "dispatched %d call chunk(s) (%d left to dispatch, max_workers %d)",
                accepted,
                self.remaining(),
                max_workers,
            )
        self._note_outcome(unavailable)
        return accepted

    async def _advance_cursors(self, source: StatusSource) -> None:
        for job_id, accepted in self._accepted.items():
            cursor = self.cursors[job_id]
            moved = cursor
            while moved in accepted:
                accepted.discard(moved)
                moved += 1
            if moved != cursor:
                # Written only after the backend accepted every chunk below it.
                await source.put(self.job.dispatch_cursor_key(job_id), Cursor(moved).to_json())
                self.cursors[job_id] = moved

    def _note_outcome(self, unavailable: BaseException | None) -> None:
        now = self._clock()
        if unavailable is None:
            if self._outage_since is not None:
                log.info(
                    "the compute backend accepts invocations again after %.0fs", now - self._outage_since
                )
            self._outage_since, self._retry_delay, self._retry_at = None, FIRST_RETRY_DELAY, 0.0
            return
        if self._outage_since is None:
            self._outage_since = now
        if now - self._outage_since > self.max_outage:
            raise DispatchError(
                f"the compute backend refused or failed invocations for more than {self.max_outage:.0f}s: "
                f"{unavailable}"
            )
        log.warning("could not dispatch calls, retrying in %.0fs: %s", self._retry_delay, unavailable)
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_DELAY)
