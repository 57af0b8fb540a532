"""The reducer of ``reducer_wait_local=True``: a function that runs on Lithops (or pywren).

With ``reducer_wait_local`` the task waits (deferred) for the map job, then submits this
function as a ``call_async``. It reads the map results straight from the job's status
objects with the ``storage`` client that Lithops (and pywren) inject into functions
taking a ``storage`` argument, so the results never travel through the Airflow worker.
It imports no Airflow and no aiobotocore: the engine ships it to the function's runtime.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from pywren_deferrable.call_status import CallStatus, decode_output, parse_call_status, parse_followed_status
from pywren_deferrable.job import JobRef, call_id, output_key, status_key
from pywren_deferrable.lithops_futures import FutureRef, result_order


def load_map_results(job: JobRef, storage: Any) -> list[Any]:
    """The results of ``job``'s last job, in call order, read with the engine's storage
    client (``get_object(bucket, key)`` in both engines). A map call whose function
    returned Lithops futures contributes their results, as Lithops' own reducer gets
    them (:func:`~pywren_deferrable.lithops_futures.result_order`)."""

    job_id = job.result_job_id
    bucket = job.storage.bucket
    statuses: dict[FutureRef, CallStatus] = {}

    def read(future: FutureRef) -> CallStatus:
        key = status_key(future.executor_id, future.job_id, future.call_id, job.engine)
        status = parse_followed_status(storage.get_object(bucket, key), future, job.engine, bucket)
        statuses[future] = status
        return status

    order = result_order(
        [FutureRef(job.executor_id, job_id, call_id(i)) for i in range(job.total_calls[job_id])]
    )
    try:
        level = next(order)
        while True:
            level = order.send([read(future) for future in level])
    except StopIteration as done:
        leaves, failed = done.value
    if failed:
        leaf, status = failed[0]
        where = leaf.future.call_id if leaf.returned_by is None else leaf.future.name
        raise RuntimeError(f"map call {where} failed: {status.error}")
    results = []
    for leaf in leaves:
        future, status = leaf.future, statuses[leaf.future]
        if status.inline_result is not None:
            results.append(pickle.loads(status.inline_result))
        elif status.has_output_object:
            key = output_key(future.executor_id, future.job_id, future.call_id, job.engine)
            results.append(decode_output(storage.get_object(bucket, key), job.engine))
        else:
            results.append(None)
    return results


def load_call_result(job: JobRef, job_id: str, position: int, storage: Any) -> Any:
    """The result of call ``position`` of ``job_id``, read with the engine's storage
    client (``get_object(bucket, key)`` in both engines)."""
    bucket = job.storage.bucket
    call = call_id(position)
    status = parse_call_status(storage.get_object(bucket, job.status_key(job_id, call)), call, job.engine)
    if status.failed:
        raise RuntimeError(f"map call {job_id}/{call} of {job.executor_id} failed: {status.error}")
    if status.new_futures:
        raise RuntimeError(
            f"map call {job_id}/{call} of {job.executor_id} returned Lithops futures: the results of "
            "retried calls cannot be merged by input for the reducer; run such a map without retries"
        )
    if status.inline_result is not None:
        return pickle.loads(status.inline_result)
    if status.has_output_object:
        return decode_output(storage.get_object(bucket, job.output_key(job_id, call)), job.engine)
    return None


def reduce_map_rounds(
    reduce_function: Callable[[list[Any]], Any], map_rounds: list[dict[str, Any]], storage: Any
) -> Any:
    """Call ``reduce_function`` with the map results of several rounds (``call_retries``),
    in input order. Each round is ``{"job": JobRef dict, "job_id": "M000", "calls":
    [[input index, call position], ...]}`` (see ``retries.RoundResults.reducer_rounds``)."""
    results: dict[int, Any] = {}
    for rnd in map_rounds:
        job = JobRef.from_dict(rnd["job"])
        for index, position in rnd["calls"]:
            results[int(index)] = load_call_result(job, rnd["job_id"], int(position), storage)
    if sorted(results) != list(range(len(results))):
        raise RuntimeError(f"the map rounds miss inputs: got {len(results)} results, not every index")
    return reduce_function([results[i] for i in range(len(results))])


def reduce_map_job(reduce_function: Callable[[list[Any]], Any], map_job: dict[str, Any], storage: Any) -> Any:
    """Call ``reduce_function`` with the results of ``map_job`` (the engine injects ``storage``)."""
    return reduce_function(load_map_results(JobRef.from_dict(map_job), storage))
