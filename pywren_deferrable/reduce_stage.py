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

from pywren_deferrable.call_status import decode_output, parse_call_status
from pywren_deferrable.job import JobRef, call_id


def load_map_results(job: JobRef, storage: Any) -> list[Any]:
    """The results of ``job``'s last job, in call order, read with the engine's storage
    client (``get_object(bucket, key)`` in both engines)."""

    job_id = job.result_job_id
    bucket = job.storage.bucket
    results = []
    for index in range(job.total_calls[job_id]):
        call = call_id(index)
        status = parse_call_status(storage.get_object(bucket, job.status_key(job_id, call)), call, job.engine)
        if status.failed:
            raise RuntimeError(f"map call {call} failed: {status.error}")
        if status.inline_result is not None:
            results.append(pickle.loads(status.inline_result))
        elif status.has_output_object:
            results.append(
                decode_output(storage.get_object(bucket, job.output_key(job_id, call)), job.engine)
            )
        else:
            results.append(None)
    return results


def reduce_map_job(reduce_function: Callable[[list[Any]], Any], map_job: dict[str, Any], storage: Any) -> Any:
    """Call ``reduce_function`` with the results of ``map_job`` (the engine injects ``storage``)."""
    return reduce_function(load_map_results(JobRef.from_dict(map_job), storage))
