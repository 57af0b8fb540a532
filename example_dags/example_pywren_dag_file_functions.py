"""Payload functions defined right in the DAG file.

The seed required them in a separate module. Here a function defined in the DAG file is
shipped by value (its code, not an import of this file, which imports Airflow). It must
not use Airflow objects itself: the operator refuses such a function at parse time.
"""

from __future__ import annotations

import math

import pendulum
from airflow.sdk import DAG

from pywren_deferrable import PyWrenMapReduceOperator

OFFSET = 1


def hypotenuse(a, b):
    """Runs on Lithops; uses a module import (math) and a module constant."""
    return math.hypot(a, b) + OFFSET


def longest(results):
    return max(results)


with DAG(
    dag_id="example_pywren_dag_file_functions",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "example"],
) as dag:
    PyWrenMapReduceOperator(
        task_id="longest_hypotenuse",
        map_function=hypotenuse,
        map_iterdata=[(3, 4), (5, 12), (8, 15)],
        reduce_function=longest,
        poll_interval=2,
    )
