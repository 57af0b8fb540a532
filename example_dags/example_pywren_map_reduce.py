"""The seed README's map-reduce example: add(y=1) over [1, 2, 3], reduced by mult_array.

The seed README says this returns 18, but its ``mult_array`` multiplies by 2 once per
result, so it really returns 2 ** 3 = 8; both tasks here return 8. The second one uses
``reducer_wait_local``: it defers for the map job, submits the reducer, defers again.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from pywren_functions.my_functions import add, mult_array

from pywren_deferrable import PyWrenMapReduceOperator

with DAG(
    dag_id="example_pywren_map_reduce",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "example"],
) as dag:
    mapreduce_task = PyWrenMapReduceOperator(
        task_id="mapreduce_task",
        map_function=add,
        reduce_function=mult_array,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        poll_interval=2,
    )
    wait_local_task = PyWrenMapReduceOperator(
        task_id="mapreduce_wait_local_task",
        map_function=add,
        reduce_function=mult_array,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        reducer_wait_local=True,
        clean_data=True,
        poll_interval=2,
    )
