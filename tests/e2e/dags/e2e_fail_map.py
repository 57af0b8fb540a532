"""Four calls, the third of which raises ``ValueError: boom on 3``: the task must fail."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from payloads.functions import fail_on

from pywren_deferrable import PyWrenMapOperator

with DAG(
    dag_id="e2e_fail_map",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "e2e"],
) as dag:
    PyWrenMapOperator(
        task_id="fail_map",
        map_function=fail_on,
        map_iterdata=[1, 2, 3, 4],
        extra_params={"bad": 3},
        pywren_executor_config={"localhost": {"worker_processes": 4}},
        poll_interval=2,
        retries=0,
    )
