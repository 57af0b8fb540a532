"""PyWrenJobTrigger: waits in the triggerer for a job (Lithops or pywren-ibm-cloud) to finish,
fail or time out.

It only polls: it reads the job's status objects, never submits or deletes anything,
so running it twice (triggerer HA) or restarting it is harmless. It never imports
Lithops or pywren (the JobRef says which key layout and status format to read) and
never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import ClientError as AiohttpClientError
from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from pywren_deferrable.dispatch.dispatcher import Dispatcher, DispatchError
from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.metrics import TriggerMetrics
from pywren_deferrable.triggers.poll import JobPoller, PollResult
from pywren_deferrable.triggers.progress import ProgressLog
from pywren_deferrable.triggers.scheduler import SCHEDULER, PollScheduler
from pywren_deferrable.triggers.status import StatusSource

DEFAULT_POLL_INTERVAL = 10.0
MIN_POLL_INTERVAL = 0.5
DEFAULT_MAX_OUTAGE = 300.0
BACKOFF_FACTOR = 1.5
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 10.0
# While a dispatch plan has calls left, poll at least this often: a finished call frees a
# worker only once the trigger has seen it.
DISPATCH_POLL_INTERVAL = 2.0
# S3 error codes that mean "try again later", not "you are wrong".
TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable", "InternalError"}
)

EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = (EVENT_SUCCESS, EVENT_FAILED, EVENT_TIMEOUT, EVENT_ERROR)


def is_transient(err: BaseException) -> bool:
    """True for storage errors worth retrying (throttling, 5xx, connection trouble)."""
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_S3_CODES or int(status) >= 500
    return isinstance(err, BotoCoreError | AiohttpClientError | OSError | asyncio.TimeoutError)


class PyWrenJobTrigger(BaseTrigger):
    """Polls a job's status objects and fires one event when it ends.

    Events (``event["status"]``): ``success``; ``failed`` (``failed_calls`` maps job
    ids to failed call ids, ``error`` is the first remote error, one line);
    a job whose functions returned Lithops futures ends when the inner jobs do too
    (``failed_calls`` names those by job key; ``inner_calls`` counts their calls);
    ``timeout`` (the deadline passed; ``done``/``total`` say how far it got);
    ``error`` (storage unreachable for longer than ``max_outage`` seconds).

    :param job: the :class:`JobRef`, as a dict.
    :param lithops_conn_id: the Connection that holds the storage credentials.
    :param poll_interval: the longest pause between polls, in seconds; polls come
        faster (down to 0.5 s) while calls are finishing.
    :param deadline: epoch seconds after which a ``timeout`` event fires; ``None``
        waits forever.
    :param fail_fast: fire ``failed`` at the first failed call instead of waiting
        for every call to end.
    :param max_outage: how long storage may be unreachable before giving up.
    :param clean_data: when the task is killed by a user (``on_kill``), also delete the
        job's objects.
    :param resume_state: small JSON the task needs when it resumes (a multi-stage
        operator's stage, say), echoed in every event. It rides in the event rather than
        in ``next_kwargs`` because ``dag.test()`` replaces ``next_kwargs`` with the event.
    """

    # The event loop's poll scheduler (one per process, see triggers/scheduler.py).
    scheduler: PollScheduler = SCHEDULER

    def __init__(
        self,
        *,
        job: dict[str, Any],
        lithops_conn_id: str = LithopsHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
        fail_fast: bool = True,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        resume_state: dict[str, Any] | None = None,
        clean_data: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_data = job
        # A trigger that fails to inflate in the triggerer would take other triggers down
        # with it (Airflow 3.3), so an invalid job becomes an ``error`` event instead.
        self.invalid: str | None = None
        try:
            self.job = JobRef.from_dict(job)
        except (TypeError, ValueError, KeyError) as err:
            self.invalid = f"invalid job reference: {err}"
        self.lithops_conn_id = lithops_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.fail_fast = fail_fast
        self.max_outage = float(max_outage)
        self.resume_state = dict(resume_state or {})
        self.clean_data = bool(clean_data)
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "job": self.job_data if self.invalid else self.job.to_dict(),
                "lithops_conn_id": self.lithops_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "fail_fast": self.fail_fast,
                "max_outage": self.max_outage,
                "resume_state": self.resume_state,
                "clean_data": self.clean_data,
            },
        )

    def _event(self, status: str, result: PollResult | None, message: str, **extra: Any) -> TriggerEvent:
        payload: dict[str, Any] = {
            "status": status,
            "message": message,
            "job": self.job_data if self.invalid else self.job.to_dict(),
            "done": result.done if result else 0,
            # Calls of inner jobs (futures returned by calls) count once found.
            "total": result.total if result else (0 if self.invalid else self.job.calls),
            "resume_state": self.resume_state,
        }
        if result is not None:
            payload["inner_calls"] = result.inner_calls
        payload.update(extra)
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]

    def _failed_event(self, result: PollResult) -> TriggerEvent:
        failed = result.failed
        first = next(iter(next(iter(failed.values())).values()))
        calls = {job_id: sorted(statuses) for job_id, statuses in failed.items()}
        listing = ", ".join(f"{job_id}/{c}" for job_id, ids in calls.items() for c in ids[:20])
        count = sum(len(ids) for ids in calls.values())
        # One line per failed call (at most 20): what the worker shows for calls that
        # left no status.json to read the traceback from.
        call_errors = {
            f"{job_id}/{c}": failed[job_id][c].error for job_id, ids in calls.items() for c in ids[:20]
        }
        return self._event(
            EVENT_FAILED,
            result,
            f"{count} call(s) failed ({listing}); first error: {first.error}",
            failed_calls=calls,
            error=first.error,
            call_errors=call_errors,
        )

    async def on_kill(self) -> None:
        """A user marked the deferred task failed/success or cleared it (not a triggerer
        restart): stop a local job we can reach, and delete its objects if ``clean_data``.
        Lithops cannot cancel calls already running on a cloud backend; they finish."""
        from pywren_deferrable.results import aclean_job
        from pywren_deferrable.submit import stop_runner

        if self.invalid:
            return
        if await asyncio.to_thread(stop_runner, self.job):
            self.log.info("stopped the local runner of job %s", self.job.executor_id)
        if self.clean_data:
            from pywren_deferrable.retries import earlier_jobs

            hook = LithopsHook(lithops_conn_id=self.lithops_conn_id)
            async with hook.astatus_source(self.job.storage) as source:
                # The earlier stages and retry rounds of the task too (see retries.py).
                for job in [self.job, *earlier_jobs(self.resume_state)]:
                    deleted = await aclean_job(source, job)
                    self.log.info("clean_data: deleted %d objects of job %s", deleted, job.executor_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The event is yielded only after the storage client is released: a consumer
        # that stops iterating after the first event (as Airflow does) would otherwise
        # leave the client's context suspended inside an abandoned generator.
        event = await self.wait_for_event()
        yield event

    async def wait_for_event(self) -> TriggerEvent:
        """Poll until the job ends, fails, times out or storage stays unreachable."""
        if self.invalid:
            return self._event(EVENT_ERROR, None, self.invalid)
        await self.scheduler.turn()  # start-ups are paced too (a restart starts thousands)
        hook = LithopsHook(lithops_conn_id=self.lithops_conn_id)
        # The calls beyond max_workers that the worker left to us (FaaS backends).
        dispatcher = (
            Dispatcher(self.job, hook.aget_config, max_outage=self.max_outage) if self.job.dispatch else None
        )
        try:
            return await self._poll_loop(hook, dispatcher)
        finally:
            if dispatcher is not None:
                await dispatcher.close()

    def _new_poller(self) -> JobPoller:
        """The job's poller (a seam for the benchmarks, which seed it or run the previous one)."""
        return JobPoller(self.job)

    def _status_source(self, hook: LithopsHook) -> AbstractAsyncContextManager[StatusSource]:
        """Where the job's objects are read (a seam for the benchmarks' baseline)."""
        return hook.astatus_source(self.job.storage)

    async def _poll_loop(self, hook: LithopsHook, dispatcher: Dispatcher | None) -> TriggerEvent:
        poller = self._new_poller()
        interval = min(MIN_POLL_INTERVAL, self.poll_interval)
        progress_log = ProgressLog()
        outage_since: float | None = None
        retry_delay = FIRST_RETRY_DELAY
        result: PollResult | None = None
        metrics = TriggerMetrics(self.job)

        def fire(event: TriggerEvent) -> TriggerEvent:
            metrics.finished(event.payload["status"], result)
            return event

        async with self._status_source(hook) as source:
            while True:
                dispatched = 0
                try:
                    if dispatcher is not None and not dispatcher.loaded:
                        await dispatcher.load(source)
                        poller.not_invoked = dispatcher.undispatched_calls()
                    # A slot of the loop's poll scheduler: polls in flight stay bounded.
                    async with self.scheduler.slot(self.job.storage):
                        requests_before, poll_started = source.requests, time.monotonic()
                        result = await poller.poll(source)
                    metrics.poll(result, source.requests - requests_before, time.monotonic() - poll_started)
                    if (
                        dispatcher is not None
                        and not result.complete
                        and not (result.failed and self.fail_fast)
                    ):
                        dispatched = await dispatcher.step(source, result)
                        poller.not_invoked = dispatcher.undispatched_calls()
                    if outage_since is not None:
                        self.log.info("storage reachable again after %.0fs", time.monotonic() - outage_since)
                    outage_since = None
                    retry_delay = FIRST_RETRY_DELAY
                except DispatchError as err:
                    return fire(
                        self._event(EVENT_ERROR, result, f"could not invoke the job's remaining calls: {err}")
                    )
                except Exception as err:
                    if not is_transient(err):
                        raise
                    now = time.monotonic()
                    outage_since = outage_since or now
                    if now - outage_since > self.max_outage:
                        return fire(
                            self._event(
                                EVENT_ERROR,
                                result,
                                f"storage unreachable for more than {self.max_outage:.0f}s (max_outage): {err}",
                            )
                        )
                    self.log.warning("storage error, retrying in %.0fs: %s", retry_delay, err)
                    await asyncio.sleep(retry_delay)
                    retry_delay = min(retry_delay * 2, MAX_RETRY_DELAY)
                    continue

                line = progress_log.update(result, time.monotonic())
                if line:
                    self.log.info("%s", line)
                if result.failed and (self.fail_fast or result.complete):
                    return fire(self._failed_event(result))
                if result.complete:
                    return fire(self._event(EVENT_SUCCESS, result, f"all {result.total} calls done"))
                if self.deadline is not None and time.time() >= self.deadline:
                    return fire(
                        self._event(
                            EVENT_TIMEOUT,
                            result,
                            f"deadline passed with {result.done}/{result.total} calls done",
                        )
                    )
                # Fast while calls are finishing, backing off to poll_interval when idle.
                if result.new_done or dispatched:
                    interval = min(MIN_POLL_INTERVAL, self.poll_interval)
                else:
                    interval = min(interval * BACKOFF_FACTOR, self.poll_interval)
                if dispatcher is not None and dispatcher.remaining():
                    interval = min(interval, DISPATCH_POLL_INTERVAL)
                pause = self.scheduler.pause(interval, self.poll_interval)
                if self.deadline is not None:
                    pause = max(0.0, min(pause, self.deadline - time.time()))
                await asyncio.sleep(pause)
