"""Payload functions of the IBM COS tests (run by Lithops' workers, Airflow-free)."""

from __future__ import annotations

from typing import Any


def count_lines(obj: Any) -> int:
    """One call per object chunk: its number of lines."""
    return int(obj.data_stream.read().decode().count("\n"))


def copy_upper_with_ibm_cos(bucket: str, key: str, ibm_cos: Any) -> int:
    """Read ``key`` with the ``ibm_cos`` client Lithops injects (its ibm_boto3 client for the
    job's IBM COS), write it upper-cased under ``written/``; return its size."""
    data = ibm_cos.get_object(Bucket=bucket, Key=key)["Body"].read()
    ibm_cos.put_object(Bucket=bucket, Key=f"written/{key}", Body=data.upper())
    return len(data)
