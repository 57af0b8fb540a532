"""The seed's map example (``add`` over [1, 2, 3] with ``y=1`` -> [2, 3, 4]) on the
``pywren_default`` Connection: the legacy pywren-ibm-cloud 1.7.3 engine (Python 3.10)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from payloads.functions import add

from pywren_deferrable import PyWrenMapOperator

with DAG(
    dag_id="e2e_map_pywren",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "e2e"],
) as dag:
    PyWrenMapOperator(
        task_id="map",
        lithops_conn_id="pywren_default",
        map_function=add,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        poll_interval=2,
        retries=0,
    )
