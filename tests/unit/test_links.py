"""The "Lithops job data" extra link."""

from __future__ import annotations

import pytest

from pywren_deferrable.job import JobRef, StorageLocation
from pywren_deferrable.links import PyWrenJobLink, job_console_url


def job(backend: str, **storage: str) -> JobRef:
    kind = "localhost" if backend == "localhost" else "s3"
    location = StorageLocation(kind=kind, bucket="bkt", backend=backend, **storage)
    return JobRef("abc123-0", ("M000",), {"M000": 1}, location, "map", "3.8.0")


def test_default_consoles() -> None:
    assert job_console_url(job("ibm_cos", endpoint="https://s3.eu-de.x")) == (
        "https://cloud.ibm.com/objectstorage/buckets?bucket=bkt&prefix=lithops.jobs/abc123-0-M000/"
    )
    assert job_console_url(job("aws_s3", region="eu-west-1")) == (
        "https://s3.console.aws.amazon.com/s3/buckets/bkt?region=eu-west-1&prefix=lithops.jobs/abc123-0-M000/"
    )
    assert job_console_url(job("localhost", root="/tmp/lithops-root")) == (
        "file:///tmp/lithops-root/bkt/lithops.jobs/abc123-0-M000/"
    )
    assert job_console_url(job("minio", endpoint="http://127.0.0.1:9000")) is None


def test_template_from_the_connection() -> None:
    url = job_console_url(
        job("minio", endpoint="http://127.0.0.1:9000/"), "{endpoint}/browser/{bucket}/{prefix}"
    )
    assert url == "http://127.0.0.1:9000/browser/bkt/lithops.jobs/abc123-0-M000/"
    with pytest.raises(ValueError, match="console_url template"):
        job_console_url(job("minio", endpoint="http://x"), "{nope}")


def test_operators_declare_the_link() -> None:
    from pywren_deferrable import PyWrenCallAsyncOperator, PyWrenMapOperator, PyWrenMapReduceOperator

    for operator in (PyWrenMapOperator, PyWrenMapReduceOperator, PyWrenCallAsyncOperator):
        assert [link.name for link in operator.operator_extra_links] == ["Lithops job data"]
    assert PyWrenJobLink().xcom_key == "_link_PyWrenJobLink"
