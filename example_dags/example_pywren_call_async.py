"""The seed README's call_async chain: add(1, 3) = 4, then add(4, <that>) = 8."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from pywren_functions.my_functions import add

from pywren_deferrable import PyWrenCallAsyncOperator

with DAG(
    dag_id="example_pywren_call_async",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "example"],
) as dag:
    basic_task = PyWrenCallAsyncOperator(
        task_id="add_task_1", func=add, data={"x": 1, "y": 3}, poll_interval=2
    )
    chained_task = PyWrenCallAsyncOperator(
        task_id="add_task_2",
        func=add,
        data={"x": 4},
        data_from_task={"y": "add_task_1"},
        poll_interval=2,
    )
    basic_task >> chained_task
