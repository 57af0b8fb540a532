"""PyWrenJobSensor: wait for a job submitted earlier (``wait_for_result=False``) and return its results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue

from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import JobRef
from pywren_deferrable.resume import finish_job, shape_results
from pywren_deferrable.sync_bridge import run_sync
from pywren_deferrable.triggers.job import (
    DEFAULT_POLL_INTERVAL,
    EVENT_FAILED,
    EVENT_SUCCESS,
    PyWrenJobTrigger,
)
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.ui.record import JobRecord, job_xcom_key


class PyWrenJobSensor(BaseSensorOperator):
    """Wait for a Lithops job and return its results (XCom), like the operator would have.

    Typical use: ``submit = PyWrenMapOperator(..., wait_for_result=False)`` then
    ``PyWrenJobSensor(task_id="wait", job=submit.output)``.

    :param job: the job's :class:`JobRef` as a dict (what ``wait_for_result=False`` returns),
        usually an XComArg.
    :param lithops_conn_id: the Connection holding the storage credentials.
    :param fetch_result: return the results (``False``: where they are).
    :param clean_data: delete the job's objects once done.
    :param fail_fast: fail at the first failed call.
    :param poll_interval: the longest pause between polls, in seconds.
    :param deferrable: wait in the triggerer (default) instead of poking from a worker.
    """

    template_fields: Sequence[str] = ("job",)

    def __init__(
        self,
        *,
        job: Any,
        lithops_conn_id: str = LithopsHook.default_conn_name,
        fetch_result: bool = True,
        clean_data: bool = False,
        fail_fast: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.job = job
        self.lithops_conn_id = lithops_conn_id
        self.fetch_result = fetch_result
        self.clean_data = clean_data
        self.fail_fast = fail_fast
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    def _job(self) -> JobRef:
        try:
            return JobRef.from_dict(self.job)
        except (TypeError, KeyError, ValueError) as err:
            raise TypeError(f"job must be a JobRef dict (what wait_for_result=False returns): {err}") from err

    def _finish(self, event: dict[str, Any]) -> Any:
        results = finish_job(
            LithopsHook(lithops_conn_id=self.lithops_conn_id),
            event,
            fetch=self.fetch_result,
            clean_data=self.clean_data,
            log=self.log,
        )
        return shape_results(self._job(), results)

    def execute(self, context: Any) -> Any:
        job = self._job()
        # For the "Lithops job" tab: which job this sensor waits for (memory unknown here).
        push = getattr(context.get("ti") if hasattr(context, "get") else None, "xcom_push", None)
        if push is not None:
            push(key=job_xcom_key(job), value=JobRecord(job, self.lithops_conn_id).to_dict())
        if not self.deferrable:
            return super().execute(context)
        deadline = time.time() + float(self.timeout) if self.timeout else None
        self.defer(
            trigger=PyWrenJobTrigger(
                job=job.to_dict(),
                lithops_conn_id=self.lithops_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                fail_fast=self.fail_fast,
            ),
            method_name="execute_complete",
        )

    def poke(self, context: Any) -> PokeReturnValue:
        job = self._job()
        hook = LithopsHook(lithops_conn_id=self.lithops_conn_id)
        config = hook.get_config()

        async def poll_once() -> Any:
            async with hook.status_source_from_config(job.storage, config) as source:
                return await JobPoller(job).poll(source)

        result = run_sync(poll_once)
        self.log.info("%s", result.summary())
        if result.failed and (self.fail_fast or result.complete):
            calls = {job_id: sorted(s) for job_id, s in result.failed.items()}
            event = {
                "status": EVENT_FAILED,
                "job": job.to_dict(),
                "failed_calls": calls,
                "message": "calls failed",
            }
            return PokeReturnValue(True, self._finish(event))  # raises with the tracebacks
        if not result.complete:
            return PokeReturnValue(False)
        event = {"status": EVENT_SUCCESS, "job": job.to_dict(), "message": f"all {result.total} calls done"}
        return PokeReturnValue(True, self._finish(event))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        return self._finish(event or {})
