"""Airflow-native inputs: an upstream task's output (XComArg), Jinja templates, and
dynamic task mapping (``.partial().expand()``: one Lithops job per mapped task)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task
from pywren_functions.my_functions import add

from pywren_deferrable import PyWrenMapOperator


@task
def numbers() -> list[int]:
    return [10, 20, 30]


with DAG(
    dag_id="example_pywren_modern_inputs",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"increment": 5, "inputs": [1, 2]},
    render_template_as_native_obj=True,  # so "{{ params.inputs }}" renders to a list
    tags=["pywren", "example"],
) as dag:
    from_upstream = PyWrenMapOperator(
        task_id="from_upstream",
        map_function=add,
        map_iterdata=numbers(),
        extra_params={"y": 1},
        poll_interval=2,
    )
    from_jinja = PyWrenMapOperator(
        task_id="from_jinja",
        map_function=add,
        map_iterdata="{{ params.inputs }}",
        extra_params={"y": "{{ params.increment }}"},
        poll_interval=2,
    )
    mapped = PyWrenMapOperator.partial(
        task_id="mapped", map_function=add, extra_params={"y": 100}, poll_interval=2
    ).expand(map_iterdata=[[1], [2, 3]])
