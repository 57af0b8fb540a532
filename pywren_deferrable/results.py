"""Fetch a finished job's results, describe its failures, and clean its objects.

Runs on the worker when the task resumes. One listing of the result job's prefix, then
the ``status.json`` (and, for results of 8 KiB or more, ``output.pickle``) of every
call concurrently over one shared aiobotocore client. Results are unpickled only from
the job's own keys; inline results are parsed with ``ast.literal_eval``.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pywren_deferrable.call_status import CallStatus, decode_output, parse_call_status
from pywren_deferrable.job import ENGINE_PYWREN, JobRef, call_id
from pywren_deferrable.triggers.status import StatusSource

DEFAULT_FETCH_CONCURRENCY = 64
T = TypeVar("T")


class JobFailedError(RuntimeError):
    """One or more calls of the job raised; the message carries the remote tracebacks."""


class ResultMissingError(RuntimeError):
    """A call reported success but its status or output object is missing."""


@dataclass(frozen=True)
class ResultLocation:
    """Where a call's result lives (for ``fetch_result=False``)."""

    bucket: str
    status_key: str
    output_key: str | None


async def _bounded(semaphore: asyncio.Semaphore, awaitable: Awaitable[T]) -> T:
    async with semaphore:
        return await awaitable


async def read_statuses(
    source: StatusSource,
    job: JobRef,
    job_id: str,
    calls: list[str],
    concurrency: int,
    missing: dict[str, str] | None = None,
) -> list[CallStatus]:
    """Read and parse ``status.json`` of ``calls`` of ``job_id``, in that order.

    :param missing: when given, a call without status becomes a failed status whose error
        is ``missing[call]`` (or a generic one) instead of raising ``ResultMissingError``.
    """
    semaphore = asyncio.Semaphore(concurrency)
    raws = await asyncio.gather(*(_bounded(semaphore, source.get(job.status_key(job_id, c))) for c in calls))
    statuses = []
    for call, raw in zip(calls, raws, strict=True):
        if raw is not None:
            status = parse_call_status(raw, call, job.engine)
            if status.failed and status.traceback is None and job.engine == ENGINE_PYWREN:
                status = with_pywren_traceback(status, raw)
            statuses.append(status)
        elif missing is not None:
            reason = missing.get(call) or "wrote no status.json"
            statuses.append(CallStatus(call, True, reason, None, None, False))
        else:
            raise ResultMissingError(f"job {job_id}: call {call} has no status.json (was it cleaned?)")
    return statuses


def with_pywren_traceback(status: CallStatus, raw: bytes) -> CallStatus:
    """``status`` with the remote traceback pywren pickled into it (tblib), when this
    worker can unpickle it. pywren keeps no log in its status, and the trigger never
    unpickles; the worker already trusts the job's own objects (it unpickles results)."""
    from pywren_deferrable.call_status_pywren import format_pywren_traceback, pickled_exception

    pickled = pickled_exception(raw)
    traceback = format_pywren_traceback(pickled) if pickled else None
    return replace(status, traceback=traceback) if traceback else status


def describe_failures(job_id: str, failed: list[CallStatus], limit: int = 5) -> str:
    """A readable error: the failed call ids and the first remote tracebacks."""
    ids = ", ".join(s.call_id for s in failed[:50]) + (" ..." if len(failed) > 50 else "")
    parts = [f"{len(failed)} call(s) of job {job_id} failed: {ids}"]
    for status in failed[:limit]:
        parts.append(f"--- call {status.call_id}: {status.error}\n{status.traceback or '(no traceback)'}")
    return "\n".join(parts)


async def afetch_results(
    source: StatusSource,
    job: JobRef,
    *,
    concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    job_id: str | None = None,
    positions: list[int] | None = None,
) -> list[Any]:
    """The results of every call of the job's last job, in call order.

    :param job_id: another job of the JobRef (the map job of a map-reduce, say).
    :param positions: only these calls (indexes), in this order: the calls of a job
        whose other calls were retried elsewhere (see :mod:`pywren_deferrable.retries`).
    :raises JobFailedError: when any call raised (with the remote tracebacks).
    """
    job_id = job_id or job.result_job_id
    indexes = range(job.total_calls[job_id]) if positions is None else positions
    calls = [call_id(i) for i in indexes]
    statuses = await read_statuses(source, job, job_id, calls, concurrency)
    failed = [s for s in statuses if s.failed]
    if failed:
        raise JobFailedError(describe_failures(job_id, failed))
    semaphore = asyncio.Semaphore(concurrency)

    async def load(status: CallStatus) -> Any:
        if status.inline_result is not None:
            return pickle.loads(status.inline_result)
        if not status.has_output_object:
            return None  # the function returned nothing Lithops stored (None)
        raw = await _bounded(semaphore, source.get(job.output_key(job_id, status.call_id)))
        if raw is None:
            raise ResultMissingError(f"job {job_id}: call {status.call_id} has no output.pickle")
        return decode_output(raw, job.engine)

    return list(await asyncio.gather(*(load(s) for s in statuses)))


async def afailure_report(
    source: StatusSource,
    job: JobRef,
    failed_calls: dict[str, list[str]],
    *,
    call_errors: dict[str, str] | None = None,
    concurrency: int = 16,
) -> str:
    """Read the statuses of the failed calls and describe them with their tracebacks.

    :param call_errors: the trigger's one-line errors (``"M000/00002": ...``), used for
        calls that left no status to read.
    """
    parts = []
    for job_id, calls in failed_calls.items():
        known = {c.split("/", 1)[1]: e for c, e in (call_errors or {}).items() if c.startswith(f"{job_id}/")}
        statuses = await read_statuses(source, job, job_id, list(calls)[:20], concurrency, missing=known)
        parts.append(describe_failures(job_id, [s for s in statuses if s.failed] or statuses))
    return "\n".join(parts)


def result_locations(
    job: JobRef, *, job_id: str | None = None, positions: list[int] | None = None
) -> list[ResultLocation]:
    """Where each result of the job's last job lives, without downloading anything
    (``job_id`` and ``positions`` as in :func:`afetch_results`)."""
    job_id = job_id or job.result_job_id
    indexes = range(job.total_calls[job_id]) if positions is None else positions
    return [
        ResultLocation(
            bucket=job.storage.bucket,
            status_key=job.status_key(job_id, call_id(i)),
            output_key=job.output_key(job_id, call_id(i)),
        )
        for i in indexes
    ]


async def aclean_job(source: StatusSource, job: JobRef) -> int:
    """Delete every object under the job's own prefixes; return how many.

    Each listed key is checked again against the job's prefixes before deletion, so a
    storage that ignored the prefix (or a bug here) still cannot delete anything else.
    """
    keys: list[str] = []
    for prefix in job.prefixes():
        async for page in source.list_keys(prefix):
            keys.extend(k for k in page if job.owns(k))
    if not keys:
        return 0
    return await source.delete(keys)
