"""Every operator of the provider, the sensor and bucket mapping in one DAG, run with
``dag.test()`` by tests/integration/test_openwhisk.py on a FaaS backend (the OpenWhisk-API
stand-in). Each job has at most 4 calls: the tests' ``max_workers``."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from payloads.functions import add, count_lines, total

from pywren_deferrable import (
    PyWrenCallAsyncOperator,
    PyWrenJobSensor,
    PyWrenMapOperator,
    PyWrenMapReduceOperator,
)

with DAG("faas_operators", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PyWrenCallAsyncOperator(task_id="call_async", func=add, data={"x": 1, "y": 2})
    PyWrenMapOperator(task_id="map", map_function=add, map_iterdata=[1, 2, 3], extra_params={"y": 10})
    PyWrenMapReduceOperator(
        task_id="map_reduce", map_function=add, reduce_function=total, map_iterdata=[1, 2, 3]
    )
    PyWrenMapReduceOperator(
        task_id="map_reduce_wait_local",
        map_function=add,
        reduce_function=total,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        reducer_wait_local=True,
    )
    submitted = PyWrenMapOperator(
        task_id="submit_only", map_function=add, map_iterdata=[4, 5], wait_for_result=False
    )
    PyWrenJobSensor(task_id="sensor", job=submitted.output)
    PyWrenMapOperator(
        task_id="bucket_map",
        map_function=count_lines,
        map_iterdata=["s3://{{ conn.lithops_default.extra_dejson.minio.storage_bucket }}/lines/"],
    )
