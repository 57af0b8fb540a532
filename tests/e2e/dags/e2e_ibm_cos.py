"""IBM COS over TLS (Lithops' own ``ibm_cos`` storage backend) through the Connection
``ibm_cos_tls``: a map over a ``cos://`` prefix in 64-byte chunks, and a map whose function
takes the ``ibm_cos`` client Lithops injects; both clean their job's objects.

The test puts ``INPUT_KEYS`` under ``cos-input/`` in the Connection's bucket first.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task
from payloads.ibm_cos_functions import copy_upper_with_ibm_cos, count_lines

from pywren_deferrable import PyWrenMapOperator

CONN_ID = "ibm_cos_tls"
INPUT_PREFIX = "cos-input/"
INPUT_KEYS = [f"{INPUT_PREFIX}a.txt", f"{INPUT_PREFIX}b.txt"]


def _bucket() -> str:
    from pywren_deferrable import LithopsHook

    return str(LithopsHook(CONN_ID).get_config()["ibm_cos"]["storage_bucket"])


@task
def input_urls() -> list[str]:
    return [f"cos://{_bucket()}/{INPUT_PREFIX}"]


@task
def copy_calls() -> list[dict[str, str]]:
    return [{"bucket": _bucket(), "key": key} for key in INPUT_KEYS]


with DAG(
    dag_id="e2e_ibm_cos",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "e2e"],
) as dag:
    PyWrenMapOperator(
        task_id="count_lines",
        lithops_conn_id=CONN_ID,
        map_function=count_lines,
        map_iterdata=input_urls(),
        chunk_size=64,
        clean_data=True,
        poll_interval=2,
        retries=0,
    )
    PyWrenMapOperator(
        task_id="copy_upper",
        lithops_conn_id=CONN_ID,
        map_function=copy_upper_with_ibm_cos,
        map_iterdata=copy_calls(),
        clean_data=True,
        poll_interval=2,
        retries=0,
    )
