"""A map and a map_reduce of 3 x max_workers calls (the Connection's max_workers is 3),
run with ``dag.test()`` by tests/integration/test_aws_lambda.py on the AWS Lambda stand-in:
each task defers after the first wave and its trigger invokes the rest."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from payloads.functions import sleep_then, total

from pywren_deferrable import PyWrenMapOperator, PyWrenMapReduceOperator

CALLS = 9

with DAG("lambda_dispatch", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PyWrenMapOperator(
        task_id="map",
        map_function=sleep_then,
        map_iterdata=[(i, 1) for i in range(CALLS)],
        poll_interval=1,
        job_timeout=300,
    )
    PyWrenMapReduceOperator(
        task_id="map_reduce",
        map_function=sleep_then,
        reduce_function=total,
        map_iterdata=[(i, 1) for i in range(CALLS)],
        poll_interval=1,
        job_timeout=300,
    )
