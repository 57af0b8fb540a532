"""TaskFlow style: plain Python functions decorated to run on Lithops, deferrably.

``@task.pywren_call_async`` comes from this provider's registered task decorators;
``pywren_task.map`` is the same thing imported directly. The decorated functions run on
Lithops, so they may not use Airflow objects (they are shipped by value).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from pywren_deferrable.decorators import pywren_task


@pywren_task.map(poll_interval=2)
def scale(x, factor):
    return x * factor


@task.pywren_call_async(poll_interval=2)
def total(values):
    return sum(values)


def biggest_of(results):
    return max(results)


@pywren_task.map_reduce(reduce_function=biggest_of, poll_interval=2)
def square(x):
    return x * x


with DAG(
    dag_id="example_pywren_taskflow",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "example"],
) as dag:
    scaled = scale([1, 2, 3], factor=10)  # [10, 20, 30]
    summed = total(scaled)  # 60
    biggest = square([3, -5, 4])  # 25
