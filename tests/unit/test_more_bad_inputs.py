"""Bad inputs of the call_async / map-reduce operators and the seed spellings: each gives a
clear error at DAG-parse time that names the parameter."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pywren_deferrable import (
    PyWrenCallAsyncOperator,
    PyWrenJobSensor,
    PyWrenMapOperator,
    PyWrenMapReduceOperator,
)


def add(x, y=0):
    return x + y


def total(results):
    return sum(results)


def lines(obj):
    return obj.data_stream.read().count(b"\n")


MAP = {"task_id": "t", "map_function": add, "map_iterdata": [1]}
MAP_REDUCE = {**MAP, "reduce_function": total}

CASES: list[tuple[type, dict[str, Any], type[Exception], str]] = [
    (PyWrenMapReduceOperator, MAP, TypeError, "reduce_function"),
    (
        PyWrenMapReduceOperator,
        {**MAP_REDUCE, "reduce_function": 3},
        TypeError,
        "reduce_function must be a callable",
    ),
    (PyWrenMapReduceOperator, {**MAP, "reduce_funtion": total}, TypeError, "reduce_funtion is a typo"),
    (
        PyWrenMapReduceOperator,
        {**MAP_REDUCE, "map_runtime_memory": 0},
        ValueError,
        "map_runtime_memory must be >= 1",
    ),
    (
        PyWrenMapReduceOperator,
        {**MAP_REDUCE, "reduce_runtime_memory": "2G"},
        TypeError,
        "reduce_runtime_memory must be an int",
    ),
    (
        PyWrenMapReduceOperator,
        {**MAP_REDUCE, "reducer_one_per_object": True, "reducer_wait_local": True},
        ValueError,
        "reducer_one_per_object needs the remote reducer",
    ),
    (
        PyWrenMapOperator,
        {**MAP, "iterdata_from_task": "up"},
        ValueError,
        "map_iterdata and iterdata_from_task both give the inputs",
    ),
    (
        PyWrenMapOperator,
        {**MAP, "map_iterdata": None, "iterdata_from_task": 3},
        TypeError,
        "iterdata_from_task must be",
    ),
    (
        PyWrenMapOperator,
        {**MAP, "map_iterdata": None, "iterdata_from_task": {"x": "a", "y": "b"}},
        TypeError,
        "one-entry dict",
    ),
    (
        PyWrenMapOperator,
        {**MAP, "map_iterdata": None, "iterdata_from_task": "a", "iterdata_form_task": "b"},
        ValueError,
        "iterdata_from_task or iterdata_form_task",
    ),
    (
        PyWrenMapOperator,
        {**MAP, "map_function": lines, "map_iterdata": ["cos:///key"]},
        ValueError,
        "names no bucket",
    ),
    (PyWrenMapOperator, {**MAP, "map_iterdata": "cos:///key"}, ValueError, "names no bucket"),
    (PyWrenMapOperator, {**MAP, "extra_params": 5}, TypeError, "extra_params must be a dict"),
    (
        PyWrenMapOperator,
        {**MAP, "extra_params": {1: 2}},
        TypeError,
        "extra_params keys must be argument names",
    ),
    (PyWrenMapOperator, {**MAP, "invoke_pool_threads": 0}, ValueError, "invoke_pool_threads must be >= 1"),
    (PyWrenMapOperator, {**MAP, "poll_interval": 0}, ValueError, "poll_interval must be > 0"),
    (PyWrenMapOperator, {**MAP, "max_xcom_bytes": -1}, ValueError, "max_xcom_bytes must be >= 1"),
    (PyWrenMapOperator, {**MAP, "pywren_executor_config": {"code_engine": "x"}}, TypeError, "config section"),
    (
        PyWrenMapOperator,
        {**MAP, "pywren_executor_config": {"lithops": {"storage": "dropbox"}}},
        ValueError,
        "storage backend 'dropbox'",
    ),
    (PyWrenCallAsyncOperator, {"task_id": "t", "func": "add"}, TypeError, "func must be a callable"),
    (
        PyWrenCallAsyncOperator,
        {"task_id": "t", "func": add, "data": (1, 2, 3)},
        TypeError,
        "data does not fit add",
    ),
    (
        PyWrenCallAsyncOperator,
        {"task_id": "t", "func": add, "data_from_task": ["a"]},
        TypeError,
        "data_from_task must be a dict",
    ),
    (
        PyWrenCallAsyncOperator,
        {"task_id": "t", "func": add, "data_from_task": {"y": 1}},
        TypeError,
        "data_from_task must map",
    ),
    (
        PyWrenCallAsyncOperator,
        {"task_id": "t", "func": add, "data": [1], "data_from_task": {"y": "a"}},
        TypeError,
        "data_from_task needs data to be a dict",
    ),
]


@pytest.mark.parametrize(("operator", "kwargs", "error", "match"), CASES)
def test_bad_input_is_named(
    operator: type, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(error, match=match):
            operator(**kwargs)


def test_seed_misspelling_warns() -> None:
    with pytest.warns(DeprecationWarning, match="iterdata_form_task is the seed plugin's misspelling"):
        op = PyWrenMapOperator(task_id="t", map_function=add, iterdata_form_task="up")
    assert op.iterdata_from_task == "up"


def test_sensor_rejects_a_job_that_is_not_a_jobref() -> None:
    sensor = PyWrenJobSensor(task_id="s", job={"executor_id": "x"})
    with pytest.raises(TypeError, match="job must be a JobRef dict"):
        sensor.poke({})


def test_refusals_name_the_object_urls() -> None:
    from pywren_deferrable.submit import JobSpec, explain_refusal

    spec = JobSpec(
        call_type="map", function=abs, iterdata=["minio://b/p/", {"obj": "minio://c/q"}, 3], config={}
    )
    assert explain_refusal(spec, "Exception: No objects found") == (
        "Exception: No objects found: no object under minio://b/p/, minio://c/q (bucket 'b', 'c'); check "
        "the bucket and the prefix, and that the Connection's storage is the one that holds them"
    )
    assert explain_refusal(spec, "ValueError: other") == "ValueError: other"
    bare = JobSpec(call_type="map", function=abs, iterdata="cos://b/p/", config={})
    assert "no object under cos://b/p/ (bucket 'b')" in explain_refusal(bare, "Exception: No objects found")
