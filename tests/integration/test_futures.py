"""Payload functions that return Lithops futures (jobs they start themselves), run for real
(Lithops localhost compute, the local S3 endpoint): the operators return exactly what
Lithops' own ``get_result()`` returns for the same function and input, fail naming the
inner call, and clean the inner jobs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lithops
import pytest
from airflow.sdk.exceptions import AirflowException
from payloads import futures as f

from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.embedded import LocalS3Server
from pywren_deferrable.job import JobRef
from pywren_deferrable.triggers.job import PyWrenJobTrigger

pytestmark = pytest.mark.integration


def run(op: Any) -> Any:
    return op.execute({"ti": None})


def plain_lithops(config: dict[str, Any], call_type: str, function: Callable[..., Any], data: Any) -> Any:
    """What Lithops itself returns: the same call on a FunctionExecutor, then get_result()."""
    fexec = lithops.FunctionExecutor(config=copy.deepcopy(config))
    getattr(fexec, call_type)(function, data)
    return fexec.get_result()


def same_results_in_another_order(got: Any, expected: Any) -> bool:
    return (
        isinstance(got, list)
        and isinstance(expected, list)
        and sorted(map(repr, got)) == sorted(map(repr, expected))
    )


def keys_under(s3: LocalS3Server, bucket: str, prefix: str) -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


CASES = {
    # name: (call type, function, data)
    "one future from call_async": ("call_async", f.fan_one, {"x": 7}),
    "a list of futures from map, per outer call": ("map", f.fan_map_in_order, [1, 2]),
    "a list holding one future": ("map", f.fan_one_in_list, [5]),
    "the futures of a map_reduce": ("call_async", f.fan_map_reduce, {"n": 3}),
    "futures that return futures": ("call_async", f.fan_nested, {"n": 1}),
    "a map mixing values and futures": ("map", f.plain_or_fan, [0, 1, 2]),
}


def operator(call_type: str, function: Callable[..., Any], data: Any, **kwargs: Any) -> Any:
    if call_type == "call_async":
        return PyWrenCallAsyncOperator(task_id="t", func=function, data=data, deferrable=False, **kwargs)
    return PyWrenMapOperator(
        task_id="t", map_function=function, map_iterdata=data, deferrable=False, **kwargs
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_task_returns_what_get_result_returns(case: str, lithops_conn: str, lithops_config) -> None:
    call_type, function, data = CASES[case]
    expected = plain_lithops(lithops_config, call_type, function, data)
    got = run(operator(call_type, function, data))
    if got != expected and same_results_in_another_order(got, expected):
        # Lithops appends returned futures as it sees their calls finish: on a loaded
        # machine a later call can finish first there (docs/deferral.md). The provider's
        # order is Lithops' when calls finish in order: ask Lithops once more.
        expected = plain_lithops(lithops_config, call_type, function, data)
    assert got == expected
    assert got is not None and None not in (got if isinstance(got, list) else [got])


def test_a_failing_inner_call_fails_the_task_naming_it(lithops_conn: str, lithops_config) -> None:
    with pytest.raises(ValueError, match="inner boom 2"):
        plain_lithops(lithops_config, "call_async", f.fan_fail, {"n": 3})
    with pytest.raises(AirflowException) as raised:
        run(operator("call_async", f.fan_fail, {"n": 3}))
    message = str(raised.value)
    assert "-A000-00000-" in message and "-M000/00002" in message  # the inner job and call
    assert "Traceback" in message and "ValueError: inner boom 2" in message


def test_clean_data_deletes_the_inner_jobs_too(
    lithops_conn: str, s3_server: LocalS3Server, bucket: str
) -> None:
    assert run(operator("map", f.fan_one, [{"x": 1}])) == [10]
    before = keys_under(s3_server, bucket, "")
    assert run(operator("call_async", f.fan_nested, {"n": 1}, clean_data=True)) == [0, 0, 10]
    # Everything of the nested job (its own and its 3 inner jobs) is gone; the other job's
    # objects and the runtime metadata stay.
    assert keys_under(s3_server, bucket, "") == before


async def test_trigger_counts_the_inner_calls_and_leaks_no_secret(submit_job, lithops_config) -> None:
    job: JobRef = submit_job(f.fan_nested, {"n": 1}, call_type="call_async")
    trigger = PyWrenJobTrigger(job=job.to_dict(), poll_interval=1)
    async for event in PyWrenJobTrigger(**trigger.serialize()[1]).run():
        payload = dict(event.payload)
        break
    assert payload["status"] == "success"
    # 1 call, whose map of 2 calls returned maps of 1 and 2 calls.
    assert (payload["done"], payload["total"], payload["inner_calls"]) == (6, 6, 5)
    secret = lithops_config["minio"]["secret_access_key"]
    assert secret not in repr(payload)


@pytest.mark.parametrize("wait_local", [False, True], ids=["lithops reducer", "reducer_wait_local"])
def test_map_reduce_reducers_get_the_returned_futures_results(
    wait_local: bool, lithops_conn: str, lithops_config
) -> None:
    """The reducer gets what get_result() gives for the map alone: the inner results."""
    mapped = plain_lithops(lithops_config, "map", f.fan_map_in_order, [1, 2])
    op = PyWrenMapReduceOperator(
        task_id="t",
        map_function=f.fan_map_in_order,
        map_iterdata=[1, 2],
        reduce_function=f.add_all,
        reducer_wait_local=wait_local,
        deferrable=False,
    )
    assert run(op) == sum(mapped) == 10
