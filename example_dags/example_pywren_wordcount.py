"""Mapping over a bucket, the seed's headline feature: a word count over text objects.

``upload_texts`` puts three small texts under ``wordcount/`` in the Connection's bucket
and returns the prefix URL; ``s3://`` means "the Connection's S3 storage" (IBM COS,
MinIO, Ceph or AWS S3). Each object is split in chunks of 64 bytes (one call each, cut
at newlines); ``word_count`` reduces everything, ``word_count_per_object`` reduces each
object on its own (``reducer_one_per_object``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task
from pywren_functions.my_functions import count_words, merge_counts

from pywren_deferrable import PyWrenMapReduceOperator

TEXTS = {
    "wordcount/a.txt": "the quick brown fox\njumps over the lazy dog\n" * 3,
    "wordcount/b.txt": "the dog sleeps\nthe fox runs\n" * 2,
    "wordcount/c.txt": "lazy lazy dog\n",
}


@task
def upload_texts() -> list[str]:
    """Upload the sample texts with the Connection's own storage settings."""
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
    for key, text in TEXTS.items():
        client.put_object(Bucket=location.bucket, Key=key, Body=text.encode())
    return [f"s3://{location.bucket}/wordcount/"]


with DAG(
    dag_id="example_pywren_wordcount",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["pywren", "example"],
) as dag:
    prefix = upload_texts()
    word_count = PyWrenMapReduceOperator(
        task_id="word_count",
        map_function=count_words,
        map_iterdata=prefix,
        reduce_function=merge_counts,
        chunk_size=64,
        poll_interval=2,
    )
    word_count_per_object = PyWrenMapReduceOperator(
        task_id="word_count_per_object",
        map_function=count_words,
        map_iterdata=prefix,
        reduce_function=merge_counts,
        chunk_n=2,
        reducer_one_per_object=True,
        poll_interval=2,
    )
