"""The seed family's DAG shapes, unchanged, through Airflow (issue 13).

The successor plugin's meteorological DAG: a map over one object,
``'cos://<bucket>/weather_data'`` (a bare string) with ``chunk_size`` and
``extra_args=[countries, bucket]``, writing one object per country and chunk with the
injected ``storage`` client; then a map-reduce per country over ``'cos://<bucket>/ES/'``.
Its NDVI DAG's maps take ``iterdata_from_task`` with ``map_iterdata=[]``. And Lithops
inputs the seed README did not show: a generator (read when the task runs), and a
TaskFlow map whose function takes Lithops' injected ``id``.
"""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import DAG, task
from payloads.functions import call_id, country_temperatures, mean_of_all, parse_weather

from pywren_deferrable import PyWrenMapOperator, PyWrenMapReduceOperator
from pywren_deferrable.decorators import pywren_task

COUNTRIES = ["ES", "PT", "IT"]
RECORDS = [
    {"country": ["ES", "PT", "IT", "FR"][i % 4], "city": f"c{i}", "temp": 10 + i % 7, "humi": 50 + i % 5}
    for i in range(200)
]
DATASET = "".join(json.dumps(r) + "\n" for r in RECORDS)
BUCKET = "{{ ti.xcom_pull(task_ids='get_dataset') }}"


@task
def get_dataset() -> str:
    """Put the dataset in the Connection's bucket (the seed's get_dataset downloaded it)."""
    import boto3

    from pywren_deferrable import LithopsHook
    from pywren_deferrable.config import s3_credentials

    hook = LithopsHook()
    config = hook.get_config()
    location = hook.storage_location(config)
    credentials = s3_credentials(config)
    client = boto3.client(
        "s3",
        endpoint_url=location.endpoint,
        region_name=location.region or "us-east-1",
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
    )
    client.put_object(Bucket=location.bucket, Key="weather_data", Body=DATASET.encode())
    return location.bucket


@task
def tiles() -> list[int]:
    return [3, 4]


@pywren_task.map
def numbered(x, id):
    return [x, id]


with DAG(
    dag_id="e2e_seed_shapes",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "e2e"],
) as dag:
    dataset = get_dataset()
    parse_data = PyWrenMapOperator(
        task_id="parse_data",
        map_function=parse_weather,
        map_iterdata=f"cos://{BUCKET}/weather_data",
        chunk_size=len(DATASET) // 4 + 1,
        extra_args=[COUNTRIES, BUCKET],
        poll_interval=1,
    )
    dataset >> parse_data
    for country in COUNTRIES:
        parse_data >> PyWrenMapReduceOperator(
            task_id=f"{country}_plot_temp",
            map_function=country_temperatures,
            map_iterdata=f"cos://{BUCKET}/{country}/",
            reduce_function=mean_of_all,
            extra_args=[country, BUCKET, "temp"],
            extra_env={"country": country, "plot": "temp"},
            poll_interval=1,
        )
    from_task = PyWrenMapOperator(
        task_id="from_task",
        map_function=call_id,
        map_iterdata=[],
        iterdata_from_task={"x": "tiles"},
        poll_interval=1,
    )
    tiles() >> from_task
    PyWrenMapOperator(
        task_id="from_generator",
        map_function=call_id,
        map_iterdata=(i * i for i in range(3)),
        poll_interval=1,
    )
    numbered([7, 8])
