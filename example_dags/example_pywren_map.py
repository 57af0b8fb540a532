"""The seed README's map example: ``add`` over [1, 2, 3] with ``y=1`` returns [2, 3, 4].

Runs on the embedded default (Lithops localhost compute + the ``lithops_default``
Connection); point the Connection at IBM Code Engine + COS to run it in the cloud.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from pywren_functions.my_functions import add

from pywren_deferrable import PyWrenMapOperator

with DAG(
    dag_id="example_pywren_map",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "example"],
) as dag:
    map_task = PyWrenMapOperator(
        task_id="map_task",
        map_function=add,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        poll_interval=2,
    )
