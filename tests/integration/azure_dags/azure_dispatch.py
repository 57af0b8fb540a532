"""A map and a map-reduce of 9 calls each, run with ``dag.test()`` by
tests/integration/test_azure_functions.py on the Azure Functions stand-in with
``max_workers=3``: 3x max_workers, so each task defers after its first wave and the
trigger sends the rest to the function's queue."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from payloads.functions import sleep_then, total

from pywren_deferrable import PyWrenMapOperator, PyWrenMapReduceOperator

with DAG("azure_dispatch", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PyWrenMapOperator(
        task_id="map",
        map_function=sleep_then,
        map_iterdata=[(i, 1.5) for i in range(9)],
        poll_interval=1,
        job_timeout=400,
    )
    PyWrenMapReduceOperator(
        task_id="map_reduce",
        map_function=sleep_then,
        reduce_function=total,
        map_iterdata=[(i, 1.5) for i in range(9)],
        poll_interval=1,
        job_timeout=400,
    )
