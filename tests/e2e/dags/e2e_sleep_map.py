"""Four calls that sleep ``params.seconds`` each, then return their input: [1, 2, 3, 4].

Long enough to look at the task while it is deferred, kill the triggerer, or cut the
S3 endpoint off; the calls run in parallel (one localhost worker process each).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from payloads.functions import sleep_then

from pywren_deferrable import PyWrenMapOperator

with DAG(
    dag_id="e2e_sleep_map",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"seconds": 15},
    render_template_as_native_obj=True,
    tags=["pywren", "e2e"],
) as dag:
    PyWrenMapOperator(
        task_id="sleep_map",
        map_function=sleep_then,
        map_iterdata=[1, 2, 3, 4],
        extra_params={"seconds": "{{ params.seconds }}"},
        pywren_executor_config={"localhost": {"worker_processes": 4}},
        poll_interval=2,
    )
