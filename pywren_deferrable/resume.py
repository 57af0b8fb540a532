"""What the worker does when a trigger event arrives: results, failure report, cleanup.

Shared by the operators and :class:`~pywren_deferrable.sensors.job.PyWrenJobSensor`.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowException

from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import JobRef
from pywren_deferrable.results import (
    aclean_job,
    afailure_report,
    afetch_results,
    result_locations,
    run_sync,
)
from pywren_deferrable.triggers.job import EVENT_FAILED, EVENT_STATUSES, EVENT_SUCCESS

log = logging.getLogger(__name__)


def job_from_event(event: Any) -> JobRef:
    """Check a trigger event's shape and return its job."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise AirflowException(f"unexpected trigger event: {event!r:.300}")
    return JobRef.from_dict(event["job"])


def finish_job(
    hook: LithopsHook,
    event: Any,
    *,
    fetch: bool = True,
    clean_data: bool = False,
    also_clean: list[dict[str, Any]] | None = None,
    log: Any = log,
) -> Any:
    """Act on a trigger event.

    On ``success``: the list of call results (or, with ``fetch=False``, where they are).
    Otherwise: an ``AirflowException`` naming the failed calls with their remote
    tracebacks, or saying why the job timed out. With ``clean_data`` the job's objects
    (and those of the ``also_clean`` jobs) are deleted either way, except the results
    that ``fetch=False`` points to.
    """
    job = job_from_event(event)
    status = event["status"]
    config = hook.get_config()
    to_clean = [job] + [JobRef.from_dict(j) for j in also_clean or []]

    async def finish() -> Any:
        async with hook.status_source_from_config(job.storage, config) as source:
            try:
                if status == EVENT_SUCCESS:
                    if not fetch:
                        return [loc.__dict__ for loc in result_locations(job)]
                    return await afetch_results(source, job)
                if status == EVENT_FAILED:
                    report = await afailure_report(source, job, event.get("failed_calls") or {})
                    raise AirflowException(f"Lithops job failed: {event.get('message')}\n{report}")
                raise AirflowException(f"Lithops job {status}: {event.get('message')}")
            finally:
                if clean_data and (fetch or status != EVENT_SUCCESS):
                    for done_job in to_clean:
                        deleted = await aclean_job(source, done_job)
                        log.info("clean_data: deleted %d objects of job %s", deleted, done_job.executor_id)

    log.info("Job %s: %s", job.executor_id, event.get("message"))
    return run_sync(finish)


def shape_results(job: JobRef, results: Any) -> Any:
    """A job's return value by its call type: one value for ``call_async`` and a single
    reducer, the list otherwise."""
    if job.call_type == "map" or not isinstance(results, list) or len(results) != 1:
        return results
    return results[0]
