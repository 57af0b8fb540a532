"""One DAG per engine: ``add`` over [1, 2, 3] with ``y=1`` (-> [2, 3, 4]) on the Connection
of that engine (``lithops_default``: Lithops; ``pywren_default``: pywren-ibm-cloud 1.7.3)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from payloads.functions import add

from pywren_deferrable import PyWrenMapOperator

for engine, conn_id in (("lithops", "lithops_default"), ("pywren", "pywren_default")):
    with DAG(
        dag_id=f"e2e_map_{engine}",
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        tags=["pywren", "e2e"],
    ) as dag:
        PyWrenMapOperator(
            task_id="map",
            lithops_conn_id=conn_id,
            map_function=add,
            map_iterdata=[1, 2, 3],
            extra_params={"y": 1},
            poll_interval=2,
            retries=0,
        )
    globals()[dag.dag_id] = dag
