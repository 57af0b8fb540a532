"""Reattach a retried task to the job its earlier try submitted.

A task can die after its job was submitted (the worker is lost while fetching results,
say). Airflow then retries it, and a naive retry submits the job again and pays twice.
So each task instance records its job in a small marker object (``job.lineage_key``:
dag, run, task, map index) and a retry looks there first: when that job is still
running or finished without failures, and its objects are still in storage, the retry
waits for it instead of resubmitting. When calls of it failed and the operator can
resubmit single calls (the rounds of :mod:`pywren_deferrable.retries`), the retry
reattaches too and, once that job has ended, resubmits only the failed calls, keeping
the finished results. The marker is deleted once the task succeeds, so a later,
deliberate re-run computes afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pywren_deferrable.job import JobRef, lineage_key
from pywren_deferrable.triggers.poll import JobPoller
from pywren_deferrable.triggers.status import StatusSource


@dataclass(frozen=True)
class Previous:
    """The job an earlier try of this task instance submitted, and where it stood."""

    job: JobRef
    resume_state: dict[str, Any]
    try_number: int | None
    done: int
    total: int
    failed: int = 0


def task_lineage(context: Any) -> str | None:
    """The marker key of the task instance in ``context`` (None outside a real task)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    dag_id, run_id, task_id = (getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id"))
    if not (isinstance(dag_id, str) and isinstance(run_id, str) and isinstance(task_id, str)):
        return None
    map_index = getattr(ti, "map_index", -1)
    return lineage_key(dag_id, run_id, task_id, map_index if isinstance(map_index, int) else -1)


async def aremember(
    source: StatusSource, key: str, job: JobRef, resume_state: dict[str, Any], try_number: int | None
) -> None:
    """Record ``job`` as this task instance's job."""
    body = {"job": job.to_dict(), "resume_state": resume_state, "try_number": try_number}
    await source.put(key, json.dumps(body).encode())


async def aforget(source: StatusSource, key: str) -> None:
    """Drop the record (the task succeeded)."""
    await source.delete([key])


async def afind_reusable(
    source: StatusSource, key: str, *, resumable: Callable[[dict[str, Any]], bool] | None = None
) -> Previous | None:
    """The recorded job if a retry can wait for it instead of resubmitting: it is still
    in storage and no call of it has failed, or ``resumable(resume_state)`` says its
    failed calls can be resubmitted alone. ``None`` otherwise."""
    raw = await source.get(key)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        job = JobRef.from_dict(record["job"])
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: resubmitting is the safe choice
    # Reattaching must not wait for calls that were lost with the earlier try.
    progress = await JobPoller(job, start_timeout=None).poll(source)
    state = record.get("resume_state")
    state = state if isinstance(state, dict) else {}
    if progress.failed and not (resumable and resumable(state)):
        return None
    first_job_prefix_empty = progress.done == 0 and not any(p.started for p in progress.jobs)
    if first_job_prefix_empty and await _job_is_gone(source, job):
        return None  # cleaned, or never really submitted
    return Previous(
        job=job,
        resume_state=state,
        try_number=record.get("try_number"),
        done=progress.done,
        total=progress.total,
        failed=sum(len(calls) for calls in progress.failed.values()),
    )


async def _job_is_gone(source: StatusSource, job: JobRef) -> bool:
    async for page in source.list_keys(job.prefixes()[0]):
        if page:
            return False
    return True
