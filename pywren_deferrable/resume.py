"""What the worker does when a trigger event arrives: results, failure report, cleanup.

Shared by the operators and :class:`~pywren_deferrable.sensors.job.PyWrenJobSensor`.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from airflow.sdk.exceptions import AirflowException

from pywren_deferrable.call_status import CallStatus
from pywren_deferrable.hooks.lithops import LithopsHook
from pywren_deferrable.job import ENGINE_NAMES, JobRef
from pywren_deferrable.lineage import aforget
from pywren_deferrable.results import (
    ResultLocation,
    aclean_job,
    afailure_report,
    afetch_results,
    aresult_locations,
    result_locations,
)
from pywren_deferrable.sync_bridge import run_sync
from pywren_deferrable.triggers.job import EVENT_FAILED, EVENT_STATUSES, EVENT_SUCCESS
from pywren_deferrable.triggers.status import StatusSource

log = logging.getLogger(__name__)
DEFAULT_XCOM_BACKENDS = ("airflow.sdk.execution_time.xcom.BaseXCom", "airflow.models.xcom.BaseXCom")


class ResultCollector(Protocol):
    """Where a successful task's results come from."""

    async def results(self, source: StatusSource, seen: list[CallStatus] | None = None) -> list[Any]:
        """The results, in input order (``seen`` receives every status read)."""
        ...

    async def alocations(self, source: StatusSource, event: dict[str, Any]) -> list[ResultLocation]:
        """Where each result lives, in input order (``event``: the last trigger event)."""
        ...


@dataclass(frozen=True)
class JobResults:
    """The results of one job's calls (its last job): what a task without retries returns."""

    job: JobRef

    async def results(self, source: StatusSource, seen: list[CallStatus] | None = None) -> list[Any]:
        return await afetch_results(source, self.job, seen=seen)

    async def alocations(self, source: StatusSource, event: dict[str, Any]) -> list[ResultLocation]:
        # When functions returned futures, their calls' results are the task's: finding
        # them reads statuses, which a job without any (the trigger counted) need not do.
        if event.get("inner_calls") == 0:
            return result_locations(self.job)
        return await aresult_locations(source, self.job)


def job_from_event(event: Any) -> JobRef:
    """Check a trigger event's shape and return its job."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise AirflowException(f"unexpected trigger event: {event!r:.300}")
    try:
        return JobRef.from_dict(event["job"])
    except (TypeError, ValueError, KeyError) as err:
        raise AirflowException(f"Lithops job {event['status']}: {event.get('message')} ({err})") from None


def finish_job(
    hook: LithopsHook,
    event: Any,
    *,
    fetch: bool = True,
    clean_data: bool = False,
    also_clean: list[dict[str, Any]] | None = None,
    max_xcom_bytes: int | None = None,
    forget_key: str | None = None,
    explain: Callable[[str], str] | None = None,
    log: Any = log,
    collector: ResultCollector | None = None,
    usage: Callable[[JobRef, dict[str, Any], list[CallStatus]], str | None] | None = None,
) -> Any:
    """Act on a trigger event.

    On ``success``: the list of call results (or, with ``fetch=False``, where they are).
    Otherwise: an ``AirflowException`` naming the failed calls with their remote
    tracebacks, or saying why the job timed out. With ``clean_data`` the job's objects
    (and those of the ``also_clean`` jobs) are deleted either way, except the results
    that ``fetch=False`` points to. Results over ``max_xcom_bytes`` (pickled) are not
    returned: their locations are, and they are kept. On success the lineage marker
    ``forget_key`` is deleted too (see :mod:`pywren_deferrable.lineage`), in the same
    storage session. ``explain`` may rewrite a failure report (remote tracebacks) before it
    is raised. A ``collector`` gathers the results (or their locations) instead of the
    job's own calls: the merged rounds of ``call_retries``, say. ``usage`` turns the
    statuses read for the results into the line logged on success (see :mod:`..usage`).
    """
    job = job_from_event(event)
    engine = ENGINE_NAMES[job.engine]
    status = event["status"]
    config = hook.get_config()
    to_clean = [job] + [JobRef.from_dict(j) for j in also_clean or []]
    kept: list[bool] = []  # results handed out by location must stay in storage

    async def finish() -> Any:
        async with hook.status_source_from_config(job.storage, config) as source:

            async def succeed(value: Any) -> Any:
                if forget_key:  # done: a later, deliberate re-run of the task computes afresh
                    await aforget(source, forget_key)
                return value

            try:
                if status == EVENT_SUCCESS:
                    if fetch:
                        seen: list[CallStatus] = []
                        results = await (collector or JobResults(job)).results(source, seen)
                        if usage is not None:
                            line = usage(job, config, seen)
                            if line:
                                log.info("%s", line)
                        size = results_size(results)
                        if max_xcom_bytes is None or size <= max_xcom_bytes or custom_xcom_backend():
                            return await succeed(results)
                        log.warning(
                            "The results take %d bytes, over max_xcom_bytes=%d: returning where they "
                            "are instead of pushing them through XCom (and keeping them)",
                            size,
                            max_xcom_bytes,
                        )
                        kept.append(True)
                    locations = await (collector or JobResults(job)).alocations(source, event)
                    return await succeed([loc.__dict__ for loc in locations])
                if status == EVENT_FAILED:
                    report = await afailure_report(
                        source, job, event.get("failed_calls") or {}, call_errors=event.get("call_errors")
                    )
                    if explain is not None:
                        report = explain(report)
                    raise AirflowException(f"{engine} job failed: {event.get('message')}\n{report}")
                raise AirflowException(f"{engine} job {status}: {event.get('message')}")
            finally:
                if clean_data and not kept and (fetch or status != EVENT_SUCCESS):
                    for done_job in to_clean:
                        deleted = await aclean_job(source, done_job)
                        log.info("clean_data: deleted %d objects of job %s", deleted, done_job.executor_id)

    log.info("Job %s: %s", job.executor_id, event.get("message"))
    return run_sync(finish)


def results_size(results: Any) -> int:
    """How many bytes the results take, pickled (what an XCom backend stores is close)."""
    try:
        return len(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # unpicklable results would fail in XCom anyway; let XCom say so
        return 0


def custom_xcom_backend() -> bool:
    """True when the deployment stores XComs elsewhere (e.g. object storage), so size is no issue."""
    from airflow.sdk.configuration import conf

    backend = conf.get("core", "xcom_backend", fallback="") or ""
    return bool(backend) and backend not in DEFAULT_XCOM_BACKENDS


def shape_results(job: JobRef, results: Any) -> Any:
    """A job's return value by its call type: one value for ``call_async`` and a single
    reducer, the list otherwise."""
    if job.call_type == "map" or not isinstance(results, list) or len(results) != 1:
        return results
    return results[0]
