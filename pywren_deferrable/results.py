"""Fetch a finished job's results, describe its failures, and clean its objects.

Runs on the worker when the task resumes. One listing of the result job's prefix, then
the ``status.json`` (and, for results of 8 KiB or more, ``output.pickle``) of every
call concurrently over one shared aiobotocore client. Results are unpickled only from
the job's own keys; inline results are parsed with ``ast.literal_eval``.

A call whose function returned Lithops futures contributes their results instead, in
the order Lithops' ``get_result()`` gives (see :mod:`pywren_deferrable.lithops_futures`),
read from the inner jobs' objects level by level; cleanup includes those jobs.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pywren_deferrable.call_status import (
    CallStatus,
    StatusParseError,
    decode_output,
    parse_call_status,
    parse_followed_status,
)
from pywren_deferrable.job import ENGINE_PYWREN, JobRef, call_id, output_key, split_job_key, status_key
from pywren_deferrable.lithops_futures import FutureRef, Leaf, result_order
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
    executor: str | None = None,
) -> list[CallStatus]:
    """Read and parse ``status.json`` of ``calls`` of ``job_id``, in that order.

    :param missing: when given, a call without status becomes a failed status whose error
        is ``missing[call]`` (or a generic one) instead of raising ``ResultMissingError``.
    :param executor: the executor of ``job_id`` when it is not the job's own (an inner
        job, whose futures a call returned).
    """
    semaphore = asyncio.Semaphore(concurrency)
    executor_id = job.executor_id if executor is None else executor
    keys = [status_key(executor_id, job_id, c, job.engine) for c in calls]
    raws = await asyncio.gather(*(_bounded(semaphore, source.get(k)) for k in keys))
    statuses = []
    for call, raw in zip(calls, raws, strict=True):
        if raw is not None:
            try:
                status = parse_call_status(raw, call, job.engine, job.storage.bucket)
            except StatusParseError as err:  # reported as the call's failure, with why
                status = CallStatus(call, True, str(err), str(err), None, False)
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


def result_roots(
    job: JobRef, job_id: str | None = None, positions: list[int] | None = None
) -> list[FutureRef]:
    """The calls of the job's last job (or of ``job_id``, only ``positions`` of them), as
    the futures ``get_result()`` starts from."""
    job_id = job_id or job.result_job_id
    indexes = range(job.total_calls[job_id]) if positions is None else positions
    return [FutureRef(job.executor_id, job_id, call_id(i)) for i in indexes]


def _job_name(job: JobRef, future: FutureRef) -> str:
    """The job's own jobs by their id (``M000``), inner ones by their job key."""
    return future.job_id if future.executor_id == job.executor_id else future.job_key


async def aexpand(
    source: StatusSource,
    job: JobRef,
    roots: list[FutureRef],
    concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    seen: list[CallStatus] | None = None,
) -> tuple[list[tuple[Leaf, CallStatus]], list[tuple[Leaf, CallStatus]]]:
    """Read the statuses of ``roots`` and of every future they returned, at any depth.

    Returns ``(leaves, failed)``: the calls whose results ``get_result()`` returns, in its
    order, with their statuses; and the failed calls (any level). ``seen`` receives every
    status read (the calls that returned futures too: they ran, and were billed).
    """
    semaphore = asyncio.Semaphore(concurrency)
    bucket = job.storage.bucket
    by_future: dict[FutureRef, CallStatus] = {}

    async def read(future: FutureRef) -> CallStatus:
        key = status_key(future.executor_id, future.job_id, future.call_id, job.engine)
        raw = await _bounded(semaphore, source.get(key))
        if raw is None:
            raise ResultMissingError(
                f"job {_job_name(job, future)}: call {future.call_id} has no status.json (was it cleaned?)"
            )
        status = parse_followed_status(raw, future, job.engine, bucket)
        if status.failed and status.traceback is None and job.engine == ENGINE_PYWREN:
            status = with_pywren_traceback(status, raw)
        by_future[future] = status
        return status

    order = result_order(roots)
    try:
        level = next(order)
        while True:
            statuses = await asyncio.gather(*(read(f) for f in level))
            level = order.send(statuses)
    except StopIteration as done:
        leaves, failed = done.value
    if seen is not None:
        seen.extend(by_future.values())
    return [(leaf, by_future[leaf.future]) for leaf in leaves], [
        (leaf, by_future[leaf.future]) for leaf, _ in failed
    ]


def describe_followed_failures(job: JobRef, failed: list[tuple[Leaf, CallStatus]], limit: int = 5) -> str:
    """:func:`describe_failures` per job, naming for an inner job's calls the call whose
    function returned their futures."""
    groups: dict[str, list[tuple[Leaf, CallStatus]]] = {}
    for leaf, status in failed:
        groups.setdefault(_job_name(job, leaf.future), []).append((leaf, status))
    parts = []
    for name, items in groups.items():
        parent = items[0][0].returned_by
        origin = f" (futures returned by call {_job_name(job, parent)}/{parent.call_id})" if parent else ""
        parts.append(describe_failures(f"{name}{origin}", [s for _, s in items], limit))
    return "\n".join(parts)


async def afetch_results(
    source: StatusSource,
    job: JobRef,
    *,
    concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    job_id: str | None = None,
    positions: list[int] | None = None,
    seen: list[CallStatus] | None = None,
) -> list[Any]:
    """The results of every call of the job's last job, in call order; a call whose
    function returned Lithops futures contributes their results, as ``get_result()`` does.

    :param job_id: another job of the JobRef (the map job of a map-reduce, say).
    :param positions: only these calls (indexes), in this order, one result each: the
        calls of a job whose other calls were retried elsewhere (see
        :mod:`pywren_deferrable.retries`).
    :raises JobFailedError: when any call raised, or an inner call whose future a call
        returned (with the remote tracebacks); with ``positions``, when a call returned
        futures (its results are not one per input, so they cannot be merged by input).
    :param seen: receives every status read (see :func:`aexpand`).
    """
    leaves, failed = await aexpand(source, job, result_roots(job, job_id, positions), concurrency, seen)
    if failed:
        raise JobFailedError(describe_followed_failures(job, failed))
    if positions is not None and any(leaf.returned_by is not None for leaf, _ in leaves):
        raise JobFailedError(
            "calls whose functions returned Lithops futures were retried (call_retries, or an Airflow "
            "retry that resubmitted failed calls): their results are not one per input and cannot be "
            "merged by input; run such a map without retries"
        )
    semaphore = asyncio.Semaphore(concurrency)

    async def load(leaf: Leaf, status: CallStatus) -> Any:
        if status.inline_result is not None:
            return pickle.loads(status.inline_result)
        if not status.has_output_object:
            return None  # the status says the function returned None
        future = leaf.future
        key = output_key(future.executor_id, future.job_id, future.call_id, job.engine)
        raw = await _bounded(semaphore, source.get(key))
        if raw is None:
            raise ResultMissingError(
                f"job {_job_name(job, future)}: call {future.call_id} has no output.pickle"
            )
        return decode_output(raw, job.engine)

    return list(await asyncio.gather(*(load(leaf, s) for leaf, s in leaves)))


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
    for job_name, calls in failed_calls.items():
        known = {
            c.split("/", 1)[1]: e for c, e in (call_errors or {}).items() if c.startswith(f"{job_name}/")
        }
        executor, job_id = inner_job(job, job_name)
        statuses = await read_statuses(
            source, job, job_id, list(calls)[:20], concurrency, missing=known, executor=executor
        )
        parts.append(describe_failures(job_name, [s for s in statuses if s.failed] or statuses))
    return "\n".join(parts)


def inner_job(job: JobRef, name: str) -> tuple[str | None, str]:
    """``(executor, job_id)`` of a job the trigger names: one of the job's own by its id
    (executor ``None``), or an inner job by its key, which must be a descendant of the
    job's (so that a crafted event cannot point the worker at anyone else's objects)."""
    if name in job.job_ids:
        return None, name
    try:
        executor, job_id = split_job_key(name, job.engine)
    except ValueError:
        raise ValueError(f"failed job {name!r} is not a job of {job.executor_id}") from None
    if not job.owns_descendant(status_key(executor, job_id, call_id(0), job.engine)):
        raise ValueError(f"failed job {name!r} is not a job of {job.executor_id}")
    return executor, job_id


async def aresult_locations(
    source: StatusSource, job: JobRef, *, concurrency: int = DEFAULT_FETCH_CONCURRENCY
) -> list[ResultLocation]:
    """Where each result ``get_result()`` would return lives (inner jobs' calls included),
    reading statuses but no result.

    :raises JobFailedError: when any call, or inner call, failed.
    """
    if job.engine == ENGINE_PYWREN:
        return result_locations(job)
    leaves, failed = await aexpand(source, job, result_roots(job), concurrency)
    if failed:
        raise JobFailedError(describe_followed_failures(job, failed))
    return [
        ResultLocation(
            bucket=job.storage.bucket,
            status_key=status_key(f.executor_id, f.job_id, f.call_id, job.engine),
            output_key=output_key(f.executor_id, f.job_id, f.call_id, job.engine),
        )
        for f in (leaf.future for leaf, _ in leaves)
    ]


def result_locations(
    job: JobRef, *, job_id: str | None = None, positions: list[int] | None = None
) -> list[ResultLocation]:
    """Where each result of the job's last job lives, without downloading anything
    (``job_id`` and ``positions`` as in :func:`afetch_results`; calls that returned
    futures are not followed: see :func:`aresult_locations`)."""
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
    """Delete every object under the job's own prefixes, and those of the jobs its calls
    created (futures returned by payload functions, any depth); return how many.

    Each listed key is checked again against the job's prefixes before deletion, so a
    storage that ignored the prefix (or a bug here) still cannot delete anything else.
    """
    keys: list[str] = []
    for prefix in job.prefixes():
        async for page in source.list_keys(prefix):
            keys.extend(k for k in page if job.owns(k))
    for prefix in job.descendant_prefixes():
        async for page in source.list_keys(prefix):
            keys.extend(k for k in page if job.owns_descendant(k))
    if not keys:
        return 0
    return await source.delete(keys)
